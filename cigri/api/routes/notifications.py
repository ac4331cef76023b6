"""`/notifications` and `/notifications/<kind>` (mail, jabber/xmpp, webhook, apprise, log): list,
subscribe and unsubscribe the caller (an admin, with `admin=1`, the admins' channel).

An Apprise URL is checked at subscription (an unknown service or a malformed URL is a 400 with one
line saying why) and listed masked: it holds the service's tokens."""

from __future__ import annotations

from typing import Final

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from cigri.api.access import Identity, now, tx, who
from cigri.api.inputs import json_body
from cigri.api.shapes import ApiError, json_response, link, status
from cigri.domain.errors import NotFound
from cigri.domain.notifications import CHANNEL_KINDS
from cigri.domain.states import NotificationType, Severity
from cigri.notify.apprise_channel import same_service, shown_identity, url_problem
from cigri.notify.webhook import FORMATS
from cigri.storage import subscriptions

notifications = Blueprint("notifications", __name__)

_CHANNELS: Final = {**CHANNEL_KINDS, "xmpp": NotificationType.XMPP.value}  # xmpp: an alias


def _subscriber(identity: Identity) -> str:
    return subscriptions.ADMIN_CHANNEL if identity.is_admin and request.args.get(
        "admin") else identity.user


@notifications.get("/notifications")
def list_notifications() -> ResponseReturnValue:
    identity = who()
    with tx() as conn:
        found = subscriptions.list_subscriptions(conn, grid_user=_subscriber(identity))
    items = [{"id": s.id, "grid_user": s.grid_user, "type": s.type,
              "identity": shown_identity(s.type, s.identity), "severity": s.severity,
              "format": s.format} for s in found]
    return json_response({"items": items, "links": [link("self", "/notifications/")]})


def _checked(channel: str, identity: str, fmt: object) -> str | None:
    """The subscription's format, once its identity is known good for its channel."""
    if channel == NotificationType.APPRISE:
        problem = url_problem(identity)
        if problem is not None:
            raise ApiError(400, "Bad request", f"Invalid Apprise URL: {problem}")
        return None
    known = fmt is None or (isinstance(fmt, str) and fmt in {"", *FORMATS})
    if channel == NotificationType.WEBHOOK and not known:
        raise ApiError(400, "Bad request", (
            f"Webhook format {fmt} is gone: subscribe the service's Apprise URL instead "
            "(POST /notifications/apprise, e.g. slack://A/B/C or discord://ID/TOKEN)"))
    return fmt if isinstance(fmt, str) and fmt else None


def _channel(kind: str) -> str:
    if kind not in _CHANNELS:
        raise ApiError(404, "Not found", f"{request.method} {request.url} not found on this server")
    return _CHANNELS[kind]


@notifications.post("/notifications/<kind>")
def subscribe(kind: str) -> ResponseReturnValue:
    identity = who()
    channel = _channel(kind)
    body = json_body() if request.is_json else dict(request.form)
    if not isinstance(body, dict):
        raise ApiError(400, "Bad request", "expected a JSON object")
    target, severity = body.get("identity"), body.get("severity")
    if not isinstance(target, str) or not target.strip():
        raise ApiError(400, "Bad request", "identity is required")
    if not isinstance(severity, str) or severity not in {s.value for s in Severity}:
        raise ApiError(400, "Bad request", "Severity should be 'low', 'medium' or 'high'")
    target = target.strip()
    fmt = _checked(channel, target, body.get("format"))
    shown = shown_identity(channel, target)
    with tx() as conn:
        subscriptions.subscribe(conn, grid_user=_subscriber(identity), type_=channel,
                                identity=target, severity=severity, now=now(), format_=fmt,
                                shown_identity=shown)
    return status(201, "Created", "New subscription created")


def _unsubscribe_spelling(conn: Connection, grid_user: str, target: str) -> int:
    """Remove the Apprise subscriptions that name `target`'s service in another spelling (0010
    wrote `slack://A/B/C` for the `https://hooks.slack.com/...` address users know)."""
    removed = 0
    for found in subscriptions.list_subscriptions(conn, grid_user=grid_user):
        if found.type == NotificationType.APPRISE and same_service(found.identity, target):
            removed += subscriptions.unsubscribe(conn, grid_user=grid_user, type_=found.type,
                                                 identity=found.identity)
    return removed


@notifications.delete("/notifications/<kind>")
def unsubscribe(kind: str) -> ResponseReturnValue:
    identity = who()
    channel = _channel(kind)
    target = request.args.get("identity")
    if not target:
        raise ApiError(400, "Bad request", "identity is required")
    with tx() as conn:
        removed = subscriptions.unsubscribe(conn, grid_user=_subscriber(identity), type_=channel,
                                            identity=target)
        if removed == 0 and channel == NotificationType.APPRISE:
            removed = _unsubscribe_spelling(conn, _subscriber(identity), target)
    if removed == 0:
        shown = shown_identity(channel, target)
        raise NotFound(f"No {kind} subscription for {shown}")
    return status(202, "Deleted", "Unsubscription ok")
