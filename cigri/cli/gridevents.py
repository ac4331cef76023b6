"""`gridevents`: list and fix events (v3 options and block layout, `cigri-v3-user.md` §2.4 and
§5.2); admins also disable a cluster or put a job in the event state. Exit 0 only on success."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import click

from cigri import __version__
from cigri.cli.client import (
    ApiClient,
    client_from_environment,
    dump_json,
    echo_answer,
    fail,
    request_or_fail,
    run_tool,
)
from cigri.domain.event_codes import EventCode

TOOL = "gridevents"
SEPARATOR: Final = "-" * 78


def event_header(event: dict[str, Any]) -> str:
    text = f"{event['id']}: ({event['state']}) {event['code']}"
    if event.get("job_id") is not None:
        text += f" of job {event['job_id']}"
    text += f" at {event.get('date_open')}"
    if event.get("cluster_name"):
        text += f" on {event['cluster_name']}"
    if event.get("parent") is not None:
        text += f" because of {event['parent']}"
    return text


def print_events(events: Iterable[dict[str, Any]]) -> None:
    """v3's block format: 78-dash separators, a header line, then the message."""
    found = list(events)
    if not found:
        click.echo("No events!")
        return
    for event in found:
        click.echo(SEPARATOR)
        click.echo(event_header(event))
        if event.get("message"):
            click.echo(event["message"])
    click.echo(SEPARATOR)


def fetch_all(api: ApiClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged list, following the API's `next` links."""
    found: list[dict[str, Any]] = []
    page = api.get(path, **params)
    while True:
        found += page["items"]
        following = next((k["href"] for k in page["links"] if k["rel"] == "next"), None)
        if following is None:
            return found
        page = api.request("GET", following)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("campaign_arg", required=False, type=int)
@click.option("-c", "--campaign", "campaign_id", type=int,
              help="Events of this campaign, or close them all (with -f).")
@click.option("-g", "--global", "global_", is_flag=True, help="Current global events.")
@click.option("-e", "--event", "event_id", type=int, help="This event only, or close it (-f).")
@click.option("-f", "--fix", is_flag=True, help="Close the event(s).")
@click.option("-r", "--resubmit", is_flag=True, help="With -f: resubmit the jobs concerned.")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include closed events.")
@click.option("--blacklist-cluster", type=int, metavar="ID", help="Admin: disable cluster ID.")
@click.option("--mark-job-event", type=int, metavar="ID",
              help="Admin: put job ID in the event state.")
@click.option("-v", "--verbose", is_flag=True, help="Print the API message after a fix.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.version_option(__version__, prog_name=TOOL)
def gridevents(campaign_arg: int | None, campaign_id: int | None, global_: bool,
               event_id: int | None, fix: bool, resubmit: bool, show_all: bool,
               blacklist_cluster: int | None, mark_job_event: int | None, verbose: bool,
               as_json: bool) -> None:
    """List or fix events of a campaign (-c), one event (-e) or global events (-g)."""
    campaign_id = campaign_id if campaign_id is not None else campaign_arg
    if resubmit and not fix:
        fail(TOOL, "Error: --resubmit must be used with --fix!", 2)
    api = client_from_environment()
    if blacklist_cluster is not None or mark_job_event is not None:
        if blacklist_cluster is not None:
            body: dict[str, Any] = {
                "class": "cluster", "cluster_id": blacklist_cluster,
                "code": EventCode.CLUSTER_MANUALLY_DISABLED,
                "message": f"Cluster {blacklist_cluster} disabled by the administrator of the "
                           "grid. Please, be patient."}
        else:
            body = {"class": "job", "job_id": mark_job_event, "code": EventCode.MANUAL_EVENT,
                    "message": "The job has been marked in the event state by the administrator."}
        answer = request_or_fail(api, "POST", "/events", json_body=body, tool=TOOL,
                                 failure="Failed to add event")
        echo_answer(answer, as_json=as_json, verbose=True, pretty=True)
        return
    if event_id is not None:
        path = f"/events/{event_id}"
    elif global_:
        path = "/events"
    elif campaign_id is not None:
        path = f"/campaigns/{campaign_id}/events"
    else:
        click.echo("Missing CAMPAIGN (-c), EVENT (-e) id or --global (-g)", err=True)
        click.echo(click.get_current_context().get_help(), err=True)
        raise SystemExit(1)
    if fix:
        answer = request_or_fail(api, "DELETE", path, params={"resubmit": 1 if resubmit else None},
                                 tool=TOOL, failure="Failed to fix event(s)")
        echo_answer(answer, as_json=as_json, verbose=verbose, pretty=True)
        return
    found = [api.get(path)] if event_id is not None else fetch_all(
        api, path, all=1 if show_all else None)
    if as_json:
        dump_json({"items": found, "total": len(found)})
    else:
        print_events(found)


def main() -> None:
    run_tool(TOOL, gridevents)
