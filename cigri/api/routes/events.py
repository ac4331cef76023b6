"""Events: a campaign's (`/campaigns/<id>/events`: list, close all), the grid's (`/events`: list
the open ones, an admin creates one) and one event (`/events/<id>`: show, close). Cluster-wide
events are readable by every authenticated user; the others by their campaign's owner."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from cigri.api.access import (
    admin,
    check_event_closable,
    check_event_readable,
    now,
    own_campaign,
    tx,
    who,
)
from cigri.api.inputs import flag, int_arg, json_body
from cigri.api.shapes import ApiError, event_json, event_page, json_response, status
from cigri.domain.states import EventClass
from cigri.storage import actions, queries

events = Blueprint("events", __name__)


@events.get("/campaigns/<id:campaign_id>/events")
def campaign_events(campaign_id: int) -> ResponseReturnValue:
    limit = int_arg("limit", 100, minimum=1, maximum=queries.MAX_PAGE)
    after = int_arg("after", 0)
    include_closed = flag("all")
    with tx() as conn:
        own_campaign(conn, campaign_id)
        rows = queries.list_campaign_events(conn, campaign_id, include_closed=include_closed,
                                            after=after, limit=limit)
    return event_page(rows, base=f"/campaigns/{campaign_id}/events", limit=limit, offset=0,
                      extra="&all=1" if include_closed else "")


@events.delete("/campaigns/<id:campaign_id>/events")
def fix_campaign_events(campaign_id: int) -> ResponseReturnValue:
    with tx() as conn:
        own_campaign(conn, campaign_id)
        actions.fix_campaign_events(conn, campaign_id, resubmit=flag("resubmit"), now=now())
    return status(202, "Accepted", f"Campaign {campaign_id} events closed")


@events.get("/events")
def global_events() -> ResponseReturnValue:
    who()
    limit = int_arg("limit", 100, minimum=1, maximum=queries.MAX_PAGE)
    after = int_arg("after", 0)
    with tx() as conn:
        rows = queries.list_global_events(conn, after=after, limit=limit)
    return event_page(rows, base="/events", limit=limit, offset=0)


@events.post("/events")
def create_event() -> ResponseReturnValue:
    admin()
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "Bad request", "expected a JSON object")
    class_, code = body.get("class"), body.get("code")
    if not isinstance(class_, str) or class_ not in {c.value for c in EventClass} \
            or not isinstance(code, str) or not code:
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
    with tx() as conn:
        event_id = actions.create_admin_event(
            conn, class_=class_, code=code, message=message if isinstance(message, str) else None,
            cluster_id=ids["cluster_id"], job_id=ids["job_id"], now=now())
    return status(201, "Created", f"New event {event_id} created",
                  headers={"Location": f"/events/{event_id}"})


def _readable_event(conn: Connection, event_id: int) -> dict[str, Any]:
    row = queries.get_event_row(conn, event_id)
    check_event_readable(who(), event_id, row)
    return row


@events.get("/events/<id:event_id>")
def get_event(event_id: int) -> ResponseReturnValue:
    with tx() as conn:
        row = _readable_event(conn, event_id)
    return json_response(event_json(row), headers={"Allow": "DELETE,GET,POST,PUT"})


@events.delete("/events/<id:event_id>")
def fix_event(event_id: int) -> ResponseReturnValue:
    with tx() as conn:
        row = queries.get_event_row(conn, event_id)
        check_event_closable(who(), event_id, row)
        actions.fix_event(conn, event_id, resubmit=flag("resubmit"), now=now())
    return status(202, "Accepted", f"Event {event_id} closed")
