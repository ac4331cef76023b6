"""`griddel`: cancel, pause, resume or purge campaigns, or cancel one job (v3 options and messages,
`cigri-v3-user.md` §2.3). Exit status 1 if any action failed."""

from __future__ import annotations

import click

from cigri import __version__
from cigri.cli.client import (
    ApiCallError,
    client_from_environment,
    echo_answer,
    fail,
    request_or_fail,
    run_tool,
)

TOOL = "griddel"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ids", nargs=-1, type=int)
@click.option("-c", "--campaign_ids", "--campaign-ids", "campaign_ids",
              help="Comma-separated campaign ids.")
@click.option("-p", "--pause", is_flag=True, help="Pause (in_treatment campaigns only).")
@click.option("-r", "--resume", is_flag=True, help="Resume (paused campaigns only).")
@click.option("--purge", is_flag=True, help="Delete a finished campaign and all its records.")
@click.option("-j", "--job", "job_id", type=int, help="Cancel this one cigri job.")
@click.option("-v", "--verbose", is_flag=True, help="Print the API message on success.")
@click.option("--json", "as_json", is_flag=True, help="Print each API answer as JSON.")
@click.version_option(__version__, prog_name=TOOL)
def griddel(ids: tuple[int, ...], campaign_ids: str | None, pause: bool, resume: bool,
            purge: bool, job_id: int | None, verbose: bool, as_json: bool) -> None:
    """Cancel (default), pause, resume or purge campaigns; or cancel one job (-j)."""
    api = client_from_environment()
    if job_id is not None:
        answer = request_or_fail(api, "DELETE", f"/jobs/{job_id}", tool=TOOL,
                                 failure=f"Failed to cancel job {job_id}")
        echo_answer(answer, as_json=as_json, verbose=verbose)
        return
    targets = list(ids)
    if campaign_ids:
        try:
            targets = [int(part) for part in campaign_ids.split(",") if part.strip()]
        except ValueError:
            fail(TOOL, f"Error: campaign ids must be integers, got {campaign_ids!r}")
    if not targets:
        click.echo("Error: You need to provide at least one campaign_id or job_id!", err=True)
        click.echo(click.get_current_context().get_help(), err=True)
        raise SystemExit(1)
    action, verb = None, "cancel"
    if pause:
        action, verb = "hold", "pause"
    if resume:
        action, verb = "resume", "resume"
    if purge:
        action, verb = "purge", "purge"
    failures = 0
    for campaign_id in targets:
        try:
            answer = api.request("DELETE", f"/campaigns/{campaign_id}",
                                 params={action: 1} if action else None)
        except ApiCallError as error:
            failures += 1
            click.echo(f"Failed to {verb} campaign {campaign_id}: {error.message}.", err=True)
            continue
        echo_answer(answer, as_json=as_json, verbose=verbose)
    if failures:
        raise SystemExit(1)


def main() -> None:
    run_tool(TOOL, griddel)
