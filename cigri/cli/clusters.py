"""`cigri cluster add|list|enable|disable|set`: declare and change clusters without SQL (v3 had
only `newcluster` and SQL). A cluster is named by its name or its id."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import click
from sqlalchemy import Connection

from cigri.app import build_engine, load
from cigri.domain.clusters import Cluster
from cigri.domain.injection import POLICIES
from cigri.domain.night import NightWindow, NightWindowError, zone_of
from cigri.domain.states import AuthType, ClusterAPI
from cigri.storage import clusters as store


@contextmanager
def transaction() -> Iterator[Connection]:
    """One transaction on the configured database (the admin commands' unit of work), once its
    schema is known to be this version's (else one line saying to run `cigri db upgrade`)."""
    from cigri.cli.failures import check_database

    settings = load()
    check_database(settings.database_url)
    engine = build_engine(settings)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def per_user_listing(group: click.Group) -> Callable[[Callable[..., None]], click.Command]:
    """The `list` command of an admin group of per-user rows: `--user` (one user's, else
    everyone's) and `--json`, passed to the function as `user` and `as_json`."""
    def decorate(function: Callable[..., None]) -> click.Command:
        function = click.option("--json", "as_json", is_flag=True)(function)
        return group.command("list")(click.option("--user")(function))
    return decorate


def resolve_cluster(conn: Connection, name_or_id: str) -> Cluster:
    if name_or_id.isdigit():
        return store.get_cluster(conn, int(name_or_id))
    return store.get_cluster_by_name(conn, name_or_id)


def _public(cluster: Cluster) -> dict[str, Any]:
    fields = asdict(cluster)
    fields.pop("api_password", None)
    return {key: (str(value) if key in {"api_auth_type", "batch"} else value)
            for key, value in fields.items()}


@click.group("cluster")
def cluster() -> None:
    """Declare, list, enable, disable and change clusters."""


@cluster.command("add")
@click.argument("name")
@click.argument("api_url")
@click.option("--auth-type", type=click.Choice([a.value for a in AuthType]), default="header",
              show_default=True, help="How cigri authenticates to the OAR API.")
@click.option("--auth-header", help="Identity header (default X-Remote-Ident).")
@click.option("--username", help="Login for password auth.")
@click.option("--password", help="Password for password auth.")
@click.option("--ssh-host", help="Front-end host shown to users.")
@click.option("--batch", type=click.Choice([b.value for b in ClusterAPI]), default="oar2_5",
              show_default=True)
@click.option("--resource-unit", default="resource_id", show_default=True)
@click.option("--power", type=int)
@click.option("--properties", help="OAR properties selecting this cluster's resources.")
@click.option("--chunk-size", type=int, default=100, show_default=True)
@click.option("--limit", "api_limit", type=int, default=100, show_default=True)
@click.option("--timeout", type=float, help="Seconds; default REST_QUERIES_TIMEOUT.")
@click.option("--disabled", is_flag=True, help="Add it disabled.")
def add(name: str, api_url: str, auth_type: str, auth_header: str | None, username: str | None,
        password: str | None, ssh_host: str | None, batch: str, resource_unit: str,
        power: int | None, properties: str | None, chunk_size: int, api_limit: int,
        timeout: float | None, disabled: bool) -> None:
    """Declare the cluster NAME whose OAR REST API is at API_URL."""
    from datetime import UTC, datetime

    with transaction() as conn:
        created = store.add_cluster(
            conn, name=name, api_url=api_url, api_auth_type=auth_type,
            api_auth_header=auth_header, api_username=username, api_password=password,
            ssh_host=ssh_host, batch=batch, resource_unit=resource_unit, power=power,
            properties=properties, api_chunk_size=chunk_size, api_limit=api_limit,
            api_timeout_seconds=timeout, enabled=not disabled, now=datetime.now(UTC))
    click.echo(f"cluster {created.id} ({created.name}) added")


@cluster.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_command(as_json: bool) -> None:
    """Every cluster, enabled or not."""
    with transaction() as conn:
        found = store.list_clusters(conn)
    if as_json:
        click.echo(json.dumps([_public(c) for c in found], indent=2))
        return
    for c in found:
        click.echo(f"{c.id}: {c.name} {'enabled' if c.enabled else 'disabled'} {c.batch} "
                   f"{c.api_auth_type} {c.api_url}")


@cluster.command("enable")
@click.argument("name_or_id")
def enable(name_or_id: str) -> None:
    """Let runners and the meta-scheduler use the cluster again."""
    _set_enabled(name_or_id, True)


@cluster.command("disable")
@click.argument("name_or_id")
def disable(name_or_id: str) -> None:
    """Stop sending work to the cluster (its running jobs are still followed)."""
    _set_enabled(name_or_id, False)


def _set_enabled(name_or_id: str, enabled: bool) -> None:
    with transaction() as conn:
        found = resolve_cluster(conn, name_or_id)
        store.set_cluster_enabled(conn, found.id, enabled)
    click.echo(f"cluster {found.name} {'enabled' if enabled else 'disabled'}")


def _injection_policy(value: str) -> str:
    """capacity, pi or tap (empty: back to RUNNER_INJECTION_POLICY)."""
    if value not in POLICIES:
        raise ValueError(f"expected one of {', '.join(POLICIES)}, got {value!r}")
    return value


_SETTABLE: dict[str, Callable[[str], Any]] = {"name": str, "api_url": str,
             "api_auth_type": str, "api_auth_header": str, "api_username": str, "api_password": str,
             "api_chunk_size": int, "api_limit": int,
             "api_timeout_seconds": float, "ssh_host": str, "batch": str, "resource_unit": str,
             "power": int, "properties": str, "night_window": str, "time_zone": str,
             "injection_policy": _injection_policy}


def _check_night(values: dict[str, Any]) -> None:
    """A night window or time zone must read (`cigri.domain.night`); empty means the default."""
    try:
        if values.get("time_zone"):
            zone_of(values["time_zone"])
        if values.get("night_window"):
            NightWindow.parse(values["night_window"])
    except NightWindowError as error:
        raise click.BadParameter(error.message) from error


@cluster.command("set")
@click.argument("name_or_id")
@click.argument("assignments", nargs=-1, required=True, metavar="FIELD=VALUE...")
def set_command(name_or_id: str, assignments: tuple[str, ...]) -> None:
    """Change fields of a cluster, e.g. `cigri cluster set dahu api_url=http://... power=10` or
    `cigri cluster set dahu night_window="20:00-07:00 weekends" time_zone=Europe/Paris` (an empty
    value goes back to the grid-wide NIGHT_WINDOW / NIGHT_TIME_ZONE)."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or key not in _SETTABLE:
            raise click.BadParameter(f"{assignment!r}: expected FIELD=VALUE with FIELD one of "
                                     f"{', '.join(sorted(_SETTABLE))}")
        try:
            values[key] = None if raw == "" else _SETTABLE[key](raw)
        except ValueError as error:
            raise click.BadParameter(f"{key}: {error}") from error
    _check_night(values)
    with transaction() as conn:
        found = resolve_cluster(conn, name_or_id)
        store.set_cluster_fields(conn, found.id, **values)
    click.echo(f"cluster {found.name} updated: {', '.join(sorted(values))}")


@cluster.command("authorize")
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
def authorize(name: str, users: tuple[str, ...]) -> None:
    """Let USERS run non best-effort jobs on cluster NAME (from then on, only listed users may)."""
    _change_authorized(name, lambda allowed: allowed | set(users))


@cluster.command("unauthorize")
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
def unauthorize(name: str, users: tuple[str, ...]) -> None:
    """Take USERS off the list of cluster NAME."""
    _change_authorized(name, lambda allowed: allowed - set(users))


def _change_authorized(name: str, change: Callable[[set[str]], set[str]]) -> None:
    """Replace the users allowed non best-effort jobs on cluster NAME by `change(allowed)`."""
    from cigri.storage.users import get_normal_authorized, set_normal_authorized

    with transaction() as conn:
        found = resolve_cluster(conn, name)
        allowed = get_normal_authorized(conn)
        allowed[found.name] = sorted(change(set(allowed.get(found.name, []))))
        set_normal_authorized(conn, allowed)
    click.echo(f"non best-effort jobs on {found.name}: {', '.join(allowed[found.name]) or 'nobody'}")
