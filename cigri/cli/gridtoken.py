"""`gridtoken`: my tokens. Subcommands manage API bearer tokens (`create`, `list`, `revoke`): a
token lets scripts and remote hosts call the API as me. v3's options (`-l`, `-i ID -t TOKEN`,
`-r -i ID`) manage the OAR 3 JWTs cigri uses for me on `jwt` clusters (`cigri-v3-user.md` §2.7);
they are never printed in clear any more. Run by an admin they manage the clusters' admin tokens
(v3: root's tokens were the `oar` login's), `--mine` the admin's own."""

from __future__ import annotations

import click

from cigri import __version__
from cigri.cli.client import (
    client_from_environment,
    dump_json,
    echo_answer,
    request_or_fail,
    run_tool,
)

TOOL = "gridtoken"


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-l", "--list", "list_", is_flag=True, help="Show my cluster (JWT) tokens, masked.")
@click.option("-i", "--cluster-id", type=int, help="Cluster id (see gridclusters).")
@click.option("-t", "--token", help="Cluster JWT to register for -i ('-': read it from stdin).")
@click.option("-r", "--remove", is_flag=True, help="Remove my JWT for -i.")
@click.option("--admin", "admin", is_flag=True,
              help="The cluster-admin token (admins only; an admin's tokens are these anyway).")
@click.option("--mine", is_flag=True, help="An admin's own user token, not the cluster-admin one.")
@click.option("-v", "--verbose", is_flag=True, help="Print the API message.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.version_option(__version__, prog_name=TOOL)
@click.pass_context
def gridtoken(ctx: click.Context, list_: bool, cluster_id: int | None, token: str | None,
              remove: bool, admin: bool, mine: bool, verbose: bool, as_json: bool) -> None:
    """Manage my API tokens (create, list, revoke) and my cluster JWTs (-l, -i -t, -r -i).

    Run by a cigri admin, -l, -i -t and -r -i manage the clusters' admin tokens (the identity
    cigri polls OAR 3 with), as v3's root did; --mine manages the admin's own token instead."""
    ctx.obj = {"as_json": as_json}
    if ctx.invoked_subcommand is not None:
        return
    if admin and mine:
        raise click.UsageError("--admin and --mine exclude each other")
    query = "?admin=1" if admin else "?mine=1" if mine else ""
    api = client_from_environment()
    if list_:
        found = api.get("/tokens" + query)
        if as_json:
            dump_json(found)
            return
        click.echo("The clusters have the following admin tokens:" if found.get("admin")
                   else "You have the following tokens:")
        for item in found["items"]:
            click.echo(f" - Cluster #{item['cluster_id']} : {item['token']}")
        return
    if remove and cluster_id is not None:
        answer = request_or_fail(api, "DELETE", f"/tokens/{cluster_id}{query}", tool=TOOL,
                                 failure=f"Failed to remove JWT token on cluster {cluster_id}")
        echo_answer(answer, as_json=as_json, verbose=verbose)
        return
    if cluster_id is not None and token:
        if token == "-":
            token = click.get_text_stream("stdin").read()
        answer = request_or_fail(api, "POST", "/tokens" + query,
                                 json_body={"cluster_id": cluster_id, "token": token}, tool=TOOL,
                                 failure=f"Failed to register token on cluster {cluster_id}")
        if as_json:
            dump_json(answer, pretty=False)
        elif answer.get("admin"):
            click.echo(f"{answer['message']} ({answer['token']}).")
        else:
            click.echo("New token registered.")
        return
    click.echo(ctx.get_help())


@gridtoken.command("create")
@click.option("--name", help="A name to recognise the token by.")
@click.option("--expires-days", type=click.IntRange(1, 3650), help="Expire after this many days.")
@click.pass_obj
def create(obj: dict[str, bool], name: str | None, expires_days: int | None) -> None:
    """Create an API token and print it, alone, on stdout (once: keep it), so that
    `gridtoken create > ~/.config/cigri/token` makes a token file; its id and how to use it go
    to stderr."""
    answer = client_from_environment().request(
        "POST", "/api-tokens", json_body={"name": name, "expires_in_days": expires_days})
    if obj["as_json"]:
        dump_json(answer)
        return
    click.echo(answer["token"])
    click.echo(f"gridtoken: token {answer['id']} created"
               + (f", expires {answer['expires_at']}" if answer["expires_at"] else "")
               + "; it is shown only once. Keep it in a file only you can read (e.g. "
               "`gridtoken create > ~/.config/cigri/token; chmod 600 ~/.config/cigri/token`) "
               "and name that file in API_TOKEN_FILE or CIGRI_API_TOKEN_FILE.", err=True)


@gridtoken.command("list")
@click.pass_obj
def list_tokens(obj: dict[str, bool]) -> None:
    """List my API tokens (never their secret)."""
    found = client_from_environment().get("/api-tokens")
    if obj["as_json"]:
        dump_json(found)
        return
    for item in found["items"]:
        status = "revoked" if item["revoked_at"] else "active"
        click.echo(f"{item['id']}: {item['name'] or '-'} {status} created {item['created_at']}"
                   f" expires {item['expires_at'] or 'never'} last used {item['last_used_at'] or 'never'}")


@gridtoken.command("revoke")
@click.argument("token_id", type=int)
@click.pass_obj
def revoke(obj: dict[str, bool], token_id: int) -> None:
    """Revoke one of my API tokens."""
    answer = client_from_environment().request("DELETE", f"/api-tokens/{token_id}")
    echo_answer(answer, as_json=obj["as_json"], verbose=True)


def main() -> None:
    run_tool(TOOL, gridtoken)
