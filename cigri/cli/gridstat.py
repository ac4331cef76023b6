"""`gridstat`: campaigns, tasks, jobs and outputs (v3 options and layouts, `cigri-v3-user.md`
§2.2), plus finished campaigns (`--all`, `--state`), progress bars with an ETA (the campaign's and
one per cluster), what the collector gathered, `--watch` and `--json`. Dates are ISO 8601 (UTC).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, Final

import click

from cigri import __version__
from cigri.cli.client import ApiCallError, ApiClient, client_from_environment, dump_json, fail, run_tool
from cigri.cli.gridevents import fetch_all, print_events

TOOL = "gridstat"
STATE_LETTERS: Final = {"in_treatment": "R", "paused": "P", "terminated": "T", "cancelled": "C"}
HEADER: Final = ("Campaign id Name                User             Submission time      S  Progress\n"
                 "----------- ------------------- ---------------- -------------------- -- --------")
BAR_WIDTH: Final = 30
MAX_EXTRA_PAGES: Final = 10


def iso_date(epoch: int | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def percent(finished: int, total: int) -> int:
    return finished * 100 // total if total else 0


def progress_bar(finished: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = finished * width // total if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def eta(seconds: float | None) -> str:
    if seconds is None or seconds > 10_000 * 3600 or seconds != seconds:
        return "~"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def list_row(campaign: dict[str, Any]) -> str:
    flag = "e" if campaign.get("has_events") else " "
    state = STATE_LETTERS.get(campaign["state"], "?") + flag
    total, finished = campaign["total_jobs"], campaign["finished_jobs"]
    return (f"{campaign['id']:<11d} {str(campaign['name'] or '')[:19]:<19s} "
            f"{campaign['user'][:16]:<16s} {iso_date(campaign['submission_time']):<20s} "
            f"{state} {finished}/{total} ({percent(finished, total)}%)")


def _number(value: Any, *, scale: float = 1.0, tilde_above: float | None = None,
            tilde_below: float | None = None) -> str:
    if value is None:
        return ""
    value = float(value) * scale
    if tilde_above is not None and value > tilde_above:
        return "~"
    if tilde_below is not None and value < tilde_below:
        return "~"
    return f"{round(value, 1)}"


def detail_text(campaign: dict[str, Any], stats: dict[str, Any]) -> str:
    total, finished = campaign["total_jobs"], campaign["finished_jobs"]
    flag = "(events)" if campaign.get("has_events") else " "
    lines = [
        f"Campaign: {campaign['id']}",
        f"  Name: {campaign['name']}",
        f"  User: {campaign['user']}",
        f"  Date: {iso_date(campaign['submission_time'])}",
        f"  State: {campaign['state']} {flag}",
        f"  Progress: {finished}/{total} ({percent(finished, total)}%) "
        f"{progress_bar(finished, total)} ETA {eta(_remaining(campaign, stats))}",
        "  Stats: ",
        f"    average_jobs_duration: {_number(stats.get('average_jobs_duration'))}",
        f"    stddev_jobs_duration: {_number(stats.get('stddev_jobs_duration'))}",
        f"    jobs_throughput: {_number(stats.get('jobs_throughput'), scale=3600, tilde_below=0.01)}"
        " jobs/h",
        f"    remaining_time: {_number(stats.get('remaining_time'), scale=1 / 3600, tilde_above=10000)}"
        " hours",
        f"    failures_rate: {_number(stats.get('failures_rate'), scale=100)} %",
        f"    resubmit_rate: {_number(stats.get('resubmit_rate'), scale=100)} %",
    ]
    collection = stats.get("collection")
    if isinstance(collection, dict):
        lines.append(f"    collected: {collection.get('collected', 0)} files "
                     f"({collection.get('bytes', 0)} bytes; {collection.get('pending', 0)} "
                     f"pending, {collection.get('missing', 0)} missing, "
                     f"{collection.get('failed', 0)} failed)")
    lines.append("  Clusters: ")
    per_cluster = {str(c.get("cluster_id")): c for c in stats.get("clusters") or []}
    for cluster_id, cluster in campaign.get("clusters", {}).items():
        lines += [f"    {cluster['cluster_name']}:",
                  f"      active_jobs: {cluster['active_jobs']}",
                  f"      queued_jobs: {cluster['queued_jobs']}",
                  f"      prologue_ok: {str(cluster['prologue_ok']).lower()}",
                  f"      epilogue_ok: {str(cluster['epilogue_ok']).lower()}",
                  # v3's active_jobs, split: running on the cluster, and waiting (launching,
                  # queued in OAR) -- active_jobs alone read as "running" on a busy cluster
                  f"      running_jobs: {cluster.get('running_jobs', '-')}",
                  f"      waiting_jobs: {cluster.get('waiting_jobs', '-')}"]
        if cluster.get("plan"):  # e.g. "best-effort jobs now; normal jobs from Thu 20:00 UTC"
            lines.append(f"      runs: {cluster['plan']} [{cluster.get('type')}]")
        figures = per_cluster.get(str(cluster_id))
        if figures is not None:
            lines.append(cluster_progress(figures, total))
    return "\n".join(lines) + "\n"


def cluster_progress(figures: dict[str, Any], total: int) -> str:
    """One cluster's share of the campaign's tasks: terminated there out of all tasks, a bar,
    its throughput and its failures."""
    done = int(figures.get("terminated") or 0)
    rate = _number(figures.get("jobs_per_hour"), tilde_below=0.01) or "~"
    return (f"      progress: {done}/{total} {progress_bar(min(done, total), total)} "
            f"{rate} jobs/h, {figures.get('failures', 0)} failures")


def _remaining(campaign: dict[str, Any], stats: dict[str, Any]) -> float | None:
    if campaign["state"] in {"terminated", "cancelled"}:
        return 0.0
    ahead = stats.get("forecast")
    if isinstance(ahead, dict):  # tasks left at the campaign's recent throughput
        value = ahead.get("eta_seconds")
        return None if value is None else float(value)
    value = stats.get("remaining_time")
    return None if value is None else float(value)


def field_text(value: Any) -> str:
    """One `key: value` value of `gridstat -j`: structured values (objects, lists, booleans) as
    JSON, never Python reprs; nothing for null."""
    if value is None:
        return ""
    if isinstance(value, dict | list | bool):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _task_line(item: dict[str, Any]) -> str:
    def star(value: Any) -> str:
        return "*" if value is None else str(value)

    return (f"  {item['id']}: {star(item['cigri_job_id'])},{star(item['remote_id'])},"
            f"{item['state']},{star(item['cluster'])},{item['name']},{item['parameters']}")


def _print_tasks(api: ApiClient, campaign_id: int, offset: int) -> None:
    click.echo(" Jobs:")
    page = api.get(f"/campaigns/{campaign_id}/jobs", offset=offset or None, limit=100)
    printed = 0
    for _ in range(MAX_EXTRA_PAGES + 1):
        for item in page["items"]:
            click.echo(_task_line(item))
            printed += 1
        following = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        if following is None:
            break
        page = api.request("GET", following)
    else:
        click.echo(f"WARNING: more jobs left. Next jobs with --offset={offset + printed}")
    if printed == 0:
        click.echo("No jobs to print")


def _list(api: ApiClient, user: str | None, show_all: bool, state: str | None, headerless: bool,
          dump: bool, as_json: bool) -> None:
    params: dict[str, Any] = {"user": user, "state": state, "all": 1 if show_all else None}
    campaigns: list[dict[str, Any]] = []
    page = api.get("/campaigns", **params)
    while True:
        campaigns += page["items"]
        following = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        if following is None:
            break
        page = api.request("GET", following)
    if dump or as_json:
        dump_json({"items": campaigns, "total": len(campaigns)})
        return
    if not headerless:
        click.echo(HEADER)
    for campaign in sorted(campaigns, key=lambda c: int(c["id"])):
        click.echo(list_row(campaign))


def _campaign(api: ApiClient, campaign_id: int) -> dict[str, Any]:
    try:
        return dict(api.get(f"/campaigns/{campaign_id}"))
    except ApiCallError as error:
        if error.status == 404:
            fail(TOOL, f"Campaign {campaign_id} not found!")
        raise


def _job(api: ApiClient, job_id: int, stdout: bool, stderr: bool, cinfos: bool, dump: bool,
         as_json: bool) -> None:
    if stdout or stderr:
        which = "stdout" if stdout else "stderr"
        try:
            data = api.get(f"/jobs/{job_id}/{which}")
        except ApiCallError as error:
            if error.status == 404:
                fail(TOOL, f"File not found: {error.message}")
            raise
        if as_json or dump:
            dump_json(data)
        else:
            click.echo(data["output"], nl=False)
        return
    if cinfos:
        dump_json(api.get(f"/jobs/{job_id}/cinfos"))
        return
    job = api.get(f"/jobs/{job_id}")
    if as_json or dump:
        dump_json(job)
        return
    for key, value in job.items():
        if key != "links":
            click.echo(f"{key}: {field_text(value)}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("campaign_arg", required=False, type=int)
@click.option("-c", "--campaign", "campaign_id", type=int, help="Only this campaign (detail view).")
@click.option("-d", "--dump", is_flag=True, help="Print the raw API JSON.")
@click.option("-f", "--full", is_flag=True, help="Detail view plus the task list.")
@click.option("-o", "--offset", type=int, default=0, help="Start the task list at this offset.")
@click.option("-e", "--events", is_flag=True, help="Print the campaign's open events.")
@click.option("-j", "--job", "job_id", type=int, help="Show one cigri job.")
@click.option("-C", "--cinfos", is_flag=True, help="The cluster's details of the job (with -j).")
@click.option("-H", "--headerless", is_flag=True, help="No column titles in the list view.")
@click.option("-p", "--pretty", is_flag=True, help="Pretty JSON (with -d).")
@click.option("-u", "--username", help="Only this user's campaigns.")
@click.option("-O", "--stdout", is_flag=True, help="Print the job's stdout (with -j).")
@click.option("-E", "--stderr", is_flag=True, help="Print the job's stderr (with -j).")
@click.option("-J", "--jdl", is_flag=True, help="Print the stored, expanded JDL.")
@click.option("-a", "--all", "show_all", is_flag=True, help="Also finished campaigns.")
@click.option("-s", "--state", help="Only campaigns in these states (comma-separated).")
@click.option("-w", "--watch", type=float, default=None, metavar="SECONDS",
              help="Refresh every SECONDS until the campaign is finished (Ctrl-C stops).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.version_option(__version__, prog_name=TOOL)
def gridstat(campaign_arg: int | None, campaign_id: int | None, dump: bool, full: bool,
             offset: int, events: bool, job_id: int | None, cinfos: bool, headerless: bool,
             pretty: bool, username: str | None, stdout: bool, stderr: bool, jdl: bool,
             show_all: bool, state: str | None, watch: float | None, as_json: bool) -> None:
    """Show campaigns (list), one campaign (-c ID or ID), its tasks (-f) or one job (-j)."""
    if campaign_id is None and job_id is None:
        campaign_id = campaign_arg
    if events and campaign_id is None:
        fail(TOOL, "You must give a campaign id to print the events!")
    if jdl and campaign_id is None:
        fail(TOOL, "You must give a campaign id to print the JDL!")
    if full and campaign_id is None:
        fail(TOOL, "You must provide a campaign id with --full!")
    for flag, name in ((stdout, "--stdout"), (stderr, "--stderr"), (cinfos, "--cinfos")):
        if flag and job_id is None:
            fail(TOOL, f"You must provide a job id (-j <id>) with {name}!")
    api = client_from_environment()
    if job_id is not None:
        _job(api, job_id, stdout, stderr, cinfos, dump, as_json)
        return
    if campaign_id is None:
        _list(api, username, show_all, state, headerless, dump, as_json)
        return
    if jdl:
        _campaign(api, campaign_id)
        click.echo(json.dumps(api.get(f"/campaigns/{campaign_id}/jdl"), indent=2))
        return
    if events:
        _campaign(api, campaign_id)
        found = fetch_all(api, f"/campaigns/{campaign_id}/events")
        if dump or as_json:
            dump_json({"items": found, "total": len(found)})
        else:
            print_events(found)
        return
    while True:
        campaign = _campaign(api, campaign_id)
        stats = api.get(f"/campaigns/{campaign_id}/stats")
        if watch is not None and not (dump or as_json):
            click.clear()
        if dump or as_json:
            dump_json({**campaign, "stats": stats}, pretty=pretty or as_json)
        else:
            click.echo(detail_text(campaign, stats))
            if full:
                _print_tasks(api, campaign_id, offset)
        if watch is None or campaign["state"] in {"terminated", "cancelled"}:
            return
        time.sleep(max(watch, 0.1))


def main() -> None:
    run_tool(TOOL, gridstat)
