"""`cigri user-priority` and `cigri user-mapping`: per-user, per-cluster priorities and logins,
without SQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from typing import Any

import click

from cigri.cli.clusters import per_user_listing, resolve_cluster, transaction
from cigri.storage import users as store


def _set_on_cluster(cluster: str, save: Callable[..., None]) -> str:
    """`save(conn, cluster_id=...)` for CLUSTER (name or id); returns the cluster's name."""
    with transaction() as conn:
        found = resolve_cluster(conn, cluster)
        save(conn, cluster_id=found.id)
    return found.name


def _remove_on_cluster(what: str, user: str, cluster: str, remove: Callable[..., int]) -> None:
    with transaction() as conn:
        found = resolve_cluster(conn, cluster)
        removed = remove(conn, cluster_id=found.id)
    if not removed:
        raise click.ClickException(f"{user} has no {what} on {found.name}")
    click.echo(f"{what} of {user} on {found.name} removed")


def _echo_rows(rows: Sequence[Mapping[str, Any]], *, as_json: bool, columns: Sequence[str]) -> None:
    if as_json:
        click.echo(json.dumps(list(rows), indent=2))
        return
    for row in rows:
        click.echo(" ".join(str(row[column]) for column in columns))


@click.group("user-priority")
def user_priority() -> None:
    """Users' priorities on clusters (higher is scheduled first)."""


@user_priority.command("set")
@click.argument("user")
@click.argument("cluster")
@click.argument("priority", type=int)
def set_priority(user: str, cluster: str, priority: int) -> None:
    """Give USER the PRIORITY on CLUSTER (name or id)."""
    name = _set_on_cluster(cluster, partial(store.set_user_priority, grid_user=user,
                                            priority=priority))
    click.echo(f"{user} has priority {priority} on {name}")


@user_priority.command("remove")
@click.argument("user")
@click.argument("cluster")
def remove_priority(user: str, cluster: str) -> None:
    _remove_on_cluster("priority", user, cluster,
                       partial(store.remove_user_priority, grid_user=user))


@per_user_listing(user_priority)
def list_priorities(user: str | None, as_json: bool) -> None:
    with transaction() as conn:
        found = store.list_user_priorities(conn, grid_user=user)
    _echo_rows([asdict(p) for p in found], as_json=as_json,
               columns=("grid_user", "cluster_name", "priority"))


@click.group("user-mapping")
def user_mapping() -> None:
    """Logins grid users get on clusters (default: the same login)."""


@user_mapping.command("set")
@click.argument("user")
@click.argument("cluster")
@click.argument("login")
def set_mapping(user: str, cluster: str, login: str) -> None:
    """Run USER's jobs on CLUSTER (name or id) as LOGIN."""
    name = _set_on_cluster(cluster, partial(store.set_user_mapping, grid_login=user,
                                            cluster_login=login))
    click.echo(f"{user} runs as {_masked(login)} on {name}")  # a JWT is never echoed


@user_mapping.command("remove")
@click.argument("user")
@click.argument("cluster")
def remove_mapping(user: str, cluster: str) -> None:
    _remove_on_cluster("mapping", user, cluster, partial(store.remove_user_mapping, grid_login=user))


@per_user_listing(user_mapping)
def list_mappings(user: str | None, as_json: bool) -> None:
    with transaction() as conn:
        found = store.list_user_mappings(conn, grid_login=user)
    # JWTs of OAR 3 clusters live here too; never print them.
    _echo_rows([{**asdict(m), "cluster_login": _masked(m.cluster_login)} for m in found],
               as_json=as_json, columns=("grid_login", "cluster_name", "cluster_login"))


def _masked(login: str | None) -> str:
    if login and login.startswith("Bearer "):
        return "Bearer ..." + login[-6:]
    return login or ""
