"""`gridclean`: clean up a user's finished campaigns (v3 shipped it as a stub that only listed the
jobs, `cigri-v3-user.md` §2.8).

For each campaign given (or, with `--all`, every finished campaign of the user), either purge it
(`--purge`: remove its data from cigri, through `DELETE /campaigns/<id>?purge=1`), or remove its
jobs' stdout/stderr files on the clusters (`--outputs`: `DELETE /campaigns/<id>/outputs` records
a request that the collector carries out through OAR as the owner; gridclean prints the request's
id and, unless `--no-wait`, follows it with `GET /campaigns/<id>/outputs/<request id>` until it
is done, then prints the counts; an older server without that endpoint is said plainly, exit 2).
Without an action it lists, per cluster, the OAR jobs whose files a cleaning would touch (v3's
output). Only finished (terminated or cancelled) campaigns are cleaned; `--dry-run` shows what would happen.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Final

import click

from cigri import __version__
from cigri.cli.client import ApiCallError, ApiClient, client_from_environment, fail, run_tool

TOOL = "gridclean"
FINISHED = ("terminated", "cancelled")
POLL_SECONDS: Final = 1.0


def _finished_jobs(api: ApiClient, campaign_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get(f"/campaigns/{campaign_id}/jobs/finished", after=after)
        items = page.get("items", [])
        found += items
        if not items or not any(link.get("rel") == "next" for link in page.get("links", [])):
            return found
        after = int(items[-1]["id"])


def _my_finished_campaigns(api: ApiClient) -> list[int]:
    page = api.get("/campaigns", state=",".join(FINISHED))
    return sorted(int(item["id"]) for item in page.get("items", []))


def _list_jobs(api: ApiClient, campaign_id: int) -> None:
    click.echo("Getting the terminated jobs...")
    jobs = _finished_jobs(api, campaign_id)
    click.echo("Sorting jobs by clusters...")
    by_cluster: dict[Any, list[int]] = defaultdict(list)
    for job in jobs:
        if job.get("remote_id") is not None:
            by_cluster[job.get("cluster_id")].append(int(job["remote_id"]))
    for cluster, ids in sorted(by_cluster.items(), key=lambda item: str(item[0])):
        for start in range(0, len(ids), 100):
            click.echo(f"Getting {ids[start:start + 100]} from cluster {cluster}...")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ids", nargs=-1, type=int)
@click.option("-a", "--all", "all_finished", is_flag=True,
              help="Every finished campaign of mine.")
@click.option("--purge", is_flag=True, help="Remove the campaigns' data from cigri.")
@click.option("--outputs", is_flag=True,
              help="Remove the jobs' output files on the clusters (keeps the campaign).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="With --outputs: follow the removal until it is done.")
@click.option("-n", "--dry-run", is_flag=True, help="Only say what would be done.")
@click.option("-v", "--verbose", is_flag=True, help="Print the API message on success.")
@click.version_option(__version__, prog_name=TOOL)
def gridclean(ids: tuple[int, ...], all_finished: bool, purge: bool, outputs: bool, wait: bool,
              dry_run: bool, verbose: bool) -> None:
    """Clean finished campaigns: list their jobs, purge them, or remove their output files."""
    api = client_from_environment()
    targets = list(ids)
    if all_finished:
        targets = sorted(set(targets) | set(_my_finished_campaigns(api)))
    if not targets:
        click.echo("Missing CAMPAIGN_ID", err=True)
        click.echo(click.get_current_context().get_help(), err=True)
        raise SystemExit(1)
    failures = 0
    for campaign_id in targets:
        try:
            campaign = api.get(f"/campaigns/{campaign_id}")
        except ApiCallError as error:
            failures += 1
            click.echo(f"Campaign {campaign_id}: {error.message}.", err=True)
            continue
        if campaign.get("state") not in FINISHED:
            failures += 1
            click.echo(f"Campaign {campaign_id} is {campaign.get('state')}: only finished "
                       "campaigns are cleaned.", err=True)
            continue
        if not (purge or outputs):
            _list_jobs(api, campaign_id)
            continue
        if dry_run:
            what = "purge" if purge else "remove the output files of"
            click.echo(f"would {what} campaign {campaign_id}")
            continue
        failures += not _clean(api, campaign_id, purge=purge, wait=wait, verbose=verbose)
    if failures:
        raise SystemExit(1)


def _clean(api: ApiClient, campaign_id: int, *, purge: bool, wait: bool, verbose: bool) -> bool:
    if purge:
        path, params, verb = f"/campaigns/{campaign_id}", {"purge": 1}, "purge"
    else:
        path, params, verb = f"/campaigns/{campaign_id}/outputs", None, "clean outputs of"
    try:
        answer = api.request("DELETE", path, params=params)
    except ApiCallError as error:
        if not purge and error.status in (404, 405):  # the campaign exists (checked above)
            fail(TOOL, "This cigri server cannot remove output files on the clusters yet "
                       "(no DELETE /campaigns/<id>/outputs).", 2)
        click.echo(f"Failed to {verb} campaign {campaign_id}: {error.message}.", err=True)
        return False
    body = answer if isinstance(answer, dict) else {}
    if not purge and "id" in body:  # a request the collector carries out
        click.echo(f"Campaign {campaign_id}: removal of the output files requested "
                   f"(request {body['id']}).")
        if not wait:
            return True
        body = _follow(api, campaign_id, body)
    if not purge:
        # the counts; clusters that could not be reached are listed in `errors`
        click.echo(f"Campaign {campaign_id}: {body.get('removed', 0)} output files removed"
                   + (f", {body['missing']} already gone" if body.get("missing") else "") + ".")
        for problem in body.get("errors") or []:
            click.echo(f"Failed to clean outputs of campaign {campaign_id} on {problem}.",
                       err=True)
        if verbose:
            click.echo(body.get("message", ""))
        return not body.get("errors")
    if verbose:
        click.echo(body.get("message", "") if body else answer)
    else:
        click.echo(f"Campaign {campaign_id} purged.")
    return True


def _follow(api: ApiClient, campaign_id: int, request: dict[str, Any]) -> dict[str, Any]:
    """Poll the removal request until it is done (or failed), saying on stderr how far it got."""
    path = f"/campaigns/{campaign_id}/outputs/{request['id']}"
    shown = -1
    while request.get("state") not in ("done", "failed"):
        time.sleep(POLL_SECONDS)
        answer = api.get(path)
        request = answer if isinstance(answer, dict) else {}
        done = int(request.get("removed", 0)) + int(request.get("missing", 0))
        if done != shown and request.get("state") == "running":
            click.echo(f"Campaign {campaign_id}: {done} output files handled so far...", err=True)
            shown = done
    return request


def main() -> None:
    """`gridclean`."""
    run_tool(TOOL, gridclean)
