"""The routes of the REST API: CiGri v3's paths and JSON shapes (`cigri-v3-user.md` §3), v3's
bugs fixed (§6), every route behind an identity and an owner check.

Routes are thin: parse and validate the request, open one short transaction, call `storage`,
render. Parameters of a campaign arrive as a JSON list or as a streamed `text/plain` body read line
by line from `request.stream` (the WSGI server spools big bodies to disk, so a million-line campaign
never sits in the API's memory). The server never opens a path a user names.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection, Engine, select
from werkzeug.routing import BaseConverter

from cigri.api import access
from cigri.api.app import ApiError, Identity, json_response
from cigri.config import Settings
from cigri.domain import batches, cluster_tokens
from cigri.domain.admission import AdmissionRefused, check_admission
from cigri.domain.clock import Clock
from cigri.domain.clusters import Cluster
from cigri.domain.errors import JDLError, NotFound
from cigri.domain.jdl import TIMED_TYPES, CampaignSpec, JDLDefaults, parse_jdl
from cigri.domain.night import NightWindow, describe_plan
from cigri.domain.oar import OarError, OarNotFound
from cigri.domain.states import AuthType, CampaignState, EventClass, NotificationType, Severity
from cigri.domain.stats import ClusterStats, forecast
from cigri.storage import actions, queries, subscriptions, tokens
from cigri.storage import cluster_tokens as token_store
from cigri.storage.clusters import get_cluster, list_clusters
from cigri.storage.collected import collection_summary
from cigri.storage.events import is_cluster_blacklisted, list_open_events
from cigri.storage.stats import (
    campaign_cluster_stats,
    last_grid_usage_date,
    latest_grid_usage,
)
from cigri.storage.submissions import get_launch_context
from cigri.storage.tables import clusters as clusters_table
from cigri.storage.tables import grid_usage, users_mapping

api = Blueprint("api", __name__)

MAX_LINE_BYTES: Final = 1 << 20
OUTPUT_TAIL_LINES: Final = 100_000
TEXT_TYPES: Final = ("text/plain", "application/x-cigri-campaign")


class IdConverter(BaseConverter):
    """A database id: 1 to 18 digits, so it always fits a BIGINT (anything else is a 404)."""

    regex = r"\d{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


# ---------------------------------------------------------------- helpers


def _settings() -> Settings:
    return current_app.config["CIGRI_SETTINGS"]


def _engine() -> Engine:
    return current_app.config["CIGRI_ENGINE"]


def _now() -> datetime:
    clock: Clock = current_app.config["CIGRI_CLOCK"]
    return clock.now()


def _who() -> Identity:
    identity: Identity | None = g.get("identity")
    if identity is None:
        raise ApiError(403, "Forbidden", "Access denied: not authenticated")
    return identity


def _admin() -> Identity:
    identity = _who()
    access.check_admin(identity)
    return identity


def _own_campaign(conn: Connection, campaign_id: int) -> tuple[str, str]:
    """(owner, state) of a campaign the caller may see and change; 404 or 403 otherwise."""
    identity = _who()
    owner, state = queries.get_campaign_owner(conn, campaign_id)
    _check_owner(identity, campaign_id, owner)
    return owner, state


def _check_owner(identity: Identity, campaign_id: int, owner: str) -> None:
    access.check_owner(identity, campaign_id, owner)


def _int_arg(name: str, default: int, *, minimum: int = 0, maximum: int = 10**15) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ApiError(400, "Bad request",
                       f"{name} must be an integer between {minimum} and {maximum}")
    return int(raw)


def _flag(name: str) -> bool:
    """A boolean query flag: present and not 0/false/no/off (v3 took `all=0` as true)."""
    raw = request.args.get(name)
    return raw is not None and raw.strip().lower() not in {"0", "false", "no", "off"}


def _epoch(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _status(status: int, title: str, message: str, headers: dict[str, str] | None = None
            ) -> ResponseReturnValue:
    return json_response({"status": status, "title": title, "message": message}, status, headers)


def _link(rel: str, href: str, title: str | None = None) -> dict[str, str]:
    link = {"rel": rel, "href": href}
    if title:
        link["title"] = title
    return link


def _campaign_json(summary: queries.CampaignSummary) -> dict[str, Any]:
    cid = summary.id
    return {
        "id": cid, "name": summary.name, "user": summary.grid_user, "state": summary.state,
        "type": summary.type, "has_events": summary.has_events,
        "submission_time": _epoch(summary.submission_time),
        "submission_date": _iso(summary.submission_time),
        "completion_date": _iso(summary.completion_time),
        "total_jobs": summary.total_jobs, "finished_jobs": summary.finished_jobs,
        "links": [_link("self", f"/campaigns/{cid}"), _link("parent", "/campaigns"),
                  _link("collection", f"/campaigns/{cid}/jobs", "jobs"),
                  _link("collection", f"/campaigns/{cid}/events", "events"),
                  _link("item", f"/campaigns/{cid}/jdl", "jdl")],
    }


def _event_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "class": row.get("class_", row.get("class")), "code": row["code"],
        "state": row["state"],
        "job_id": row["job_id"], "cluster_id": row["cluster_id"],
        "cluster_name": row.get("cluster_name"), "campaign_id": row["campaign_id"],
        "parent": row["parent"], "checked": bool(row["checked"]),
        "notified": bool(row["notified"]), "date_open": _iso(row["date_open"]),
        "date_closed": _iso(row["date_closed"]), "date_update": _iso(row["date_update"]),
        "message": row["message"],
        "links": [_link("self", f"/events/{row['id']}"), _link("parent", "/events")],
    }


def _event_page(items: list[dict[str, Any]], *, base: str, limit: int, offset: int,
                extra: str = "") -> ResponseReturnValue:
    links = [_link("self", request.full_path.rstrip("?"))]
    if len(items) == limit:
        links.append(_link("next", f"{base}?limit={limit}&after={items[-1]['id']}{extra}"))
    return json_response({"items": [_event_json(row) for row in items], "total": len(items),
                          "offset": offset, "limit": limit, "links": links})


def _lines(stream: Any) -> Iterator[str]:
    """Decoded lines of a request body, read incrementally; a line over 1 MiB is refused."""
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            raise JDLError("a parameter line is longer than 1 MiB")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise JDLError("parameters must be UTF-8 text") from error


def _json_body() -> Any:
    try:
        return json.loads(request.get_data(cache=False) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, "Bad request", f"the body is not valid JSON: {error}") from error


def _param_list(body: Any) -> list[str]:
    if not isinstance(body, list) or not all(isinstance(item, str) for item in body):
        raise ApiError(400, "Bad request", "expected a JSON array of parameter strings")
    return body


def _is_text_body() -> bool:
    return (request.mimetype or "") in TEXT_TYPES


# ---------------------------------------------------------------- root and description


@api.get("/")
def root() -> ResponseReturnValue:
    return json_response({"links": [_link("self", "/"),
                                    _link("collection", "/campaigns", "campaigns"),
                                    _link("collection", "/clusters", "clusters")]},
                         headers={"Allow": "GET"})


@api.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    from cigri.api.openapi import DOCUMENT

    return json_response(DOCUMENT)


# ---------------------------------------------------------------- campaigns


@api.get("/campaigns")
def list_campaigns() -> ResponseReturnValue:
    identity = _who()
    user = access.campaigns_of(identity, request.args.get("user") or None)
    state = request.args.get("state")
    states: tuple[str, ...] | None = queries.UNFINISHED_STATES
    if _flag("all"):
        states = None
    elif state:
        states = tuple(s for s in state.split(",") if s)
        unknown = set(states) - {"in_treatment", "paused", "terminated", "cancelled"}
        if unknown:
            raise ApiError(400, "Bad request", f"unknown campaign state {sorted(unknown)[0]!r}")
    limit = _int_arg("limit", queries.MAX_PAGE, minimum=1, maximum=queries.MAX_PAGE)
    after = _int_arg("after", 0)
    with _engine().begin() as conn:
        items = queries.list_campaigns(conn, grid_user=user, states=states, after=after,
                                       limit=limit)
    links = [_link("self", request.full_path.rstrip("?"))]
    if len(items) == limit:
        query = request.args.to_dict()
        query.update(after=str(items[-1].id), limit=str(limit))
        links.append(_link("next", "/campaigns?" + urlencode(query)))
    return json_response({"items": [_campaign_json(c) for c in items], "total": len(items),
                          "links": links}, headers={"Allow": "GET,POST"})


def _jdl_defaults() -> JDLDefaults:
    settings = _settings()
    return JDLDefaults(resources=settings.DEFAULT_JOB_RESOURCES,
                       walltime=settings.DEFAULT_JOB_WALLTIME,
                       max_resubmissions=settings.DEFAULT_MAX_RESUBMISSIONS)


@api.post("/campaigns")
def submit_campaign() -> ResponseReturnValue:
    identity = _who()
    from cigri.storage.campaigns import create_campaign_from_spec

    lines: Iterator[str] | None = None
    if _is_text_body():
        lines = _lines(request.stream)
        source: Any = _with_streamed_params(next(lines, ""))
    else:
        source = request.get_data(cache=False)
    with _engine().begin() as conn:
        known = [c.name for c in list_clusters(conn)]
        rules = queries.list_admission_rules(conn)
    try:
        spec = parse_jdl(source, defaults=_jdl_defaults(), known_clusters=known)
        try:
            check_admission(spec, grid_user=identity.user, rules=rules)
        except AdmissionRefused as error:
            raise ApiError(400, "Admission rule error", error.message) from error
        if lines is not None and (spec.params is not None or spec.nb_jobs is not None):
            raise JDLError("parameters were streamed but the JDL also gives params or nb_jobs")
        params = spec.parameter_lines(lines)
        with _engine().begin() as conn:
            now = _now()
            campaign_id = create_campaign_from_spec(conn, grid_user=identity.user, spec=spec,
                                                    params=params, now=now)
            summary = queries.get_campaign_summary(conn, campaign_id)
            actions.record_new_campaign(conn, campaign_id, name=summary.name,
                                        tasks=summary.total_jobs, now=now,
                                        plan=_timed_plan(conn, spec, now))
    except JDLError as error:
        raise ApiError(400, "Error", f"Error submitting campaign: {error.message}") from error
    return json_response(_campaign_json(summary), 201,
                         headers={"Location": f"/campaigns/{campaign_id}"})


def _timed_plan(conn: Connection, spec: CampaignSpec, now: datetime) -> str | None:
    """For the new-campaign notification: what the campaign's `nightly` or `semi-best-effort`
    clusters run now and next (None when it has none)."""
    timed = [c for c in spec.clusters if c.type in TIMED_TYPES]
    if not timed:
        return None
    settings = _settings()
    by_name = {c.name: c for c in list_clusters(conn)}
    parts = []
    for cluster in timed:
        window = NightWindow.for_cluster(by_name[cluster.name],
                                         default_window=settings.NIGHT_WINDOW,
                                         default_zone=settings.NIGHT_TIME_ZONE)
        plan = describe_plan(cluster.type, is_test=cluster.is_test_mode, window=window, now=now)
        parts.append(f"on {cluster.name} ({cluster.type}): {plan}")
    return "; ".join(parts)


def _with_streamed_params(first_line: str) -> Any:
    """The JDL of a streamed submission: its parameters are the lines that follow, so a JDL that
    names no parameter source gets a stand-in `param_file` (the server opens no file)."""
    try:
        document = json.loads(first_line)
    except json.JSONDecodeError:
        return first_line  # parse_jdl reports it, with line and column
    if isinstance(document, dict) and not {"params", "nb_jobs", "param_file"} & {
            str(key).lower() for key in document}:
        document["param_file"] = "<streamed>"
        return document
    return first_line


@api.get("/campaigns/<id:campaign_id>")
def get_campaign(campaign_id: int) -> ResponseReturnValue:
    identity = _who()
    with _engine().begin() as conn:
        detail = queries.get_campaign_detail(conn, campaign_id)
        plans = {c.cluster_id: _cluster_plan(conn, campaign_id, c.cluster_id)
                 for c in detail.clusters}
    _check_owner(identity, campaign_id, detail.summary.grid_user)
    body = _campaign_json(detail.summary)
    body["clusters"] = {
        str(c.cluster_id): {"cluster_name": c.cluster_name, "active_jobs": c.active_jobs,
                            "running_jobs": c.running_jobs, "waiting_jobs": c.waiting_jobs,
                            "queued_jobs": c.queued_jobs, "prologue_ok": c.prologue_ok,
                            "epilogue_ok": c.epilogue_ok, **plans[c.cluster_id]}
        for c in detail.clusters}
    return json_response(body, headers={"Allow": "DELETE,GET,POST,PUT"})


def _cluster_plan(conn: Connection, campaign_id: int, cluster_id: int) -> dict[str, Any]:
    """The campaign's type on the cluster and what it runs there now and next (`nightly` and
    `semi-best-effort` follow the cluster's night window)."""
    context = get_launch_context(conn, campaign_id=campaign_id, cluster_id=cluster_id)
    settings = _settings()
    window = NightWindow.for_cluster(get_cluster(conn, cluster_id),
                                     default_window=settings.NIGHT_WINDOW,
                                     default_zone=settings.NIGHT_TIME_ZONE)
    kind = context.prop("type", "best-effort")
    return {"type": kind, "test_mode": context.is_test_mode,
            "plan": describe_plan(kind, is_test=context.is_test_mode, window=window, now=_now())}


@api.put("/campaigns/<id:campaign_id>")
def update_campaign(campaign_id: int) -> ResponseReturnValue:
    values: dict[str, Any] = dict(request.args)
    if request.is_json:
        body = _json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "Bad request", "expected a JSON object with name and/or state")
        values.update(body)
    else:
        values.update(request.form)
    name, state = values.get("name"), values.get("state")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, "Bad request", "name must be a string")
    if state is not None and state not in {"paused", "in_treatment"}:
        raise ApiError(400, "Bad request", "state must be 'paused' or 'in_treatment'")
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        actions.update_campaign(conn, campaign_id, name=name, state=state, now=_now())
        summary = queries.get_campaign_summary(conn, campaign_id)
    return json_response(_campaign_json(summary), 202)


@api.delete("/campaigns/<id:campaign_id>")
def delete_campaign(campaign_id: int) -> ResponseReturnValue:
    now = _now()
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        if _flag("hold"):
            actions.pause_campaign(conn, campaign_id, now=now)
            message = f"Campaign {campaign_id} paused"
        elif _flag("resume"):
            actions.resume_campaign(conn, campaign_id, now=now)
            message = f"Campaign {campaign_id} resumed"
        elif _flag("purge"):
            actions.purge_campaign(conn, campaign_id)
            message = f"Campaign {campaign_id} purged"
        else:
            actions.cancel_campaign(conn, campaign_id, now=now)
            message = f"Campaign {campaign_id} cancelled"
    return _status(202, "Accepted", message)


@api.delete("/campaigns/<id:campaign_id>/outputs")
def delete_outputs(campaign_id: int) -> ResponseReturnValue:
    """Remove the stdout/stderr files of a finished campaign's jobs on their clusters, through
    OAR as the owner's cluster login; for a temporal-grouping batch also its sub-jobs' own
    stdout/stderr and its state file. Nothing is held open while OAR is called."""
    with _engine().begin() as conn:
        owner, state = _own_campaign(conn, campaign_id)
        if state not in {CampaignState.TERMINATED.value, CampaignState.CANCELLED.value}:
            raise ApiError(400, "Error", f"Campaign {campaign_id} is {state}: only the output "
                           "files of a finished campaign are removed")
        found = queries.list_output_jobs(conn, campaign_id, grid_user=owner)
        on_cluster = [(get_cluster(conn, f.cluster_id), f) for f in found]
    removed = missing = 0
    errors: list[str] = []
    for cluster, outputs in on_cluster:
        oar = current_app.config["CIGRI_OAR_FACTORY"](cluster)
        try:
            for details in oar.get_jobs(outputs.remote_ids):
                paths = [details.stdout_file, details.stderr_file]
                if details.id in outputs.batch_jobs:
                    paths += batches.batch_files(details, outputs.batch_jobs[details.id])
                for path in paths:
                    if path and not path.startswith("/"):
                        if not details.launching_directory:
                            continue
                        path = f"{details.launching_directory.rstrip('/')}/{path}"
                    if not path:
                        continue
                    try:
                        oar.delete_file(path, user=outputs.cluster_login)
                        removed += 1
                    except OarNotFound:
                        missing += 1
        except OarError as error:
            errors.append(f"{cluster.name}: {error.message}")
    message = f"{removed} output files of campaign {campaign_id} removed"
    if missing:
        message += f" ({missing} already gone)"
    if errors:
        message += "; failed on " + "; ".join(errors)
    return json_response({"status": 202, "title": "Accepted", "message": message,
                          "removed": removed, "missing": missing, "errors": errors}, 202)


@api.get("/campaigns/<id:campaign_id>/stats")
def campaign_stats(campaign_id: int) -> ResponseReturnValue:
    """v3's six statistics, then per-cluster figures, the forecast (progress, ETA) and, for a
    campaign that gathers outputs, what was collected. The figures come from per-cluster sums
    that PostgreSQL maintains (a few rows whatever the campaign's size; SQLite computes them)."""
    now, window = _now(), _settings().CAMPAIGN_THROUGHPUT_WINDOW
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        per_cluster = campaign_cluster_stats(conn, campaign_id, now=now, window_seconds=window)
        whole = per_cluster[-1]
        summary = queries.get_campaign_summary(conn, campaign_id)
        # The six figures and the forecast from the same sums and the summary's maintained
        # task counts, so they agree with the per-cluster figures.
        stats = queries.campaign_stats_from(summary, whole)
        ahead = forecast(campaign_id, total_tasks=summary.total_jobs,
                         finished_tasks=summary.finished_jobs, jobs_per_hour=whole.jobs_per_hour)
        collection = (collection_summary(conn, campaign_id)
                      if queries.campaign_gathers_outputs(conn, campaign_id) else None)
    return json_response({
        "average_jobs_duration": stats.average_jobs_duration,
        "stddev_jobs_duration": stats.stddev_jobs_duration,
        "jobs_throughput": stats.jobs_throughput, "remaining_time": stats.remaining_time,
        "failures_rate": stats.failures_rate, "resubmit_rate": stats.resubmit_rate,
        "clusters": [_cluster_stats_json(c) for c in per_cluster if c.cluster_id is not None],
        "campaign": next((_cluster_stats_json(c) for c in per_cluster if c.cluster_id is None),
                         None),
        "forecast": {"total_tasks": ahead.total_tasks, "finished_tasks": ahead.finished_tasks,
                     "progress": ahead.progress, "jobs_per_hour": ahead.jobs_per_hour,
                     "eta_seconds": ahead.eta_seconds},
        "collection": collection})


def _cluster_stats_json(stats: ClusterStats) -> dict[str, Any]:
    return {"cluster_id": stats.cluster_id, "cluster_name": stats.cluster_name,
            "terminated": stats.terminated, "active": stats.active, "failures": stats.failures,
            "resubmissions": stats.resubmissions,
            "average_duration": stats.durations.mean_seconds,
            "stddev_duration": stats.durations.stddev_seconds,
            "jobs_per_hour": stats.jobs_per_hour, "failure_rate": stats.failure_rate,
            "resubmit_rate": stats.resubmit_rate}


@api.get("/campaigns/<id:campaign_id>/jdl")
def campaign_jdl(campaign_id: int) -> ResponseReturnValue:
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        jdl = queries.get_campaign_jdl(conn, campaign_id)
    try:
        document = json.loads(jdl) if jdl else {}
    except json.JSONDecodeError:
        document = {"jdl": jdl}
    return json_response(document)


@api.get("/campaigns/<id:campaign_id>/jobs")
def campaign_tasks(campaign_id: int) -> ResponseReturnValue:
    limit = _int_arg("limit", 100, minimum=1, maximum=queries.MAX_PAGE)
    offset = _int_arg("offset", 0)
    after = _int_arg("after", 0)
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        total = queries.get_campaign_summary(conn, campaign_id).total_jobs
        rows = queries.list_tasks(conn, campaign_id, after=after,
                                  offset=0 if after else offset, limit=limit)
    base = f"/campaigns/{campaign_id}/jobs"
    links = [_link("self", request.full_path.rstrip("?")), _link("parent", f"/campaigns/{campaign_id}")]
    if len(rows) == limit:
        # The keyset `after` is what makes the next page exact; `offset` is kept for v3 clients.
        next_offset = (offset if not after else 0) + limit
        links.append(_link("next", f"{base}?limit={limit}&offset={next_offset}&after={rows[-1].id}"))
    items = [{"id": r.id, "name": r.name, "parameters": r.parameters, "cluster": r.cluster,
              "cigri_job_id": r.cigri_job_id, "remote_id": r.remote_id, "state": r.state,
              "href": f"{base}/{r.id}"} for r in rows]
    return json_response({"items": items, "total": total, "offset": offset, "limit": limit,
                          "links": links}, headers={"Allow": "GET,POST"})


@api.post("/campaigns/<id:campaign_id>/jobs")
def add_tasks(campaign_id: int) -> ResponseReturnValue:
    from cigri.storage.campaigns import add_parameters

    params: Any = _lines(request.stream) if _is_text_body() else _param_list(_json_body())
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        try:
            add_parameters(conn, campaign_id, (line.strip() for line in params), now=_now())
        except JDLError as error:
            raise ApiError(400, "Error",
                           f"Error updating campaign {campaign_id}: {error.message}") from error
        summary = queries.get_campaign_summary(conn, campaign_id)
    return json_response(_campaign_json(summary), 201,
                         headers={"Location": f"/campaigns/{campaign_id}"})


@api.get("/campaigns/<id:campaign_id>/jobs/finished")
def finished_jobs(campaign_id: int) -> ResponseReturnValue:
    limit = _int_arg("limit", queries.MAX_PAGE, minimum=1, maximum=queries.MAX_PAGE)
    after = _int_arg("after", 0)
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        rows = queries.list_finished_jobs(conn, campaign_id, after=after, limit=limit)
    links = []
    if len(rows) == limit:
        links.append(_link("next", f"/campaigns/{campaign_id}/jobs/finished?limit={limit}"
                                   f"&after={rows[-1]['id']}"))
    return json_response({"items": [_job_row_json(r) for r in rows], "links": links})


@api.get("/campaigns/<id:campaign_id>/jobs/<id:task_id>")
def campaign_task(campaign_id: int, task_id: int) -> ResponseReturnValue:
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        task = queries.get_task(conn, campaign_id, task_id)
    task["links"] = [_link("self", f"/campaigns/{campaign_id}/jobs/{task_id}"),
                     _link("parent", f"/campaigns/{campaign_id}/jobs")]
    return json_response(task)


@api.get("/campaigns/<id:campaign_id>/events")
def campaign_events(campaign_id: int) -> ResponseReturnValue:
    limit = _int_arg("limit", 100, minimum=1, maximum=queries.MAX_PAGE)
    after = _int_arg("after", 0)
    include_closed = _flag("all")
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        rows = queries.list_campaign_events(conn, campaign_id, include_closed=include_closed,
                                            after=after, limit=limit)
    return _event_page(rows, base=f"/campaigns/{campaign_id}/events", limit=limit, offset=0,
                       extra="&all=1" if include_closed else "")


@api.delete("/campaigns/<id:campaign_id>/events")
def fix_campaign_events(campaign_id: int) -> ResponseReturnValue:
    with _engine().begin() as conn:
        _own_campaign(conn, campaign_id)
        actions.fix_campaign_events(conn, campaign_id, resubmit=_flag("resubmit"), now=_now())
    return _status(202, "Accepted", f"Campaign {campaign_id} events closed")


# ---------------------------------------------------------------- events


@api.get("/events")
def global_events() -> ResponseReturnValue:
    _who()
    limit = _int_arg("limit", 100, minimum=1, maximum=queries.MAX_PAGE)
    after = _int_arg("after", 0)
    with _engine().begin() as conn:
        rows = queries.list_global_events(conn, after=after, limit=limit)
    return _event_page(rows, base="/events", limit=limit, offset=0)


@api.post("/events")
def create_event() -> ResponseReturnValue:
    _admin()
    body = _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "Bad request", "expected a JSON object")
    class_, code = body.get("class"), body.get("code")
    if class_ not in {c.value for c in EventClass} or not isinstance(code, str) or not code:
        raise ApiError(400, "Bad request", "class (cluster, job, campaign, notify, log) and code "
                       "are required")
    ids = {}
    for key in ("cluster_id", "job_id"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ApiError(400, "Bad request", f"{key} must be an integer")
        ids[key] = value
    if ids["cluster_id"] is None and ids["job_id"] is None:
        raise ApiError(400, "Bad request", "cluster_id or job_id is required")
    message = body.get("message")
    with _engine().begin() as conn:
        event_id = actions.create_admin_event(
            conn, class_=class_, code=code, message=message if isinstance(message, str) else None,
            cluster_id=ids["cluster_id"], job_id=ids["job_id"], now=_now())
    return _status(201, "Created", f"New event {event_id} created",
                   headers={"Location": f"/events/{event_id}"})


def _readable_event(conn: Connection, event_id: int) -> dict[str, Any]:
    row = queries.get_event_row(conn, event_id)
    access.check_event_readable(_who(), event_id, row)
    return row


@api.get("/events/<id:event_id>")
def get_event(event_id: int) -> ResponseReturnValue:
    with _engine().begin() as conn:
        row = _readable_event(conn, event_id)
    return json_response(_event_json(row), headers={"Allow": "DELETE,GET,POST,PUT"})


@api.delete("/events/<id:event_id>")
def fix_event(event_id: int) -> ResponseReturnValue:
    identity = _who()
    with _engine().begin() as conn:
        access.check_event_closable(identity, event_id, queries.get_event_row(conn, event_id))
        actions.fix_event(conn, event_id, resubmit=_flag("resubmit"), now=_now())
    return _status(202, "Accepted", f"Event {event_id} closed")


# ---------------------------------------------------------------- jobs


def _job_row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    body = {}
    for key, value in row.items():
        if key in {"submission_time", "start_time", "stop_time", "updated_at"}:
            value = _iso(value)
        body[key] = value
    options = body.get("runner_options")
    if isinstance(options, str):
        with contextlib.suppress(json.JSONDecodeError):
            body["runner_options"] = json.loads(options)
    return body


def _own_job(conn: Connection, job_id: int) -> dict[str, Any]:
    identity = _who()
    job = queries.get_job(conn, job_id)
    access.check_job_owner(identity, job_id, job)
    return job


@api.get("/jobs/<id:job_id>")
def get_job(job_id: int) -> ResponseReturnValue:
    with _engine().begin() as conn:
        _own_job(conn, job_id)
        job = queries.get_job_detail(conn, job_id)
    body = _job_row_json(job)
    body["links"] = [_link("self", f"/jobs/{job_id}"),
                     _link("parent", f"/campaigns/{job['campaign_id']}")]
    return json_response(body)


@api.delete("/jobs/<id:job_id>")
def cancel_job(job_id: int) -> ResponseReturnValue:
    with _engine().begin() as conn:
        _own_job(conn, job_id)
        actions.cancel_job(conn, job_id, now=_now())
    return _status(202, "Accepted", f"Job {job_id} cancel event created")


def _job_on_cluster(job_id: int) -> tuple[dict[str, Any], Any]:
    with _engine().begin() as conn:
        job = _own_job(conn, job_id)
        if job["remote_id"] is None or job["cluster_id"] is None:
            raise ApiError(404, "Not found", f"Job {job_id} has not been submitted to a cluster")
        cluster = get_cluster(conn, job["cluster_id"])
    return job, current_app.config["CIGRI_OAR_FACTORY"](cluster)


def _cluster_login(job: Mapping[str, Any]) -> str:
    with _engine().begin() as conn:
        mapped = conn.execute(select(users_mapping.c.cluster_login).where(
            users_mapping.c.grid_login == job["grid_user"],
            users_mapping.c.cluster_id == job["cluster_id"])).scalar_one_or_none()
    return str(mapped) if mapped and not str(mapped).startswith("Bearer ") else job["grid_user"]


def _output(job_id: int, which: str) -> ResponseReturnValue:
    job, oar = _job_on_cluster(job_id)
    user = _cluster_login(job)
    # Ask OAR where the file is rather than guessing OAR.<name>.<id>.stdout: the job says. A
    # sub-job of a temporal-grouping batch wrote its own file in the batch's directory instead.
    details = oar.get_job(int(job["remote_id"]), user=user)
    path = details.stdout_file if which == "stdout" else details.stderr_file
    if batches.is_sub_job(job.get("tag")):
        path = batches.stdout_file(job_id) if which == "stdout" else batches.stderr_file(job_id)
    if not path:
        raise ApiError(404, "Not found", f"Job {job_id} has no {which} file on its cluster")
    if not path.startswith("/") and details.launching_directory:
        path = f"{details.launching_directory.rstrip('/')}/{path}"
    data = oar.read_file(path, user=user, tail=OUTPUT_TAIL_LINES)
    return json_response({"output": data.decode("utf-8", errors="replace")})


@api.get("/jobs/<id:job_id>/stdout")
def job_stdout(job_id: int) -> ResponseReturnValue:
    return _output(job_id, "stdout")


@api.get("/jobs/<id:job_id>/stderr")
def job_stderr(job_id: int) -> ResponseReturnValue:
    return _output(job_id, "stderr")


@api.get("/jobs/<id:job_id>/cinfos")
def job_cinfos(job_id: int) -> ResponseReturnValue:
    job, oar = _job_on_cluster(job_id)
    details = oar.get_job(int(job["remote_id"]), user=_cluster_login(job))
    body = {key: (_iso(value) if isinstance(value, datetime) else value)
            for key, value in vars(details).items() if key != "events"}
    body["state"] = str(details.state)
    body["events"] = [{"type": e.type, "description": e.description, "date": _iso(e.date)}
                      for e in details.events]
    return json_response(body)


# ---------------------------------------------------------------- clusters and usage


@api.get("/clusters")
def clusters_list() -> ResponseReturnValue:
    _who()
    with _engine().begin() as conn:
        found = list_clusters(conn, enabled_only=True)
    items = [{"id": c.id, "name": c.name,
              "links": [_link("self", f"/clusters/{c.id}"), _link("parent", "/clusters")]}
             for c in found]
    return json_response({"items": items, "total": len(items),
                          "links": [_link("self", "/clusters"), _link("parent", "/")]})


@api.get("/clusters/<id:cluster_id>")
def cluster_detail(cluster_id: int) -> ResponseReturnValue:
    _who()
    threshold = _settings().STRESS_FACTOR
    with _engine().begin() as conn:
        cluster = get_cluster(conn, cluster_id)
        blacklisted = is_cluster_blacklisted(conn, cluster_id)
        # open cluster-wide events other than the blacklist itself: why it is blacklisted
        causes = sorted({e.code for e in list_open_events(conn, class_=EventClass.CLUSTER,
                                                          cluster_id=cluster_id)
                         if e.campaign_id is None and e.code != "BLACKLIST"})
    header = cluster.api_auth_header or (
        "Authorization" if cluster.api_auth_type is AuthType.JWT else "X_REMOTE_IDENT")
    return json_response({
        "id": cluster.id, "name": cluster.name, "api_url": cluster.api_url,
        "api_auth_type": str(cluster.api_auth_type), "api_auth_header": header,
        "api_chunk_size": cluster.api_chunk_size, "api_limit": cluster.api_limit,
        "ssh_host": cluster.ssh_host, "batch": str(cluster.batch),
        "resource_unit": cluster.resource_unit, "power": cluster.power,
        "properties": cluster.properties,
        "stress_factor": f"{cluster.stress_factor}/{threshold}",
        "enabled": cluster.enabled, "blacklisted": blacklisted, "events": causes,
        "under_stress": cluster.is_stressed(threshold),
        **_night_json(cluster),
        "links": [_link("self", f"/clusters/{cluster.id}"), _link("parent", "/clusters")]})


def _night_json(cluster: Cluster) -> dict[str, Any]:
    """The cluster's night window (its own or the grid-wide default), whether it is night there
    now and when that changes (nightly and semi-best-effort campaigns follow it)."""
    settings = _settings()
    window = NightWindow.for_cluster(cluster, default_window=settings.NIGHT_WINDOW,
                                     default_zone=settings.NIGHT_TIME_ZONE)
    now = _now()
    change = window.next_change(now)
    return {"night_window": window.text, "time_zone": window.zone,
            "night_window_is_default": cluster.night_window is None,
            "is_night": window.is_night(now),
            "night_changes_at": change.isoformat() if change else None}


@api.get("/gridusage")
def gridusage() -> ResponseReturnValue:
    _who()
    start = _int_arg("from", -1, minimum=0) if request.args.get("from") else None
    end = _int_arg("to", -1, minimum=0) if request.args.get("to") else None
    with _engine().begin() as conn:
        query = (select(grid_usage, clusters_table.c.name.label("cluster_name"))
                 .join(clusters_table, clusters_table.c.id == grid_usage.c.cluster_id))
        rows: Sequence[Any]
        if start is None and end is None:
            # Each cluster's newest sample (a cluster missing from the last pass keeps its
            # previous one), dated by the newest pass.
            latest = last_grid_usage_date(conn)
            names = {c.id: c.name for c in list_clusters(conn)}
            rows = [] if latest is None else [_UsageRow(
                date=latest, cluster_id=u.cluster_id, cluster_name=names.get(u.cluster_id),
                max_resources=u.max_resources, used_resources=u.used_resources,
                used_by_cigri=u.used_by_cigri, unavailable_resources=u.unavailable_resources)
                for u in latest_grid_usage(conn)]
        else:
            if start is not None:
                query = query.where(grid_usage.c.date > datetime.fromtimestamp(start, tz=_utc()))
            if end is not None:
                query = query.where(grid_usage.c.date <= datetime.fromtimestamp(end, tz=_utc()))
            rows = conn.execute(query.order_by(grid_usage.c.date).limit(100_000)).all()
    by_date: dict[datetime, list[dict[str, Any]]] = {}
    for r in rows:
        by_date.setdefault(r.date, []).append({
            "cluster_name": r.cluster_name, "cluster_id": r.cluster_id,
            "max_resources": r.max_resources, "used_resources": r.used_resources,
            "used_by_cigri": r.used_by_cigri, "unavailable_resources": r.unavailable_resources})
    items = [{"date": _epoch(date), "clusters": value} for date, value in by_date.items()]
    return json_response({"items": items, "from": start, "to": end, "total": len(items),
                          "links": [_link("self", "/gridusage"), _link("parent", "/")]})


@dataclass(frozen=True, kw_only=True)
class _UsageRow:
    date: datetime
    cluster_id: int
    cluster_name: str | None
    max_resources: int
    used_resources: int
    used_by_cigri: int
    unavailable_resources: int


def _utc() -> Any:
    from datetime import UTC

    return UTC


# ---------------------------------------------------------------- notifications


_CHANNELS: Final = {"mail": NotificationType.MAIL.value, "jabber": NotificationType.XMPP.value,
                    "xmpp": NotificationType.XMPP.value,
                    "webhook": NotificationType.WEBHOOK.value,
                    "log": NotificationType.LOG.value}


def _subscriber(identity: Identity) -> str:
    return subscriptions.ADMIN_CHANNEL if identity.is_admin and request.args.get(
        "admin") else identity.user


@api.get("/notifications")
def list_notifications() -> ResponseReturnValue:
    identity = _who()
    with _engine().begin() as conn:
        found = subscriptions.list_subscriptions(conn, grid_user=_subscriber(identity))
    items = [{"id": s.id, "grid_user": s.grid_user, "type": s.type, "identity": s.identity,
              "severity": s.severity, "format": s.format} for s in found]
    return json_response({"items": items, "links": [_link("self", "/notifications/")]})


def _channel(kind: str) -> str:
    if kind not in _CHANNELS:
        raise ApiError(404, "Not found", f"{request.method} {request.url} not found on this server")
    return _CHANNELS[kind]


@api.post("/notifications/<kind>")
def subscribe(kind: str) -> ResponseReturnValue:
    identity = _who()
    channel = _channel(kind)
    body = _json_body() if request.is_json else dict(request.form)
    if not isinstance(body, dict):
        raise ApiError(400, "Bad request", "expected a JSON object")
    target, severity = body.get("identity"), body.get("severity")
    if not isinstance(target, str) or not target.strip():
        raise ApiError(400, "Bad request", "identity is required")
    if severity not in {s.value for s in Severity}:
        raise ApiError(400, "Bad request", "Severity should be 'low', 'medium' or 'high'")
    fmt = body.get("format")
    with _engine().begin() as conn:
        subscriptions.subscribe(conn, grid_user=_subscriber(identity), type_=channel,
                                identity=target.strip(), severity=severity, now=_now(),
                                format_=fmt if isinstance(fmt, str) else None)
    return _status(201, "Created", "New subscription created")


@api.delete("/notifications/<kind>")
def unsubscribe(kind: str) -> ResponseReturnValue:
    identity = _who()
    channel = _channel(kind)
    target = request.args.get("identity")
    if not target:
        raise ApiError(400, "Bad request", "identity is required")
    with _engine().begin() as conn:
        removed = subscriptions.unsubscribe(conn, grid_user=_subscriber(identity), type_=channel,
                                            identity=target)
    if removed == 0:
        raise NotFound(f"No {kind} subscription for {target}")
    return _status(202, "Deleted", "Unsubscription ok")


# ---------------------------------------------------------------- cluster tokens (OAR 3 JWT)


def _token_login(identity: Identity) -> str:
    """Whose cluster tokens a call is about. As in v3 (root's tokens are the `oar` login's), an
    admin's tokens are the clusters' admin tokens, unless `mine=1` asks for the admin's own;
    `admin=1` says so explicitly and is refused to non-admins (never stored as their own)."""
    if _flag("admin") and not identity.is_admin:
        raise ApiError(403, "Forbidden", f"User '{identity.user}' is not a cigri admin: only an "
                       "admin sets a cluster-admin token")
    if identity.is_admin and (_flag("admin") or not _flag("mine")):
        return cluster_tokens.ADMIN_LOGIN
    return identity.user


@api.get("/tokens")
def list_cluster_tokens() -> ResponseReturnValue:
    identity = _who()
    login = _token_login(identity)
    with _engine().begin() as conn:
        rows = conn.execute(select(users_mapping.c.cluster_id, users_mapping.c.cluster_login)
                            .where(users_mapping.c.grid_login == login,
                                   users_mapping.c.cluster_login.ilike("bearer %"))
                            .order_by(users_mapping.c.cluster_id)).all()
    # v3 printed tokens in clear; only the end of each is shown now.
    admin = login == cluster_tokens.ADMIN_LOGIN
    items = [{"cluster_id": r.cluster_id, "token": cluster_tokens.mask(r.cluster_login),
              "admin": admin, **cluster_tokens.claims(r.cluster_login)} for r in rows]
    return json_response({"items": items, "admin": admin,
                          "links": [_link("self", "/tokens/")]})


def _jwt_cluster(conn: Connection, cluster_id: Any) -> None:
    if not isinstance(cluster_id, int) or isinstance(cluster_id, bool):
        raise ApiError(400, "Bad request", "cluster_id must be an integer")
    try:
        cluster = get_cluster(conn, cluster_id)
    except NotFound as error:
        raise ApiError(404, "Not found", f"Cluster {cluster_id} not found") from error
    if cluster.api_auth_type is not AuthType.JWT:
        raise ApiError(400, "Error", f"Cluster {cluster_id} auth_type is not JWT!")


@api.post("/tokens")
def add_cluster_token() -> ResponseReturnValue:
    identity = _who()
    login = _token_login(identity)
    body = _json_body()
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise ApiError(400, "Bad request", "expected {\"cluster_id\": int, \"token\": str}")
    try:
        token = cluster_tokens.normalize_token(body["token"])
    except cluster_tokens.BadToken as error:
        raise ApiError(400, "Bad request", error.message) from error
    with _engine().begin() as conn:
        _jwt_cluster(conn, body.get("cluster_id"))
        token_store.set_token(conn, grid_login=login, cluster_id=body["cluster_id"], token=token)
    admin = login == cluster_tokens.ADMIN_LOGIN
    message = (f"Cluster-admin token of cluster {body['cluster_id']} registered"
               if admin else "New token registered")
    return json_response({"status": 201, "title": "Created", "message": message,
                          "cluster_id": body["cluster_id"], "admin": admin,
                          "token": cluster_tokens.mask(token)}, 201)


@api.delete("/tokens/<id:cluster_id>")
def remove_cluster_token(cluster_id: int) -> ResponseReturnValue:
    identity = _who()
    login = _token_login(identity)
    with _engine().begin() as conn:
        _jwt_cluster(conn, cluster_id)
        if not token_store.remove_token(conn, grid_login=login, cluster_id=cluster_id):
            raise ApiError(404, "Not found", f"No token on cluster {cluster_id}")
    return _status(202, "Accepted", "Token removed")


# ---------------------------------------------------------------- API bearer tokens


def _token_json(token: tokens.ApiToken) -> dict[str, Any]:
    return {"id": token.id, "user": token.grid_user, "name": token.name,
            "created_at": _iso(token.created_at), "expires_at": _iso(token.expires_at),
            "last_used_at": _iso(token.last_used_at), "revoked_at": _iso(token.revoked_at)}


@api.get("/api-tokens")
def list_api_tokens() -> ResponseReturnValue:
    identity = _who()
    with _engine().begin() as conn:
        found = tokens.list_tokens(conn, grid_user=identity.user)
    return json_response({"items": [_token_json(t) for t in found],
                          "links": [_link("self", "/api-tokens")]})


@api.post("/api-tokens")
def create_api_token() -> ResponseReturnValue:
    identity = _who()
    body = _json_body() if request.content_length else {}
    if not isinstance(body, dict):
        raise ApiError(400, "Bad request", "expected a JSON object")
    name = body.get("name")
    expires = body.get("expires_in_days")
    if expires is not None and (not isinstance(expires, int) or isinstance(expires, bool)
                                or not 0 < expires <= 3650):
        raise ApiError(400, "Bad request", "expires_in_days must be an integer from 1 to 3650")
    now = _now()
    from datetime import timedelta

    with _engine().begin() as conn:
        token, clear = tokens.create_token(
            conn, grid_user=identity.user, now=now, name=name if isinstance(name, str) else None,
            expires_at=now + timedelta(days=expires) if expires else None)
    body = _token_json(token)
    body["token"] = clear
    return json_response(body, 201, headers={"Location": f"/api-tokens/{token.id}"})


@api.delete("/api-tokens/<id:token_id>")
def revoke_api_token(token_id: int) -> ResponseReturnValue:
    identity = _who()
    with _engine().begin() as conn:
        owner = None if identity.is_admin else identity.user
        if not tokens.revoke_token(conn, token_id, now=_now(), grid_user=owner):
            raise ApiError(404, "Not found", f"No live token {token_id} of yours")
    return _status(202, "Accepted", f"Token {token_id} revoked")


# ---------------------------------------------------------------- who am I


@api.get("/whoami")
def whoami() -> ResponseReturnValue:
    identity = _who()
    return json_response({"user": identity.user, "is_admin": identity.is_admin,
                          "method": identity.method})
