"""`gridsub`: submit campaigns, or add tasks to one (v3 options and output, `cigri-v3-user.md` §2.1);
with `--at`, `--cron` or `--every`, schedule them instead (issue 13: a campaign submitted at a
time, or every period, through the API's `/schedules`, as `gridschedule add` does).

A JDL's `param_file` is read here, on the client, as the user who runs gridsub (`~` and `$VAR` are
the user's), and streamed to the API after the JDL line (a schedule stores its parameters: they go
inline as `params`): the server never opens a user's path.
Exit status 0 only when everything asked was done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from cigri import __version__
from cigri.cli.client import ApiCallError, ApiClient, client_from_environment, dump_json, fail, run_tool
from cigri.domain.errors import JDLError
from cigri.domain.jdl import resolve_param_file_path

TOOL = "gridsub"
CHUNK_BYTES = 1 << 16


def _read_jdl(text: str, origin: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        fail(TOOL, f"gridsub: {origin}: invalid JSON at line {error.lineno}, column "
                   f"{error.colno}: {error.msg}")
    if not isinstance(document, dict):
        fail(TOOL, f"gridsub: {origin}: a JDL is a JSON object")
    return document


def _param_file(document: dict[str, Any], base: Path) -> Path | None:
    key = next((k for k in document if k.lower() == "param_file"), None)
    if key is None or any(k.lower() in {"params", "nb_jobs"} for k in document):
        return None
    try:
        resolved = resolve_param_file_path(str(document[key]), home=str(Path.home()),
                                           environ=os.environ)
    except JDLError as error:
        fail(TOOL, f"gridsub: {error.message}")
    path = Path(resolved)
    return path if path.is_absolute() else base / path


def _stream(first: bytes, path: Path) -> Iterator[bytes]:
    yield first
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _submit(api: ApiClient, document: dict[str, Any], base: Path) -> Any:
    path = _param_file(document, base)
    if path is None:
        return api.request("POST", "/campaigns", json_body=document)
    if not path.is_file():
        fail(TOOL, f"gridsub: param_file {path}: no such file")
    if not os.access(path, os.R_OK):
        fail(TOOL, f"gridsub: param_file {path}: permission denied")
    first = (json.dumps(document, separators=(",", ":")) + "\n").encode()
    return api.request("POST", "/campaigns", body=_stream(first, path), content_type="text/plain")


def _schedule(api: ApiClient, document: dict[str, Any], base: Path, when: dict[str, Any]) -> Any:
    path = _param_file(document, base)
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            fail(TOOL, f"gridsub: param_file {path}: {getattr(error, 'strerror', None) or error}")
        key = next(k for k in document if k.lower() == "param_file")
        document = {k: v for k, v in document.items() if k != key}
        document["params"] = [line for line in lines if line.strip()]
    return api.request("POST", "/schedules", json_body={"jdl": document, **when})


def _when(start_at: str | None, cron: str | None, every: float | None, time_zone: str,
          skip_if_running: bool) -> dict[str, Any] | None:
    """The schedule's timing from --at, --cron, --every (None: submit now)."""
    if cron is not None and every is not None:
        fail(TOOL, "gridsub: --cron and --every: give one or the other", 2)
    if cron is None and every is None and start_at is None:
        if skip_if_running or time_zone != "UTC":
            fail(TOOL, "gridsub: --tz and --skip-if-running go with --at, --cron or --every", 2)
        return None
    found: dict[str, Any] = {"time_zone": time_zone, "skip_if_running": skip_if_running}
    found.update({k: v for k, v in (("start_at", start_at), ("cron", cron),
                                    ("every_minutes", every)) if v is not None})
    return found


def _print_error(error: ApiCallError, *, adding: bool) -> None:
    if error.title == "Admission rule error":
        click.echo(f"Admission rule error: \n  {error.message}", err=True)
    else:
        click.echo(f"Error: {error.message}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", "files", multiple=True, type=click.Path(dir_okay=False),
              help="JDL file (repeatable; one campaign per file).")
@click.option("-j", "--jdl", "inline", multiple=True, help="JDL given inline (repeatable).")
@click.option("-c", "--campaign", "campaign_id", type=int,
              help="Add tasks to this campaign (with -F, -J or -p).")
@click.option("-F", "--jobfile", "jobfiles", multiple=True, type=click.Path(dir_okay=False),
              help="File holding a JSON array of parameters (repeatable).")
@click.option("-J", "--jsonjob", "jsonjobs", multiple=True,
              help="JSON array of parameters given inline (repeatable).")
@click.option("-p", "--param-file", "param_files", multiple=True,
              type=click.Path(dir_okay=False), help="Text file of parameters, one per line, "
              "streamed to campaign -c (repeatable).")
@click.option("-d", "--details", is_flag=True, help="Also print the campaign JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON (one object per action).")
@click.option("--at", "start_at", metavar="WHEN",
              help="Submit later: at this ISO date and time (e.g. 2026-03-01T02:00, in --tz), "
              "or the first run of --cron/--every.")
@click.option("--cron", metavar="EXPR", help="Submit every period: a crontab expression "
              "(minute hour day month weekday), e.g. '0 2 * * *'. The JDL may use {DATE}, "
              "{DATETIME}, {TIMESTAMP}.")
@click.option("--every", type=click.FloatRange(min=1), metavar="MINUTES",
              help="Submit every MINUTES (from --at, or now).")
@click.option("--tz", "time_zone", default="UTC", show_default=True,
              help="Time zone of --at and --cron (IANA, e.g. Europe/Paris).")
@click.option("--skip-if-running", is_flag=True,
              help="With --cron/--every: skip a period while the previous campaign still runs.")
@click.version_option(__version__, prog_name=TOOL)
def gridsub(files: tuple[str, ...], inline: tuple[str, ...], campaign_id: int | None,
            jobfiles: tuple[str, ...], jsonjobs: tuple[str, ...], param_files: tuple[str, ...],
            details: bool, as_json: bool, start_at: str | None, cron: str | None,
            every: float | None, time_zone: str, skip_if_running: bool) -> None:
    """Submit campaigns from JDLs, or add tasks to a campaign; with --at, --cron or --every,
    schedule the JDLs' campaigns instead (see `gridschedule` to list, pause or remove them)."""
    adding = bool(jobfiles or jsonjobs or param_files)
    if not files and not inline and not adding:
        fail(TOOL, "Please provide at least one JSON or JDL_FILE, or an array of parameters")
    if adding and campaign_id is None:
        fail(TOOL, "Please provide a campaign ID to add jobs in it (-c)")
    when = _when(start_at, cron, every, time_zone, skip_if_running)
    if when is not None and (adding or campaign_id is not None):
        fail(TOOL, "gridsub: --at, --cron and --every schedule new campaigns; they do not add "
                   "tasks (-c, -F, -J, -p)", 2)
    api = client_from_environment()
    failures = 0
    documents = [(_read_jdl(Path(f).read_text(), f), Path(f).resolve().parent) for f in files]
    documents += [(_read_jdl(text, "-j"), Path.cwd()) for text in inline]
    for document, base in documents:
        try:
            if when is not None:
                _print_schedule(_schedule(api, document, base, when), as_json)
                continue
            campaign = _submit(api, document, base)
        except ApiCallError as error:
            failures += 1
            _print_error(error, adding=False)
            continue
        if as_json:
            dump_json(campaign, pretty=False)
            continue
        click.echo("Campaign successfully submitted")
        if details:
            click.echo(json.dumps(campaign))
        click.echo(f"CAMPAIGN_ID={campaign['id']}")
    if adding and campaign_id is not None:
        failures += _add(api, campaign_id, jobfiles, jsonjobs, param_files, details, as_json)
    if failures:
        raise SystemExit(1)


def _print_schedule(schedule: dict[str, Any], as_json: bool) -> None:
    if as_json:
        dump_json(schedule, pretty=False)
        return
    click.echo(f"Campaign scheduled: {schedule['when']}, next run {schedule['next_run_at']}")
    click.echo(f"SCHEDULE_ID={schedule['id']}")


def _add(api: ApiClient, campaign_id: int, jobfiles: tuple[str, ...], jsonjobs: tuple[str, ...],
         param_files: tuple[str, ...], details: bool, as_json: bool) -> int:
    failures = 0
    arrays = [Path(f).read_text() for f in jobfiles] + list(jsonjobs)
    calls: list[Any] = []
    for text in arrays:
        try:
            params = json.loads(text)
        except json.JSONDecodeError as error:
            fail(TOOL, f"gridsub: parameters are not a JSON array: {error.msg}")
        calls.append(lambda params=params: api.request(
            "POST", f"/campaigns/{campaign_id}/jobs", json_body=params))
    for name in param_files:
        path = Path(name)
        if not path.is_file():
            fail(TOOL, f"gridsub: {name}: no such file")
        calls.append(lambda path=path: api.request(
            "POST", f"/campaigns/{campaign_id}/jobs", body=_stream(b"", path),
            content_type="text/plain"))
    for call in calls:
        try:
            campaign = call()
        except ApiCallError as error:
            failures += 1
            click.echo(f"Error submitting campaign: {error.message}", err=True)
            continue
        if as_json:
            dump_json(campaign, pretty=False)
            continue
        click.echo(f"Jobs successfully added to campaign {campaign_id}")
        if details:
            click.echo(json.dumps(campaign))
    return failures


def main() -> None:
    run_tool(TOOL, gridsub)
