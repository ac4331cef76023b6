"""The notification outbox (`notification_messages`) and the reads the notifier needs.

Owns the outbox rows: insert (idempotent on `dedup_key`), claim due messages with a lease, mark
them sent, retry or failed. Also reads the events still to notify (with campaign owner and cluster
name) and the subscriptions of `user_notifications`; it does not write those tables (events are
marked notified through `cigri.storage.events.mark_notified`, subscriptions belong to the API).

Delivery is at-least-once: a message is claimed (its `next_attempt_at` pushed one lease ahead and
its attempt counted) in one transaction, sent outside any transaction, and marked sent in the next.
A notifier killed between the send and the mark sends that one message again after the lease.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cigri.domain.notifications import (
    AGGREGATED_CODES,
    BLACKLIST,
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
                       ) -> list[OutgoingMessage]:
    """Claim up to `limit` pending messages that are due: push their next attempt one lease ahead
    (so a concurrent notifier skips them, and a crashed one's claim expires) and count the
    attempt."""
    due = and_(notification_messages.c.state == PENDING,
               or_(notification_messages.c.next_attempt_at.is_(None),
                   notification_messages.c.next_attempt_at <= now))
    candidates = select(notification_messages.c.id).where(due)
    if types is not None:
        candidates = candidates.where(
            notification_messages.c.type.in_([t.value for t in types]))
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
            events.c.code == BLACKLIST, events.c.campaign_id.is_not(None)).distinct())
    found |= {(int(row.campaign_id), f"{BLACKLIST}@{row.cluster_id}") for row in blacklists}
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

