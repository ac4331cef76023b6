"""The campaign schedules' routes (issue 13): `/schedules` (list, add) and `/schedules/<id>`
(show, pause or resume, remove). A schedule is the caller's (an admin sees and changes any).
A definition is `cigri.domain.schedules`' (a JDL with its parameters or nb_jobs: the server
never reads a param_file) and its JDL is checked now, as a submission would be."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from cigri.api.access import now as _now
from cigri.api.access import settings as _settings
from cigri.api.access import tx as _tx
from cigri.api.access import who as _who
from cigri.api.inputs import flag as _flag
from cigri.api.routes.rules import _body, add_change_routes
from cigri.api.shapes import ApiError, bounded_errors, json_response
from cigri.domain.errors import JDLError
from cigri.domain.jdl import JDLDefaults, parse_jdl
from cigri.domain.schedules import ScheduleError, expand_macros, parse_schedule
from cigri.storage import schedules as store
from cigri.storage.clusters import list_clusters

schedules_api = Blueprint("schedules", __name__)


def _own(conn: Connection, schedule_id: int) -> store.Schedule:
    identity = _who()
    return store.get_own_schedule(conn, schedule_id, user=identity.user,
                                  is_admin=identity.is_admin)


def _json(schedule: store.Schedule) -> dict[str, Any]:
    return {"id": schedule.id, "name": schedule.name, "owner": schedule.owner,
            "enabled": schedule.enabled, "when": schedule.spec.describe(),
            "next_run_at": schedule.next_run_at.isoformat() if schedule.next_run_at else None,
            "last_campaign_id": schedule.last_campaign_id, "runs": schedule.runs,
            "skipped": schedule.skipped, "last_error": schedule.last_error,
            "definition": schedule.source}


@schedules_api.get("/schedules")
def list_schedules() -> ResponseReturnValue:
    identity = _who()
    with _tx() as conn:
        found = store.list_schedules(
            conn, owner=None if identity.is_admin and _flag("all") else identity.user)
    return json_response({"items": [_json(s) for s in found]})


@schedules_api.post("/schedules")
def add_schedule() -> ResponseReturnValue:
    identity = _who()
    source = _body()
    try:
        spec = parse_schedule(source)
    except ScheduleError as error:
        raise ApiError(400, "Bad request", str(error)) from None
    settings = _settings()
    defaults = JDLDefaults(resources=settings.DEFAULT_JOB_RESOURCES,
                           walltime=settings.DEFAULT_JOB_WALLTIME,
                           max_resubmissions=settings.DEFAULT_MAX_RESUBMISSIONS)
    with _tx() as conn:
        known = [c.name for c in list_clusters(conn)]
        try:
            jdl = parse_jdl(expand_macros(spec.jdl, _now(), spec.time_zone), defaults=defaults,
                            known_clusters=known)
        except JDLError as error:
            raise ApiError(400, "Bad request",
                           f"invalid schedule: jdl: {bounded_errors(error.errors)}") from None
        if jdl.params is None and jdl.nb_jobs is None:
            raise ApiError(400, "Bad request", "invalid schedule: jdl: give params or nb_jobs "
                           "(a schedule's parameters are stored with it; no param_file)")
        schedule_id = store.add_schedule(conn, owner=identity.user, source=source, now=_now())
        schedule = store.get_schedule(conn, schedule_id)
    return json_response(_json(schedule), 201)


@schedules_api.get("/schedules/<id:schedule_id>")
def show_schedule(schedule_id: int) -> ResponseReturnValue:
    with _tx() as conn:
        return json_response(_json(_own(conn, schedule_id)))


add_change_routes(
    schedules_api, "schedule", own=_own, remove=store.remove_schedule, words=("resumed", "paused"),
    set_enabled=lambda conn, schedule_id, enabled: store.set_schedule_enabled(
        conn, schedule_id, enabled=enabled, now=_now()))
