"""What the API answers: the JSON body of a reply and of an error (`{"status", "title",
"message"}`), `ApiError`, and the JSON shapes shared by several resources (links, dates, a
campaign, an event, a job row). Pure shaping: no database, no identity."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from flask import Response, request
from flask.typing import ResponseReturnValue

from cigri.storage import queries

MAX_MESSAGE_CHARS: Final = 4000  # an error message is cut there (a 1M-key JDL must not echo back)
MAX_LISTED_ERRORS: Final = 20


class ApiError(Exception):
    """An HTTP error with a JSON body."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    """JSON with a trailing newline, indented when `?pretty` is given (and not `false`)."""
    pretty = request.args.get("pretty")
    indent = 2 if pretty is not None and pretty.lower() != "false" else None
    body = json.dumps(payload, indent=indent, default=str) + "\n"
    return Response(body, status=status, mimetype="application/json", headers=headers)


def error_response(status: int, title: str, message: str) -> Response:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS - 30] + f"... ({len(message)} characters in all)"
    return json_response({"status": status, "title": title, "message": message}, status)


def bounded_errors(errors: list[str]) -> str:
    """The first errors of a list, and how many there are: an error body stays small."""
    shown = "; ".join(errors[:MAX_LISTED_ERRORS])
    if len(errors) > MAX_LISTED_ERRORS:
        shown += f"; ... and {len(errors) - MAX_LISTED_ERRORS} more errors ({len(errors)} in all)"
    return shown


def status(code: int, title: str, message: str, headers: dict[str, str] | None = None
           ) -> ResponseReturnValue:
    """A bare `{"status", "title", "message"}` answer (202 Accepted, 201 Created, ...)."""
    return json_response({"status": code, "title": title, "message": message}, code, headers)


def epoch(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def link(rel: str, href: str, title: str | None = None) -> dict[str, str]:
    found = {"rel": rel, "href": href}
    if title:
        found["title"] = title
    return found


def self_link() -> dict[str, str]:
    """A link to the request's own path and query."""
    return link("self", request.full_path.rstrip("?"))


def campaign_json(summary: queries.CampaignSummary) -> dict[str, Any]:
    cid = summary.id
    return {
        "id": cid, "name": summary.name, "user": summary.grid_user, "state": summary.state,
        "type": summary.type, "has_events": summary.has_events,
        "submission_time": epoch(summary.submission_time),
        "submission_date": iso(summary.submission_time),
        "completion_date": iso(summary.completion_time),
        "total_jobs": summary.total_jobs, "finished_jobs": summary.finished_jobs,
        "links": [link("self", f"/campaigns/{cid}"), link("parent", "/campaigns"),
                  link("collection", f"/campaigns/{cid}/jobs", "jobs"),
                  link("collection", f"/campaigns/{cid}/events", "events"),
                  link("item", f"/campaigns/{cid}/jdl", "jdl")],
    }


def event_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "class": row.get("class_", row.get("class")), "code": row["code"],
        "state": row["state"],
        "job_id": row["job_id"], "cluster_id": row["cluster_id"],
        "cluster_name": row.get("cluster_name"), "campaign_id": row["campaign_id"],
        "parent": row["parent"], "checked": bool(row["checked"]),
        "notified": bool(row["notified"]), "date_open": iso(row["date_open"]),
        "date_closed": iso(row["date_closed"]), "date_update": iso(row["date_update"]),
        "message": row["message"],
        "links": [link("self", f"/events/{row['id']}"), link("parent", "/events")],
    }


def event_page(items: list[dict[str, Any]], *, base: str, limit: int, offset: int,
               extra: str = "") -> ResponseReturnValue:
    links = [self_link()]
    if len(items) == limit:
        links.append(link("next", f"{base}?limit={limit}&after={items[-1]['id']}{extra}"))
    return json_response({"items": [event_json(row) for row in items], "total": len(items),
                          "offset": offset, "limit": limit, "links": links})


def job_row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    body = {}
    for key, value in row.items():
        if key in {"submission_time", "start_time", "stop_time", "updated_at"}:
            value = iso(value)
        body[key] = value
    options = body.get("runner_options")
    if isinstance(options, str):
        with contextlib.suppress(json.JSONDecodeError):
            body["runner_options"] = json.loads(options)
    return body
