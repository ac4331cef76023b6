"""`gridschedule`: my campaign schedules (issue 13, docs/automations.md) through the API:
`add JDL_FILE` with `--cron EXPR`, `--every MINUTES` or `--at WHEN` (and `--tz`, `--skip-if-running`)
submits the JDL later or every period; `list`, `pause ID`, `resume ID`, `remove ID`. The JDL gives
its parameters (`params` or `nb_jobs`): a schedule is stored whole, the server reads no file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cigri import __version__
from cigri.cli.client import client_from_environment, dump_json, fail, request_or_fail, run_tool
from cigri.cli.gridrule import change, list_items

TOOL = "gridschedule"
_CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=_CONTEXT)
@click.version_option(__version__, prog_name=TOOL)
def gridschedule() -> None:
    """Manage my campaign schedules: a JDL submitted at a given time, or every period."""


@gridschedule.command(context_settings=_CONTEXT)
@click.argument("jdl_file", type=click.Path(dir_okay=False))
@click.option("--cron", help="Crontab expression (minute hour day month weekday), e.g. '0 2 * * *'.")
@click.option("--every", type=click.FloatRange(min=1), help="Every MINUTES.")
@click.option("--at", "start_at", help="ISO date and time: the (first) run, e.g. 2026-03-01T02:00.")
@click.option("--tz", "time_zone", default="UTC", show_default=True,
              help="The schedule's time zone (IANA, e.g. Europe/Paris).")
@click.option("--skip-if-running", is_flag=True,
              help="Skip a period while the previous campaign still runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored schedule as JSON.")
def add(jdl_file: str, cron: str | None, every: float | None, start_at: str | None,
        time_zone: str, skip_if_running: bool, as_json: bool) -> None:
    """Schedule the campaign of JDL_FILE (macros {DATE}, {DATETIME}, {TIMESTAMP})."""
    try:
        jdl = json.loads(Path(jdl_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        fail(TOOL, f"{TOOL}: cannot read {jdl_file}: {getattr(error, 'strerror', None) or error}",
             2)
    except json.JSONDecodeError as error:
        fail(TOOL, f"{TOOL}: {jdl_file} is not valid JSON: {error}", 2)
    if cron is None and every is None and start_at is None:
        fail(TOOL, f"{TOOL}: say when: --cron, --every or --at", 2)
    body = {"jdl": jdl, "time_zone": time_zone, "skip_if_running": skip_if_running}
    body.update({k: v for k, v in (("cron", cron), ("every_minutes", every),
                                   ("start_at", start_at)) if v is not None})
    answer = request_or_fail(client_from_environment(), "POST", "/schedules", json_body=body,
                             tool=TOOL, failure="Failed to add the schedule")
    if as_json:
        dump_json(answer)
    else:
        click.echo(f"Schedule {answer['id']} added: {answer['when']}, next run "
                   f"{answer['next_run_at']}")


def _schedule_lines(item: dict[str, Any]) -> list[str]:
    state = "active" if item["enabled"] else "paused"
    lines = [f"{item['id']}: {item['name']} ({state}): {item['when']}; next run "
             f"{item['next_run_at'] or 'none'}; {item['runs']} runs, {item['skipped']} skipped; "
             f"last campaign {item['last_campaign_id'] or 'none'}"]
    return lines + ([f"   last error: {item['last_error']}"] if item["last_error"] else [])


@gridschedule.command(name="list", context_settings=_CONTEXT)
@click.option("--all", "everyone", is_flag=True, help="Admins: everyone's schedules.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(everyone: bool, as_json: bool) -> None:
    """List my schedules."""
    list_items("/schedules", everyone=everyone, as_json=as_json, empty="No schedules.",
               lines=_schedule_lines, tool=TOOL)


def _change(schedule_id: int, method: str, body: object = None) -> None:
    change(method, f"/schedules/{schedule_id}", body, tool=TOOL,
           failure=f"Failed to change schedule {schedule_id}")


@gridschedule.command(context_settings=_CONTEXT)
@click.argument("schedule_id", type=click.IntRange(min=1))
def pause(schedule_id: int) -> None:
    """Pause a schedule (no runs until resumed; missed periods are not caught up)."""
    _change(schedule_id, "PUT", {"enabled": False})


@gridschedule.command(context_settings=_CONTEXT)
@click.argument("schedule_id", type=click.IntRange(min=1))
def resume(schedule_id: int) -> None:
    """Resume a paused schedule at its next period."""
    _change(schedule_id, "PUT", {"enabled": True})


@gridschedule.command(context_settings=_CONTEXT)
@click.argument("schedule_id", type=click.IntRange(min=1))
def remove(schedule_id: int) -> None:
    """Remove a schedule (its campaigns stay)."""
    _change(schedule_id, "DELETE")


def main() -> None:
    run_tool(TOOL, gridschedule)
