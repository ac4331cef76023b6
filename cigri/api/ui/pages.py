"""The dashboard's blueprint (`/ui/...`) and what every page shares: the request's settings, clock
and transaction, rendering, the 303 back to the page a form came from, the owner check, and the
guards run on every request (a viewer, CSRF on every POST, security headers, error pages).

The pages themselves are in `views` (campaigns, tasks, events, clusters, daemons), `settings`
(tokens, subscriptions), `rules` (automation rules) and `schedules` (campaign schedules);
`cigri.api.ui` imports them all so their routes are registered on `ui`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from cigri.api import access
from cigri.api.access import Identity
from cigri.api.shapes import ApiError
from cigri.api.ui import present, session
from cigri.config import Settings
from cigri.domain.clock import Clock
from cigri.domain.errors import CigriError, Conflict, Forbidden, NotFound
from cigri.storage import queries

log = logging.getLogger(__name__)

ui = Blueprint("ui", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")


def settings() -> Settings:
    return current_app.config["CIGRI_SETTINGS"]


def now() -> datetime:
    clock: Clock = current_app.config["CIGRI_CLOCK"]
    return clock.now()


@contextmanager
def conn() -> Iterator[Connection]:
    engine: Engine = current_app.config["CIGRI_ENGINE"]
    with engine.begin() as connection:
        yield connection


def page(template: str, code: int = 200, **values: Any) -> ResponseReturnValue:
    response = Response(render_template(template, **values), status=code)
    response.headers["Cache-Control"] = "no-store"
    return response


def back(default: str, notice: str) -> ResponseReturnValue:
    """303 to the page the form came from (a /ui/ path only), with a notice to show."""
    target = request.form.get("next") or default
    if not target.startswith("/ui/") or target.startswith("//"):
        target = default
    target = target.split("#", 1)[0]
    separator = "&" if "?" in target else "?"
    return redirect(f"{target}{separator}{urlencode({'notice': notice})}", code=303)


def own_campaign(conn: Connection, identity: Identity, campaign_id: int) -> tuple[str, str]:
    owner, state = queries.get_campaign_owner(conn, campaign_id)
    access.check_owner(identity, campaign_id, owner)
    return owner, state


def change_own(get_own: Callable[..., object], row_id: int,
               change: Callable[[Connection], object], *, default: str,
               notice: str) -> ResponseReturnValue:
    """A form's change to a rule or a schedule: the API's owner check (`get_own_rule`,
    `get_own_schedule`) and the change in one transaction, then the 303 back with `notice`."""
    identity = session.require_viewer()
    with conn() as connection:
        get_own(connection, row_id, user=identity.user, is_admin=identity.is_admin)
        change(connection)
    return back(default, notice)


@ui.context_processor
def _globals() -> dict[str, Any]:
    identity = session.viewer()
    return {"viewer": identity, "csrf_token": session.csrf_token, "fmt": present,
            "poll_ms": int(settings().UI_POLL_SECONDS * 1000),
            "notice": request.args.get("notice", "")[:300]}


# Pages anyone may load: the sign-in form and the package's static files. Every other dashboard
# request needs a viewer (a session, or the API's own identity), checked here once for all.
OPEN_ENDPOINTS = frozenset({"ui.login", "ui.static"})


@ui.before_request
def _guard() -> None:
    if request.method == "POST":
        session.check_csrf()
    if request.endpoint not in OPEN_ENDPOINTS:
        session.require_viewer()


@ui.after_request
def _headers(response: Response) -> Response:
    """Scripts and styles from this package only; never framed; no referrer outside."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@ui.errorhandler(ApiError)
def _api_error(error: ApiError) -> ResponseReturnValue:
    if error.status == 401 and request.method == "GET" and request.endpoint != "ui.login":
        return redirect(url_for("ui.login", next=request.full_path.rstrip("?")), code=303)
    return page("error.html", error.status, title=error.title, message=error.message,
                 status=error.status)


@ui.errorhandler(CigriError)
def _cigri_error(error: CigriError) -> ResponseReturnValue:
    status, title = 400, "Refused"
    if isinstance(error, NotFound):
        status, title = 404, "Not found"
    elif isinstance(error, Forbidden):
        status, title = 403, "Forbidden"
    elif isinstance(error, Conflict):
        status, title = 409, "Refused"
    return page("error.html", status, title=title, message=error.message, status=status)


@ui.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    return page("error.html", status, title=error.name, message=error.description or error.name,
                 status=status)


@ui.errorhandler(SQLAlchemyError)
def _database_error(error: SQLAlchemyError) -> ResponseReturnValue:
    log.exception("database error on %s %s", request.method, request.path)
    return page("error.html", 503, title="Database unavailable", status=503,
                 message="cigri's database did not answer; try again in a moment.")
