"""The dashboard's pages and fragments (`/ui/...`), over the JSON API's storage functions and
authorisation rules (`cigri.api.access`).

Every page is server-rendered HTML, complete without JavaScript. Live parts are elements with
`data-poll="<fragment url>"`: `static/ui.js` fetches that fragment every `UI_POLL_SECONDS` and
swaps it in. State changes are POST forms carrying a CSRF token, answered with a 303 back to the
page. Lists are keyset pages; counts come from the maintained statistics (`campaign_cluster_stats`,
`campaign_job_counts`) or are capped. The blueprint and what pages share are in `pages`.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any, Final

from flask import Response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from cigri.api import access
from cigri.api.access import Identity
from cigri.api.job_output import Stream, output_source, read_output
from cigri.api.shapes import ApiError
from cigri.api.ui import present, session
from cigri.api.ui.pages import back as _back
from cigri.api.ui.pages import conn as _conn
from cigri.api.ui.pages import now as _now
from cigri.api.ui.pages import own_campaign as _own_campaign
from cigri.api.ui.pages import page as _page
from cigri.api.ui.pages import settings as _settings
from cigri.api.ui.pages import ui
from cigri.domain.night import NightWindow
from cigri.domain.oar import OarError
from cigri.domain.states import ACTIVE_JOB_STATES, EventClass
from cigri.domain.stats import forecast
from cigri.storage import actions, dashboard, queries
from cigri.storage.clusters import get_cluster, list_clusters, set_cluster_enabled
from cigri.storage.events import is_campaign_blacklisted, is_cluster_blacklisted, list_open_events
from cigri.storage.heartbeats import list_heartbeats
from cigri.storage.stats import (
    campaign_cluster_stats,
    grid_usage_series,
    latest_grid_usage,
    many_campaign_cluster_stats,
    window_start,
)

log = logging.getLogger(__name__)

CAMPAIGN_PAGE: Final = 25
TASK_PAGE: Final = 50
TASK_WINDOW: Final = 500  # tasks read per storage call when filtering by state or cluster
TASK_SCAN: Final = 2  # storage calls per such page at most (1,000 tasks examined)
TEXT_WINDOW: Final = 20_000  # tasks a parameter search looks at per page
ACTIVE_STATES: Final = frozenset(s.value for s in ACTIVE_JOB_STATES)
EVENT_PAGE: Final = 50
USAGE_WINDOW: Final = timedelta(hours=24)  # the clusters page's usage charts
USAGE_PERIOD_SECONDS: Final = 15 * 60  # one bar per period: 96 a day per cluster
EVENT_CAP: Final = 100
STATE_FILTERS: Final = {"active": queries.UNFINISHED_STATES, "in_treatment": ("in_treatment",),
                        "paused": ("paused",), "terminated": ("terminated",),
                        "cancelled": ("cancelled",), "all": None}
TASK_STATES: Final = ("pending", "queued", "to_launch", "launching", "submitted", "remote_waiting",
                      "batch_waiting", "running",
                      "terminated", "event", "waiting_resubmission", "cancelled")


# ---------------------------------------------------------------- signing in


@ui.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    target = request.values.get("next") or url_for("ui.campaigns")
    if not target.startswith("/ui/") or target.startswith("//"):
        target = url_for("ui.campaigns")
    error = None
    if request.method == "POST":
        response = redirect(target, code=303)
        if session.sign_in(request.form.get("token", "").strip(), response):
            return response
        error = "That token is not valid: it may be mistyped, expired or revoked."
    elif session.viewer() is not None:
        return redirect(target, code=303)
    response = Response(status=401 if error else 200)
    nonce = session.login_nonce(response)
    response.set_data(render_template("login.html", next=target, error=error,
                                      login_csrf=session.login_csrf(nonce)))
    response.headers["Cache-Control"] = "no-store"
    return response


@ui.post("/logout")
def logout() -> ResponseReturnValue:
    response = redirect(url_for("ui.login"), code=303)
    session.sign_out(response)
    return response


@ui.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("ui.campaigns"), code=303)


# ---------------------------------------------------------------- campaigns


def _campaign_filters(identity: Identity) -> tuple[str | None, str, int]:
    user = access.campaigns_of(identity, request.args.get("user") or None)
    state = request.args.get("state") or "active"
    if state not in STATE_FILTERS:
        raise ApiError(400, "Bad request", f"unknown campaign state filter {state!r}")
    after = request.args.get("after") or "0"
    if not after.isdigit() or len(after) > 18:
        raise ApiError(400, "Bad request", "after must be a campaign id")
    return user, state, int(after)


def _campaign_rows(conn: Connection, items: list[queries.CampaignSummary]) -> list[dict[str, Any]]:
    """What a row of the campaigns table shows, from the maintained figures."""
    now, window = _now(), _settings().CAMPAIGN_THROUGHPUT_WINDOW
    ids = [c.id for c in items]
    opened = dashboard.open_event_counts(conn, ids, cap=EVENT_CAP)
    stats = many_campaign_cluster_stats(conn, ids, now=now, window_seconds=window)
    rows = []
    for summary in items:
        per_cluster = stats[summary.id]
        whole = per_cluster[-1]
        ahead = forecast(summary.id, total_tasks=summary.total_jobs,
                         finished_tasks=summary.finished_jobs, jobs_per_hour=whole.jobs_per_hour)
        rows.append({"c": summary, "clusters": per_cluster[:-1], "whole": whole,
                     "forecast": ahead, "open_events": opened[summary.id]})
    return rows


def _campaigns_context() -> dict[str, Any]:
    identity = session.require_viewer()
    user, state, after = _campaign_filters(identity)
    with _conn() as conn:
        items = queries.list_campaigns(conn, grid_user=user, states=STATE_FILTERS[state],
                                       after=after, limit=CAMPAIGN_PAGE)
        rows = _campaign_rows(conn, items)
    query: dict[str, Any] = {k: v for k, v in {"user": request.args.get("user"),
                                                "state": state}.items() if v}
    next_url = None
    if len(items) == CAMPAIGN_PAGE:
        next_url = url_for("ui.campaigns", **query, after=items[-1].id)
    return {"rows": rows, "user_filter": request.args.get("user") or "", "state_filter": state,
            "states": list(STATE_FILTERS), "next_url": next_url, "after": after,
            "fragment_url": url_for("ui.campaign_rows", **query, after=after or None),
            "here": request.full_path.rstrip("?").replace("/rows", "", 1)}


@ui.get("/campaigns")
def campaigns() -> ResponseReturnValue:
    return _page("campaigns.html", **_campaigns_context())


@ui.get("/campaigns/rows")
def campaign_rows() -> ResponseReturnValue:
    return _page("_campaign_rows.html", **_campaigns_context())


def _campaign_live(conn: Connection, identity: Identity, campaign_id: int) -> dict[str, Any]:
    """The campaign's figures that change while it runs: header, verdict, per-cluster table."""
    _own_campaign(conn, identity, campaign_id)
    now, window = _now(), _settings().CAMPAIGN_THROUGHPUT_WINDOW
    detail = queries.get_campaign_detail(conn, campaign_id)
    summary = detail.summary
    per_cluster = campaign_cluster_stats(conn, campaign_id, now=now, window_seconds=window)
    whole = per_cluster[-1]
    by_id = {s.cluster_id: s for s in per_cluster[:-1]}
    ahead = forecast(campaign_id, total_tasks=summary.total_jobs,
                     finished_tasks=summary.finished_jobs, jobs_per_hour=whole.jobs_per_hour)
    open_events = queries.list_campaign_events(conn, campaign_id, limit=EVENT_PAGE)
    clusters = []
    blacklisted = []
    for c in detail.clusters:
        black = (is_cluster_blacklisted(conn, c.cluster_id)
                 or is_campaign_blacklisted(conn, campaign_id=campaign_id, cluster_id=c.cluster_id))
        if black:
            blacklisted.append(c.cluster_name)
        clusters.append({"c": c, "s": by_id.get(c.cluster_id), "blacklisted": black})
    minutes = max(10, min(180, window // 60))  # the chart: the last minutes, this one included
    since = window_start(now, 0) - timedelta(minutes=minutes - 1)
    series = present.minute_series(dashboard.throughput_minutes(conn, campaign_id, since=since),
                                   since, minutes)
    running = sum(c.running_jobs for c in detail.clusters)
    waiting = sum(c.waiting_jobs for c in detail.clusters)
    queued = sum(c.queued_jobs for c in detail.clusters)
    verdict = present.verdict(
        state=summary.state, total=summary.total_jobs, finished=summary.finished_jobs,
        running=running, waiting=waiting, queued=queued, open_events=open_events,
        blacklisted=blacklisted, jobs_per_hour=whole.jobs_per_hour, eta_seconds=ahead.eta_seconds)
    return {"c": summary, "clusters": clusters, "whole": whole, "forecast": ahead,
            "verdict": verdict, "open_events": open_events, "running": running,
            "waiting": waiting, "queued": queued, "elapsed": _elapsed(summary, now),
            "series": series, "heights": present.bar_heights(series)}


def _elapsed(summary: queries.CampaignSummary, now: datetime) -> float | None:
    if summary.submission_time is None:
        return None
    end = summary.completion_time or now
    return (end - summary.submission_time).total_seconds()


def _task_filters() -> dict[str, Any]:
    state = request.args.get("task_state") or ""
    if state and state not in TASK_STATES:
        raise ApiError(400, "Bad request", f"unknown task state {state!r}")
    after = request.args.get("task_after") or "0"
    if not after.isdigit() or len(after) > 18:
        raise ApiError(400, "Bad request", "task_after must be a task id")
    return {"state": state, "cluster": request.args.get("task_cluster") or "",
            "q": (request.args.get("q") or "").strip()[:200], "after": int(after)}


def _task_page(conn: Connection, campaign_id: int, filters: dict[str, Any]
               ) -> tuple[list[queries.TaskRow], int | None, bool]:
    """A page of tasks after `after` matching the filters, rendered by `queries.list_tasks` (the
    API's task pages, so a task's state is the API's). Every read is bounded: a parameter search
    looks at TEXT_WINDOW tasks, an active state goes through the jobs' state index, another
    state or a cluster looks at TASK_WINDOW x TASK_SCAN tasks. Returns (rows, the `after` of the
    next page or None, whether the page stopped at its bound rather than at a full page)."""
    after, state, cluster = filters["after"], filters["state"], filters["cluster"]

    def wanted(row: queries.TaskRow) -> bool:
        return ((not state or row.state == state) and (not cluster or row.cluster == cluster)
                and (not filters["q"] or filters["q"] in row.parameters))

    if filters["q"] or state in ACTIVE_STATES:
        if filters["q"]:
            found = dashboard.tasks_with_text(conn, campaign_id, filters["q"], after=after,
                                              limit=TASK_PAGE, window=TEXT_WINDOW)
        else:
            found = dashboard.tasks_with_job_state(conn, campaign_id, state, after=after,
                                                   limit=TASK_PAGE)
        rows = [row for row in queries.list_tasks(conn, campaign_id, ids=found.ids,
                                                  limit=TASK_PAGE) if wanted(row)]
        return rows, found.next_after, found.next_after is not None and len(rows) < TASK_PAGE
    if not (state or cluster):
        rows = queries.list_tasks(conn, campaign_id, after=after, limit=TASK_PAGE)
        return rows, (rows[-1].id if len(rows) == TASK_PAGE else None), False
    matched: list[queries.TaskRow] = []
    for _ in range(TASK_SCAN):
        window = queries.list_tasks(conn, campaign_id, after=after, limit=TASK_WINDOW)
        for row in window:
            after = row.id
            if wanted(row):
                matched.append(row)
                if len(matched) == TASK_PAGE:
                    return matched, after, False
        if len(window) < TASK_WINDOW:
            return matched, None, False
    return matched, after, True


@ui.get("/campaigns/<id:campaign_id>")
def campaign(campaign_id: int) -> ResponseReturnValue:
    identity = session.require_viewer()
    filters = _task_filters()
    with _conn() as conn:
        live = _campaign_live(conn, identity, campaign_id)
        tasks, next_after, partial = _task_page(conn, campaign_id, filters)
        cluster_names = [c["c"].cluster_name for c in live["clusters"]]
    query: dict[str, Any] = {k: v for k, v in {"task_state": filters["state"],
                                                "task_cluster": filters["cluster"],
                                                "q": filters["q"]}.items() if v}
    next_url = (url_for("ui.campaign", campaign_id=campaign_id, **query, task_after=next_after)
                + "#tasks") if next_after else None
    return _page("campaign.html", **live, tasks=tasks, filters=filters, next_url=next_url,
                 partial=partial, task_states=TASK_STATES, cluster_names=cluster_names,
                 here=request.full_path.rstrip("?"))


@ui.get("/campaigns/<id:campaign_id>/live")
def campaign_live(campaign_id: int) -> ResponseReturnValue:
    identity = session.require_viewer()
    with _conn() as conn:
        live = _campaign_live(conn, identity, campaign_id)
    return _page("_campaign_live.html", **live)


@ui.get("/campaigns/<id:campaign_id>/tasks/<id:task_id>")
def task(campaign_id: int, task_id: int) -> ResponseReturnValue:
    identity = session.require_viewer()
    with _conn() as conn:
        _own_campaign(conn, identity, campaign_id)
        summary = queries.get_campaign_summary(conn, campaign_id)
        history = dashboard.task_history(conn, campaign_id, task_id)
        state = queries.get_task(conn, campaign_id, task_id)["state"]
    endings = [present.job_ending(j.state, j.return_code, [e["code"] for e in j.events])
               for j in history.jobs]
    return _page("task.html", c=summary, task=history, state=state, endings=endings,
                 here=request.full_path.rstrip("?"))


OUTPUT_TAIL_LINES: Final = 500  # a page, not a download: `gridstat -j ID -O` for all of it


@ui.get("/jobs/<id:job_id>/<any(stdout, stderr):which>")
def job_output(job_id: int, which: Stream) -> ResponseReturnValue:
    """The tail of a job's stdout or stderr, read through the OAR client as `gridstat -O` does
    (`cigri.api.job_output`, the API's own code); a cluster that fails is said on the page."""
    identity = session.require_viewer()
    with _conn() as conn:
        job = queries.get_job(conn, job_id)
        access.check_job_owner(identity, job_id, job)
        source = output_source(conn, job)
    text, failure = "", None
    try:
        text = read_output(source, which, tail=OUTPUT_TAIL_LINES)
    except OarError as error:
        failure = f"{source.cluster.name} did not answer: {error.message}"
    return _page("output.html", job=job, which=which, text=text, failure=failure,
                 lines=OUTPUT_TAIL_LINES)


@ui.get("/campaigns/<id:campaign_id>/events")
def campaign_events(campaign_id: int) -> ResponseReturnValue:
    identity = session.require_viewer()
    include_closed = request.args.get("all") == "1"
    after = request.args.get("after") or "0"
    if not after.isdigit() or len(after) > 18:
        raise ApiError(400, "Bad request", "after must be an event id")
    with _conn() as conn:
        _own_campaign(conn, identity, campaign_id)
        summary = queries.get_campaign_summary(conn, campaign_id)
        rows = queries.list_campaign_events(conn, campaign_id, include_closed=include_closed,
                                            after=int(after), limit=EVENT_PAGE)
    next_url = None
    if len(rows) == EVENT_PAGE:
        next_url = url_for("ui.campaign_events", campaign_id=campaign_id,
                           all="1" if include_closed else None, after=rows[-1]["id"])
    return _page("events.html", c=summary, events=rows, include_closed=include_closed,
                 next_url=next_url, here=request.full_path.rstrip("?"))


@ui.get("/campaigns/<id:campaign_id>/jdl")
def campaign_jdl(campaign_id: int) -> ResponseReturnValue:
    identity = session.require_viewer()
    with _conn() as conn:
        _own_campaign(conn, identity, campaign_id)
        summary = queries.get_campaign_summary(conn, campaign_id)
        jdl = queries.get_campaign_jdl(conn, campaign_id) or ""
    try:
        text = json.dumps(json.loads(jdl), indent=2)
    except json.JSONDecodeError:
        text = jdl
    return _page("jdl.html", c=summary, jdl=text)


# ---------------------------------------------------------------- campaign actions


@ui.post("/campaigns/<id:campaign_id>/<any(pause, resume, cancel):action>")
def campaign_action(campaign_id: int, action: str) -> ResponseReturnValue:
    """The API's `DELETE /campaigns/<id>` (`?hold=1`, `?resume=1`, cancel), as a form."""
    identity = session.require_viewer()
    now = _now()
    with _conn() as conn:
        _own_campaign(conn, identity, campaign_id)
        if action == "pause":
            actions.pause_campaign(conn, campaign_id, now=now)
        elif action == "resume":
            actions.resume_campaign(conn, campaign_id, now=now)
        else:
            actions.cancel_campaign(conn, campaign_id, now=now)
    done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
    return _back(url_for("ui.campaign", campaign_id=campaign_id), f"Campaign {campaign_id} {done}")


@ui.post("/campaigns/<id:campaign_id>/events/fix")
def fix_campaign_events(campaign_id: int) -> ResponseReturnValue:
    """The API's `DELETE /campaigns/<id>/events` (`?resubmit=1`), as a form."""
    identity = session.require_viewer()
    resubmit = request.form.get("resubmit") == "1"
    with _conn() as conn:
        _own_campaign(conn, identity, campaign_id)
        actions.fix_campaign_events(conn, campaign_id, resubmit=resubmit, now=_now())
    what = "fixed, failed tasks resubmitted" if resubmit else "closed"
    return _back(url_for("ui.campaign", campaign_id=campaign_id),
                 f"Events of campaign {campaign_id} {what}")


@ui.post("/events/<id:event_id>/fix")
def fix_event(event_id: int) -> ResponseReturnValue:
    """The API's `DELETE /events/<id>` (`?resubmit=1`), as a form."""
    identity = session.require_viewer()
    resubmit = request.form.get("resubmit") == "1"
    with _conn() as conn:
        row = queries.get_event_row(conn, event_id)
        access.check_event_closable(identity, event_id, row)
        actions.fix_event(conn, event_id, resubmit=resubmit, now=_now())
    default = (url_for("ui.campaign", campaign_id=row["campaign_id"]) if row["campaign_id"]
               else url_for("ui.clusters"))
    return _back(default, f"Event {event_id} {'fixed, task resubmitted' if resubmit else 'closed'}")


# ---------------------------------------------------------------- clusters and daemons


@ui.get("/clusters")
def clusters() -> ResponseReturnValue:
    identity = session.require_viewer()
    settings = _settings()
    now = _now()
    with _conn() as conn:
        found = list_clusters(conn, enabled_only=not identity.is_admin)
        usage = {u.cluster_id: u for u in latest_grid_usage(conn)}
        series = grid_usage_series(conn, since=now - USAGE_WINDOW, until=now,
                                   period_seconds=USAGE_PERIOD_SECONDS)
        rows = []
        for cluster in found:
            window = NightWindow.for_cluster(cluster, default_window=settings.NIGHT_WINDOW,
                                             default_zone=settings.NIGHT_TIME_ZONE)
            causes = [e for e in list_open_events(conn, class_=EventClass.CLUSTER,
                                                  cluster_id=cluster.id)
                      if e.campaign_id is None][:20]
            rows.append({"cluster": cluster, "usage": usage.get(cluster.id),
                         "blacklisted": is_cluster_blacklisted(conn, cluster.id),
                         "stressed": cluster.is_stressed(settings.STRESS_FACTOR),
                         "events": causes, "window": window.text,
                         "night": window.is_night(now),
                         "chart": present.usage_chart(
                             cluster.name, series.get(cluster.id, []), start=now - USAGE_WINDOW,
                             end=now, period_seconds=USAGE_PERIOD_SECONDS)})
    return _page("clusters.html", rows=rows, threshold=settings.STRESS_FACTOR,
                 here=request.full_path.rstrip("?"))


@ui.post("/clusters/<id:cluster_id>/<any(enable, disable):action>")
def cluster_action(cluster_id: int, action: str) -> ResponseReturnValue:
    access.check_admin(session.require_viewer())
    with _conn() as conn:
        cluster = get_cluster(conn, cluster_id)
        set_cluster_enabled(conn, cluster_id, action == "enable")
    return _back(url_for("ui.clusters"), f"Cluster {cluster.name} {action}d")


def _daemon_rows() -> list[dict[str, Any]]:
    access.check_admin(session.require_viewer())
    now = _now()
    with _conn() as conn:
        beats = list_heartbeats(conn)
    return [{"beat": b, "age": b.lateness(now).total_seconds(), "late": b.is_late(now)}
            for b in beats]


@ui.get("/daemons")
def daemons() -> ResponseReturnValue:
    return _page("daemons.html", rows=_daemon_rows())


@ui.get("/daemons/rows")
def daemon_rows() -> ResponseReturnValue:
    return _page("_daemon_rows.html", rows=_daemon_rows())
