"""The dashboard's "My settings" page: the viewer's API tokens (create, revoke) and notification
subscriptions (subscribe, unsubscribe), over the API's storage functions."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from flask import request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from cigri.api.shapes import ApiError
from cigri.api.ui import session
from cigri.api.ui.pages import back as _back
from cigri.api.ui.pages import conn as _conn
from cigri.api.ui.pages import now as _now
from cigri.api.ui.pages import page as _page
from cigri.api.ui.pages import ui
from cigri.domain.notifications import CHANNEL_KINDS
from cigri.domain.states import Severity
from cigri.notify.apprise_channel import shown_identity, url_problem
from cigri.storage import subscriptions, tokens

CHANNELS: Final = CHANNEL_KINDS


def _listed(conn: Connection, grid_user: str) -> list[tuple[subscriptions.Subscription, str]]:
    return [(s, shown_identity(s.type, s.identity))
            for s in subscriptions.list_subscriptions(conn, grid_user=grid_user)]


@ui.get("/settings")
def settings_page() -> ResponseReturnValue:
    identity = session.require_viewer()
    with _conn() as conn:
        mine = [t for t in tokens.list_tokens(conn, grid_user=identity.user)
                if t.revoked_at is None]
        subscribed = _listed(conn, identity.user)
    return _page("settings.html", tokens=mine, subscriptions=subscribed, now=_now(),
                 channels=list(CHANNELS), severities=[s.value for s in Severity],
                 created=None)


@ui.post("/settings/tokens")
def create_token() -> ResponseReturnValue:
    """The API's `POST /api-tokens`: the new secret is on this answer only."""
    identity = session.require_viewer()
    name = (request.form.get("name") or "").strip()[:255] or None
    days = request.form.get("expires_in_days") or ""
    if days and (not days.isdigit() or not 0 < int(days) <= 3650):
        raise ApiError(400, "Bad request", "expires in days must be a whole number from 1 to 3650")
    now = _now()
    with _conn() as conn:
        _token, clear = tokens.create_token(
            conn, grid_user=identity.user, now=now, name=name,
            expires_at=now + timedelta(days=int(days)) if days else None)
        mine = [t for t in tokens.list_tokens(conn, grid_user=identity.user)
                if t.revoked_at is None]
        subscribed = _listed(conn, identity.user)
    return _page("settings.html", 201, tokens=mine, subscriptions=subscribed, now=now,
                 channels=list(CHANNELS), severities=[s.value for s in Severity], created=clear)


@ui.post("/settings/tokens/<id:token_id>/revoke")
def revoke_token(token_id: int) -> ResponseReturnValue:
    identity = session.require_viewer()
    with _conn() as conn:
        if not tokens.revoke_token(conn, token_id, now=_now(), grid_user=identity.user):
            raise ApiError(404, "Not found", f"No live token {token_id} of yours")
    return _back(url_for("ui.settings_page"), f"Token {token_id} revoked")


@ui.post("/settings/subscriptions")
def subscribe() -> ResponseReturnValue:
    identity = session.require_viewer()
    kind = request.form.get("type", "")
    target = (request.form.get("identity") or "").strip()
    severity = request.form.get("severity", "")
    if kind not in CHANNELS or not target or severity not in {s.value for s in Severity}:
        raise ApiError(400, "Bad request", "choose a channel, an identity and a severity")
    if kind == "apprise" and (problem := url_problem(target)) is not None:
        raise ApiError(400, "Bad request", f"Invalid Apprise URL: {problem}")
    shown = shown_identity(CHANNELS[kind], target)
    with _conn() as conn:
        subscriptions.subscribe(conn, grid_user=identity.user, type_=CHANNELS[kind],
                                identity=target, severity=severity, now=_now(),
                                shown_identity=shown)
    return _back(url_for("ui.settings_page"), f"Subscribed {shown} ({kind})")


@ui.post("/settings/subscriptions/remove")
def unsubscribe() -> ResponseReturnValue:
    """By the subscription's id: the page never sends an identity back (it may hold a secret)."""
    identity = session.require_viewer()
    wanted = request.form.get("id", "")
    if not wanted.isdigit():
        raise ApiError(400, "Bad request", "which subscription? (id missing)")
    with _conn() as conn:
        removed = subscriptions.unsubscribe_id(conn, grid_user=identity.user,
                                               subscription_id=int(wanted))
    if removed is None:
        raise ApiError(404, "Not found", f"No subscription {wanted} of yours")
    return _back(url_for("ui.settings_page"),
                 f"Unsubscribed {shown_identity(removed.type, removed.identity)}")
