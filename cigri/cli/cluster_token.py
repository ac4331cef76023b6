"""`cigri cluster token NAME`: show (masked), set, replace or remove the cluster-admin token of an
OAR 3 (jwt) cluster on the server, without SQL. The token is read from stdin (`--set -`) or a
file (`--file`), so it lands in no shell history; it is never printed. The running daemons pick
it up without a restart (the updater closes the ADMIN_TOKEN_* event at its next pass)."""

from __future__ import annotations

import sys

import click

from cigri.cli.clusters import resolve_cluster, transaction
from cigri.domain.cluster_tokens import ADMIN_LOGIN, ADMIN_TOKEN_CODES, BadToken, describe
from cigri.domain.states import AuthType
from cigri.storage import cluster_tokens as store


def _read_token(value: str | None, path: str | None) -> str:
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    if value == "-":
        if sys.stdin.isatty():
            return str(click.prompt("Cluster-admin token", hide_input=True))
        return sys.stdin.read()
    return value or ""


@click.command("token")
@click.argument("name_or_id")
@click.option("--set", "value", metavar="TOKEN|-",
              help="Set or replace the admin token; '-' reads it from stdin (prompted, hidden, "
                   "on a terminal).")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False),
              help="Set or replace the admin token with the content of this file.")
@click.option("--show", is_flag=True, help="Show the admin token, masked (the default).")
@click.option("--remove", is_flag=True, help="Remove the admin token.")
def cluster_token(name_or_id: str, value: str | None, path: str | None, show: bool,
                  remove: bool) -> None:
    """The cluster-admin token (OAR 3 JWT of the `oar` user) of cluster NAME_OR_ID: cigri polls
    the jobs of a jwt cluster with it. Never printed in clear."""
    if sum([value is not None or path is not None, remove, show]) > 1:
        raise click.UsageError("give one of --set/--file, --show, --remove")
    with transaction() as conn:
        found = resolve_cluster(conn, name_or_id)
        if found.api_auth_type is not AuthType.JWT:
            raise click.ClickException(f"cluster {found.name} authenticates with "
                                       f"{found.api_auth_type}, not jwt: it has no admin token")
        if value is not None or path is not None:
            try:
                store.set_token(conn, grid_login=ADMIN_LOGIN, cluster_id=found.id,
                                token=_read_token(value, path))
            except BadToken as error:
                raise click.ClickException(f"token not set: {error.message}") from error
            except (OSError, UnicodeDecodeError) as error:
                raise click.ClickException(f"token not set: cannot read {path}: {error}") from error
            current = store.get_token(conn, grid_login=ADMIN_LOGIN, cluster_id=found.id)
            click.echo(f"cluster {found.name}: admin token set to {describe(current)}; the "
                       "updater uses it from its next pass")
            return
        if remove:
            if not store.remove_token(conn, grid_login=ADMIN_LOGIN, cluster_id=found.id):
                raise click.ClickException(f"cluster {found.name} has no admin token")
            click.echo(f"cluster {found.name}: admin token removed")
            return
        current = store.get_token(conn, grid_login=ADMIN_LOGIN, cluster_id=found.id)
        problems = [e for e in store.open_admin_token_events(conn).values()
                    if e.cluster_id == found.id and e.code in ADMIN_TOKEN_CODES]
    if current is None:
        click.echo(f"cluster {found.name}: no admin token; set it with "
                   f"`cigri cluster token {found.name} --set - < TOKEN_FILE`")
    else:
        click.echo(f"cluster {found.name}: admin token {describe(current)}")
    for event in problems:
        click.echo(f"  open event {event.id} {event.code}: {event.message}")
