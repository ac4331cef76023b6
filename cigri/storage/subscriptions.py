"""Notification subscriptions of users (`user_notifications`): list, subscribe, unsubscribe.

Owns the rows only; turning events into messages is the notifier's. The admin channel is stored
under the pseudo-user `%%admin%%`, as in CiGri v3.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from cigri.domain.errors import Conflict
from cigri.storage.tables import user_notifications as t

ADMIN_CHANNEL: Final = "%%admin%%"


@dataclass(frozen=True, kw_only=True)
class Subscription:
    id: int
    grid_user: str
    type: str
    identity: str
    severity: str
    format: str | None = None


def list_subscriptions(conn: Connection, *, grid_user: str) -> list[Subscription]:
    rows = conn.execute(select(t).where(t.c.grid_user == grid_user).order_by(t.c.id))
    return [Subscription(id=r.id, grid_user=r.grid_user, type=r.type, identity=r.identity,
                         severity=r.severity, format=r.format) for r in rows]


def subscribe(conn: Connection, *, grid_user: str, type_: str, identity: str, severity: str,
              now: datetime, format_: str | None = None, shown_identity: str | None = None) -> int:
    """Add a subscription; Conflict if the same (user, identity, type) exists (its message names
    `shown_identity`, the identity with its secrets masked, when given)."""
    try:
        with conn.begin_nested():
            return int(conn.execute(
                insert(t).values(grid_user=grid_user, type=type_, identity=identity,
                                 severity=severity, format=format_, created_at=now)
                .returning(t.c.id)).scalar_one())
    except IntegrityError as error:
        shown = shown_identity or identity
        raise Conflict(f"{shown} is already subscribed to {type_} notifications") from error


def unsubscribe_id(conn: Connection, *, grid_user: str, subscription_id: int) -> Subscription | None:
    """Remove the user's subscription `subscription_id`; the removed row, or None if the user has
    no such subscription (the dashboard names it by id: its identity may hold a secret)."""
    row = conn.execute(delete(t).where(t.c.grid_user == grid_user, t.c.id == subscription_id)
                       .returning(t)).one_or_none()
    if row is None:
        return None
    return Subscription(id=row.id, grid_user=row.grid_user, type=row.type, identity=row.identity,
                        severity=row.severity, format=row.format)


def unsubscribe(conn: Connection, *, grid_user: str, type_: str, identity: str) -> int:
    """Remove matching subscriptions; return how many were removed."""
    return conn.execute(delete(t).where(t.c.grid_user == grid_user, t.c.type == type_,
                                        t.c.identity == identity)).rowcount
