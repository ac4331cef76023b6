"""`/campaigns`, `/campaigns/<id>`, `/campaigns/<id>/stats` and `/campaigns/<id>/jdl`: list,
submit (a JDL, or a streamed text body whose first line is the JDL), show with per-cluster plans,
rename/pause/resume, cancel/purge, statistics and forecast. A campaign's tasks are
`cigri.api.routes.tasks`, its events `cigri.api.routes.events`, its output files
`cigri.api.routes.outputs`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from cigri.api.access import campaigns_of, check_owner, now, own_campaign, settings, tx, who
from cigri.api.inputs import (
    bounded,
    check_task_count,
    flag,
    int_arg,
    is_text_body,
    json_body,
    json_bytes,
    lines,
)
from cigri.api.shapes import (
    ApiError,
    bounded_errors,
    campaign_json,
    json_response,
    link,
    self_link,
    status,
)
from cigri.domain.admission import AdmissionRefused, check_admission
from cigri.domain.errors import JDLError
from cigri.domain.jdl import TIMED_TYPES, CampaignSpec, JDLDefaults, parse_jdl
from cigri.domain.night import NightWindow, describe_plan
from cigri.domain.stats import ClusterStats, forecast
from cigri.storage import actions, queries
from cigri.storage.campaigns import create_campaign_from_spec, tasks_in_bag
from cigri.storage.clusters import get_cluster, list_clusters
from cigri.storage.collected import collection_summary
from cigri.storage.stats import campaign_cluster_stats
from cigri.storage.submissions import get_launch_context

campaigns = Blueprint("campaigns", __name__)


@campaigns.get("/campaigns")
def list_campaigns() -> ResponseReturnValue:
    identity = who()
    user = campaigns_of(identity, request.args.get("user") or None)
    state = request.args.get("state")
    states: tuple[str, ...] | None = queries.UNFINISHED_STATES
    if flag("all"):
        states = None
    elif state:
        states = tuple(s for s in state.split(",") if s)
        unknown = set(states) - {"in_treatment", "paused", "terminated", "cancelled"}
        if unknown:
            raise ApiError(400, "Bad request", f"unknown campaign state {sorted(unknown)[0]!r}")
    limit = int_arg("limit", queries.MAX_PAGE, minimum=1, maximum=queries.MAX_PAGE)
    after = int_arg("after", 0)
    with tx() as conn:
        items = queries.list_campaigns(conn, grid_user=user, states=states, after=after,
                                       limit=limit)
    links = [self_link()]
    if len(items) == limit:
        query = request.args.to_dict()
        query.update(after=str(items[-1].id), limit=str(limit))
        links.append(link("next", "/campaigns?" + urlencode(query)))
    return json_response({"items": [campaign_json(c) for c in items], "total": len(items),
                          "links": links}, headers={"Allow": "GET,POST"})


def _jdl_defaults() -> JDLDefaults:
    site = settings()
    return JDLDefaults(resources=site.DEFAULT_JOB_RESOURCES, walltime=site.DEFAULT_JOB_WALLTIME,
                       max_resubmissions=site.DEFAULT_MAX_RESUBMISSIONS)


@campaigns.post("/campaigns")
def submit_campaign() -> ResponseReturnValue:
    identity = who()
    streamed: Iterator[str] | None = None
    if is_text_body():
        streamed = lines(request.stream)
        source: Any = _with_streamed_params(next(streamed, ""))
    else:
        source = json_bytes()
    with tx() as conn:
        known = [c.name for c in list_clusters(conn)]
        rules = queries.list_admission_rules(conn)
        in_bag = tasks_in_bag(conn, identity.user)
    try:
        spec = parse_jdl(source, defaults=_jdl_defaults(), known_clusters=known)
        try:
            check_admission(spec, grid_user=identity.user, rules=rules)
        except AdmissionRefused as error:
            raise ApiError(400, "Admission rule error", error.message) from error
        if streamed is not None and (spec.params is not None or spec.nb_jobs is not None):
            raise JDLError("parameters were streamed but the JDL also gives params or nb_jobs")
        known_count = spec.nb_jobs if spec.params is None else len(spec.params)
        if known_count is not None:
            check_task_count(known_count, already=0, in_bag=in_bag)
        params = bounded(spec.parameter_lines(streamed), already=0, in_bag=in_bag)
        with tx() as conn:
            at = now()
            campaign_id = create_campaign_from_spec(conn, grid_user=identity.user, spec=spec,
                                                    params=params, now=at)
            summary = queries.get_campaign_summary(conn, campaign_id)
            actions.record_new_campaign(conn, campaign_id, name=summary.name,
                                        tasks=summary.total_jobs, now=at,
                                        plan=_timed_plan(conn, spec, at))
    except JDLError as error:
        raise ApiError(400, "Error", "Error submitting campaign: "
                       f"{bounded_errors(error.errors)}") from error
    return json_response(campaign_json(summary), 201,
                         headers={"Location": f"/campaigns/{campaign_id}"})


def _timed_plan(conn: Connection, spec: CampaignSpec, at: datetime) -> str | None:
    """For the new-campaign notification: what the campaign's `nightly` or `semi-best-effort`
    clusters run now and next (None when it has none)."""
    timed = [c for c in spec.clusters if c.type in TIMED_TYPES]
    if not timed:
        return None
    site = settings()
    by_name = {c.name: c for c in list_clusters(conn)}
    parts = []
    for cluster in timed:
        window = NightWindow.for_cluster(by_name[cluster.name],
                                         default_window=site.NIGHT_WINDOW,
                                         default_zone=site.NIGHT_TIME_ZONE)
        plan = describe_plan(cluster.type, is_test=cluster.is_test_mode, window=window, now=at)
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


@campaigns.get("/campaigns/<id:campaign_id>")
def get_campaign(campaign_id: int) -> ResponseReturnValue:
    identity = who()
    with tx() as conn:
        detail = queries.get_campaign_detail(conn, campaign_id)
        plans = {c.cluster_id: _cluster_plan(conn, campaign_id, c.cluster_id)
                 for c in detail.clusters}
    check_owner(identity, campaign_id, detail.summary.grid_user)
    body = campaign_json(detail.summary)
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
    site = settings()
    window = NightWindow.for_cluster(get_cluster(conn, cluster_id),
                                     default_window=site.NIGHT_WINDOW,
                                     default_zone=site.NIGHT_TIME_ZONE)
    kind = context.prop("type", "best-effort")
    return {"type": kind, "test_mode": context.is_test_mode,
            "plan": describe_plan(kind, is_test=context.is_test_mode, window=window, now=now())}


@campaigns.put("/campaigns/<id:campaign_id>")
def update_campaign(campaign_id: int) -> ResponseReturnValue:
    values: dict[str, Any] = dict(request.args)
    if request.is_json:
        body = json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "Bad request", "expected a JSON object with name and/or state")
        values.update(body)
    else:
        values.update(request.form)
    name, state = values.get("name"), values.get("state")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, "Bad request", "name must be a string")
    if state is not None and (not isinstance(state, str) or state not in {"paused", "in_treatment"}):
        raise ApiError(400, "Bad request", "state must be 'paused' or 'in_treatment'")
    with tx() as conn:
        own_campaign(conn, campaign_id)
        actions.update_campaign(conn, campaign_id, name=name, state=state, now=now())
        summary = queries.get_campaign_summary(conn, campaign_id)
    return json_response(campaign_json(summary), 202)


@campaigns.delete("/campaigns/<id:campaign_id>")
def delete_campaign(campaign_id: int) -> ResponseReturnValue:
    at = now()
    with tx() as conn:
        own_campaign(conn, campaign_id)
        if flag("hold"):
            actions.pause_campaign(conn, campaign_id, now=at)
            message = f"Campaign {campaign_id} paused"
        elif flag("resume"):
            actions.resume_campaign(conn, campaign_id, now=at)
            message = f"Campaign {campaign_id} resumed"
        elif flag("purge"):
            actions.purge_campaign(conn, campaign_id)
            message = f"Campaign {campaign_id} purged"
        else:
            actions.cancel_campaign(conn, campaign_id, now=at)
            message = f"Campaign {campaign_id} cancelled"
    return status(202, "Accepted", message)


@campaigns.get("/campaigns/<id:campaign_id>/stats")
def campaign_stats(campaign_id: int) -> ResponseReturnValue:
    """v3's six statistics, then per-cluster figures, the forecast (progress, ETA) and, for a
    campaign that gathers outputs, what was collected. The figures come from per-cluster sums
    that PostgreSQL maintains (a few rows whatever the campaign's size; SQLite computes them)."""
    at, window = now(), settings().CAMPAIGN_THROUGHPUT_WINDOW
    with tx() as conn:
        own_campaign(conn, campaign_id)
        per_cluster = campaign_cluster_stats(conn, campaign_id, now=at, window_seconds=window)
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


@campaigns.get("/campaigns/<id:campaign_id>/jdl")
def campaign_jdl(campaign_id: int) -> ResponseReturnValue:
    with tx() as conn:
        own_campaign(conn, campaign_id)
        jdl = queries.get_campaign_jdl(conn, campaign_id)
    try:
        document = json.loads(jdl) if jdl else {}
    except json.JSONDecodeError:
        document = {"jdl": jdl}
    return json_response(document)
