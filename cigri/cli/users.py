"""`cigri user-priority` and `cigri user-mapping`: per-user, per-cluster priorities and logins,
without SQL."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from cigri.cli.clusters import resolve_cluster, transaction
from cigri.storage import users as store


@click.group("user-priority")
def user_priority() -> None:
    """Users' priorities on clusters (higher is scheduled first)."""


@user_priority.command("set")
@click.argument("user")
@click.argument("cluster")
@click.argument("priority", type=int)
def set_priority(user: str, cluster: str, priority: int) -> None:
    """Give USER the PRIORITY on CLUSTER (name or id)."""
    with transaction() as conn:
        found = resolve_cluster(conn, cluster)
        store.set_user_priority(conn, grid_user=user, cluster_id=found.id, priority=priority)
    click.echo(f"{user} has priority {priority} on {found.name}")


@user_priority.command("remove")
@click.argument("user")
@click.argument("cluster")
def remove_priority(user: str, cluster: str) -> None:
    with transaction() as conn:
        found = resolve_cluster(conn, cluster)
        removed = store.remove_user_priority(conn, grid_user=user, cluster_id=found.id)
    if not removed:
        raise click.ClickException(f"{user} has no priority on {found.name}")
    click.echo(f"priority of {user} on {found.name} removed")


@user_priority.command("list")
@click.option("--user")
@click.option("--json", "as_json", is_flag=True)
def list_priorities(user: str | None, as_json: bool) -> None:
    with transaction() as conn:
        found = store.list_user_priorities(conn, grid_user=user)
    if as_json:
        click.echo(json.dumps([asdict(p) for p in found], indent=2))
        return
    for p in found:
        click.echo(f"{p.grid_user} {p.cluster_name} {p.priority}")


@click.group("user-mapping")
def user_mapping() -> None:
    """Logins grid users get on clusters (default: the same login)."""


@user_mapping.command("set")
@click.argument("user")
@click.argument("cluster")
@click.argument("login")
def set_mapping(user: str, cluster: str, login: str) -> None:
    """Run USER's jobs on CLUSTER (name or id) as LOGIN."""
    with transaction() as conn:
        found = resolve_cluster(conn, cluster)
        store.set_user_mapping(conn, grid_login=user, cluster_id=found.id, cluster_login=login)
    click.echo(f"{user} runs as {login} on {found.name}")


@user_mapping.command("remove")
@click.argument("user")
@click.argument("cluster")
def remove_mapping(user: str, cluster: str) -> None:
    with transaction() as conn:
        found = resolve_cluster(conn, cluster)
        removed = store.remove_user_mapping(conn, grid_login=user, cluster_id=found.id)
    if not removed:
        raise click.ClickException(f"{user} has no mapping on {found.name}")
    click.echo(f"mapping of {user} on {found.name} removed")


@user_mapping.command("list")
@click.option("--user")
@click.option("--json", "as_json", is_flag=True)
def list_mappings(user: str | None, as_json: bool) -> None:
    with transaction() as conn:
        found = store.list_user_mappings(conn, grid_login=user)
    if as_json:
        # JWTs of OAR 3 clusters live here too; never print them.
        click.echo(json.dumps([{**asdict(m), "cluster_login": _masked(m.cluster_login)}
                               for m in found], indent=2))
        return
    for m in found:
        click.echo(f"{m.grid_login} {m.cluster_name} {_masked(m.cluster_login)}")


def _masked(login: str | None) -> str:
    if login and login.startswith("Bearer "):
        return "Bearer ..." + login[-6:]
    return login or ""
