"""The notification outbox (`notification_messages`) and the reads the notifier needs.

Owns the outbox rows: insert (idempotent on `dedup_key`), claim due messages with a lease, mark
them sent, retry or failed. Also reads the events still to notify (with campaign owner and cluster
name) and the subscriptions of `user_notifications`; it does not write those tables (events are
marked notified through `cigri.storage.events.mark_notified`, subscriptions belong to the API).

Delivery is at-least-once: a message is claimed (its `next_attempt_at` pushed one lease ahead and
its attempt counted) in one transaction, sent outside any transaction, and marked sent in the next.
A notifier killed between the send and the mark sends that one message again after the lease.

Routes: the messages that share a way out (one SMTP relay for every mail, one XMPP server, one URL
per webhook or Apprise service) are a route (`Route`). A route that answers again ends the
back-off of every message waiting on it (`reset_backoff`), and a route whose messages all wait is
probed once per pass with one of them (`list_held_routes`, `claim_probe`, `release_probe`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, func, not_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cigri.domain.event_codes import EventCode
from cigri.domain.notifications import (
    AGGREGATED_CODES,
    NotifiedEvent,
    OutgoingMessage,
    Subscription,
    parse_severity,
)
from cigri.domain.states import EventClass, EventState, NotificationType, Severity
from cigri.storage.tables import campaigns, clusters, events, notification_messages, user_notifications

PENDING = "pending"
SENT = "sent"
FAILED = "failed"

# (type, identity): the identity is the URL for a webhook or an Apprise service, "" for the
# channels with one server
Route = tuple[NotificationType, str]

_ROUTED_BY_URL = frozenset({NotificationType.WEBHOOK, NotificationType.APPRISE})


def route_of(message: OutgoingMessage) -> Route:
    """The way out of a message: its webhook or Apprise URL, else its channel's one server."""
    return (message.type, message.identity if message.type in _ROUTED_BY_URL else "")


def _on_route(route: Route) -> ColumnElement[bool]:
    kind, identity = route
    condition = notification_messages.c.type == kind.value
    if kind in _ROUTED_BY_URL:
        condition = and_(condition, notification_messages.c.identity == identity)
    return condition


def enqueue_messages(conn: Connection, messages: Sequence[OutgoingMessage], *,
                     now: datetime) -> int:
    """Store messages as pending; a `dedup_key` already stored is skipped. Returns how many were
    new."""
    if not messages:
        return 0
    rows = [{
        "dedup_key": m.dedup_key, "grid_user": m.grid_user, "type": m.type.value,
        "identity": m.identity, "format": m.format, "severity": m.severity.value,
        "subject": m.subject, "body": m.body, "state": PENDING, "attempts": 0,
        "next_attempt_at": now, "created_at": now,
    } for m in messages]
    if conn.dialect.name == "postgresql":
        statement: Any = pg_insert(notification_messages).on_conflict_do_nothing(
            index_elements=["dedup_key"])
    else:
        statement = sqlite_insert(notification_messages).on_conflict_do_nothing(
            index_elements=["dedup_key"])
    # RETURNING counts the rows really inserted (executemany's rowcount is -1 on psycopg).
    return len(conn.execute(statement.returning(notification_messages.c.id), rows).all())


def _message_from_row(row: Any) -> OutgoingMessage:
    return OutgoingMessage(
        id=row.id, dedup_key=row.dedup_key, grid_user=row.grid_user,
        type=NotificationType(row.type), identity=row.identity, format=row.format,
        severity=parse_severity(row.severity), subject=row.subject, body=row.body,
        attempts=row.attempts)


def claim_due_messages(conn: Connection, *, now: datetime, lease: timedelta,
                       limit: int, types: Iterable[NotificationType] | None = None,
                       skip: Iterable[Route] = (),
                       ) -> list[OutgoingMessage]:
    """Claim up to `limit` pending messages that are due, except those on a `skip` route (down
    this pass): push their next attempt one lease ahead (so a concurrent notifier skips them, and
    a crashed one's claim expires) and count the attempt."""
    due = and_(notification_messages.c.state == PENDING,
               or_(notification_messages.c.next_attempt_at.is_(None),
                   notification_messages.c.next_attempt_at <= now))
    candidates = select(notification_messages.c.id).where(due)
    if types is not None:
        candidates = candidates.where(
            notification_messages.c.type.in_([t.value for t in types]))
    for route in skip:
        candidates = candidates.where(not_(_on_route(route)))
    candidates = candidates.order_by(notification_messages.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = [int(row.id) for row in conn.execute(candidates)]
    if not ids:
        return []
    rows = conn.execute(
        update(notification_messages).where(notification_messages.c.id.in_(ids), due)
        .values(next_attempt_at=now + lease, attempts=notification_messages.c.attempts + 1)
        .returning(*notification_messages.c)
    ).all()
    return sorted((_message_from_row(row) for row in rows), key=lambda m: m.id or 0)


def mark_sent(conn: Connection, message_id: int, *, now: datetime) -> None:
    conn.execute(update(notification_messages).where(notification_messages.c.id == message_id)
                 .values(state=SENT, sent_at=now, last_error=None))


def mark_retry(conn: Connection, message_id: int, *, next_attempt_at: datetime,
               error: str) -> None:
    conn.execute(update(notification_messages)
                 .where(notification_messages.c.id == message_id,
                        notification_messages.c.state == PENDING)
                 .values(next_attempt_at=next_attempt_at, last_error=error[:2000]))


def unclaim(conn: Connection, message_id: int, *, now: datetime) -> None:
    """Undo a claim that was not tried: due now, its attempt not counted."""
    conn.execute(update(notification_messages)
                 .where(notification_messages.c.id == message_id,
                        notification_messages.c.state == PENDING)
                 .values(next_attempt_at=now, attempts=notification_messages.c.attempts - 1))


def reset_backoff(conn: Connection, route: Route, *, now: datetime) -> int:
    """The route answered: every pending message on it waiting out a back-off is due now.
    Returns how many."""
    return int(conn.execute(update(notification_messages).where(
        _on_route(route), notification_messages.c.state == PENDING,
        notification_messages.c.last_error.is_not(None),
        notification_messages.c.next_attempt_at > now).values(next_attempt_at=now)).rowcount)


def list_held_routes(conn: Connection, *, now: datetime,
                     types: Iterable[NotificationType]) -> list[Route]:
    """Routes with pending messages waiting out a back-off after a failure."""
    rows = conn.execute(
        select(notification_messages.c.type, notification_messages.c.identity).where(
            notification_messages.c.state == PENDING,
            notification_messages.c.last_error.is_not(None),
            notification_messages.c.next_attempt_at > now,
            notification_messages.c.type.in_([t.value for t in types])).distinct())
    routes = {route_of(OutgoingMessage(
        dedup_key="", grid_user="", type=NotificationType(row.type), identity=row.identity,
        format=None, severity=Severity.LOW, subject="", body="")) for row in rows}
    return sorted(routes, key=lambda route: (route[0].value, route[1]))


def claim_probe(conn: Connection, route: Route, *, now: datetime, lease: timedelta
                ) -> tuple[OutgoingMessage, datetime] | None:
    """Claim the pending message of a held route that is due first, to try the route with it,
    without counting an attempt (a probe failing every pass while the route is down must not
    use up the message's attempts). Returns it with its back-off time (to restore on failure)."""
    query = (select(notification_messages.c.id, notification_messages.c.next_attempt_at)
             .where(_on_route(route), notification_messages.c.state == PENDING,
                    notification_messages.c.last_error.is_not(None),
                    notification_messages.c.next_attempt_at > now)
             .order_by(notification_messages.c.next_attempt_at, notification_messages.c.id)
             .limit(1))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    found = conn.execute(query).first()
    if found is None:
        return None
    row = conn.execute(update(notification_messages)
                       .where(notification_messages.c.id == found.id)
                       .values(next_attempt_at=now + lease)
                       .returning(*notification_messages.c)).one()
    return _message_from_row(row), found.next_attempt_at


def release_probe(conn: Connection, message_id: int, *, next_attempt_at: datetime,
                  error: str) -> None:
    """A probe failed: the message keeps the back-off it had."""
    mark_retry(conn, message_id, next_attempt_at=next_attempt_at, error=error)


def mark_failed(conn: Connection, message_id: int, *, error: str) -> None:
    conn.execute(update(notification_messages).where(notification_messages.c.id == message_id)
                 .values(state=FAILED, last_error=error[:2000]))


def count_recent_messages(conn: Connection, *, since: datetime) -> dict[str, int]:
    """Messages created since `since`, per `type:identity` (the rate cap's count)."""
    rows = conn.execute(
        select(notification_messages.c.type, notification_messages.c.identity, func.count())
        .where(notification_messages.c.created_at >= since)
        .group_by(notification_messages.c.type, notification_messages.c.identity))
    return {f"{row[0]}:{row[1]}": int(row[2]) for row in rows}


def list_messages(conn: Connection, *, state: str | None = None) -> list[dict[str, Any]]:
    """Outbox rows, oldest first (tests, `cigri status`)."""
    query = select(notification_messages).order_by(notification_messages.c.id)
    if state is not None:
        query = query.where(notification_messages.c.state == state)
    return [dict(row._mapping) for row in conn.execute(query)]


def purge_sent_messages(conn: Connection, *, before: datetime) -> int:
    """Delete sent and failed messages created before `before` (maintenance)."""
    return int(conn.execute(delete(notification_messages).where(
        notification_messages.c.state.in_([SENT, FAILED]),
        notification_messages.c.created_at < before)).rowcount)


def _selectable_events() -> Any:
    """v3 judas selection: open events, and `notify`/`log` events, not yet notified."""
    return and_(
        events.c.notified.is_(False),
        or_(events.c.state == EventState.OPEN.value,
            events.c.class_.in_([EventClass.NOTIFY.value, EventClass.LOG.value])),
    )


def list_events_to_notify(conn: Connection, *, limit: int = 1000) -> list[NotifiedEvent]:
    """Unnotified events the notifier must deal with, oldest first, with owner and cluster name.
    Internal codes are included (so they get marked notified); the domain drops them."""
    query = (
        select(events, campaigns.c.grid_user.label("owner"),
               campaigns.c.name.label("campaign_name"), clusters.c.name.label("cluster_name"))
        .select_from(events.outerjoin(campaigns, campaigns.c.id == events.c.campaign_id)
                     .outerjoin(clusters, clusters.c.id == events.c.cluster_id))
        .where(_selectable_events()).order_by(events.c.id).limit(limit)
    )
    return [NotifiedEvent(
        id=row.id, class_=EventClass(row.class_), code=row.code, state=EventState(row.state),
        campaign_id=row.campaign_id, cluster_id=row.cluster_id, job_id=row.job_id,
        parent=row.parent, message=row.message, date_open=row.date_open,
        campaign_owner=row.owner, campaign_name=row.campaign_name, cluster_name=row.cluster_name,
    ) for row in conn.execute(query)]


def skip_unselectable_events(conn: Connection) -> int:
    """Mark notified the closed `cluster`/`campaign`/`job` events nobody will notify (v3 never
    selected them), so the unnotified set the notifier scans stays small (the engine records
    millions of closed `RESUBMIT` traces)."""
    return int(conn.execute(update(events).where(
        events.c.notified.is_(False), events.c.state == EventState.CLOSED.value,
        events.c.class_.in_([EventClass.CLUSTER.value, EventClass.CAMPAIGN.value,
                             EventClass.JOB.value])).values(notified=True)).rowcount)


def list_open_reported(conn: Connection) -> set[tuple[int, str]]:
    """(campaign id, code) of aggregated failures and campaign blacklists already notified and
    still open (see `cigri.domain.notifications.plan_notifications`)."""
    rows = conn.execute(
        select(events.c.campaign_id, events.c.code).where(
            events.c.notified.is_(True), events.c.state == EventState.OPEN.value,
            events.c.class_ == EventClass.JOB.value, events.c.campaign_id.is_not(None),
            events.c.code.in_(sorted(AGGREGATED_CODES))).distinct())
    found = {(int(row.campaign_id), str(row.code)) for row in rows}
    blacklists = conn.execute(
        select(events.c.campaign_id, events.c.cluster_id).where(
            events.c.notified.is_(True), events.c.state == EventState.OPEN.value,
            events.c.code == EventCode.BLACKLIST, events.c.campaign_id.is_not(None)).distinct())
    found |= {(int(row.campaign_id), f"{EventCode.BLACKLIST}@{row.cluster_id}") for row in blacklists}
    return found


def mark_events_notified(conn: Connection, event_ids: Sequence[int]) -> int:
    """Set `notified` on events still unnotified; returns how many changed (0 means another
    notifier already took them: its messages are the ones that count)."""
    if not event_ids:
        return 0
    return int(conn.execute(update(events).where(
        events.c.id.in_(list(event_ids)), events.c.notified.is_(False)).values(notified=True)
    ).rowcount)


def list_subscriptions_by_user(conn: Connection, users: Iterable[str]
                               ) -> dict[str, list[Subscription]]:
    """Subscriptions of the given grid users (and `%%admin%%` if listed), by user."""
    wanted = sorted(set(users))
    found: dict[str, list[Subscription]] = defaultdict(list)
    if not wanted:
        return found
    rows = conn.execute(select(user_notifications)
                        .where(user_notifications.c.grid_user.in_(wanted))
                        .order_by(user_notifications.c.id))
    for row in rows:
        try:
            kind = NotificationType(row.type)
        except ValueError:
            kind = NotificationType.XMPP if row.type == "jabber" else NotificationType.LOG
        found[row.grid_user].append(Subscription(
            id=row.id, grid_user=row.grid_user, type=kind, identity=row.identity,
            severity=parse_severity(row.severity) if row.severity else Severity.MEDIUM,
            format=row.format))
    return found

