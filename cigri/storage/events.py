"""Events: record, close, check and list them, and answer the blacklist questions.

Owns the `events` table. Every daemon records events through here; which codes mean what is the
caller's business (`cigri.domain.events`). A blacklist is an open `BLACKLIST` event: with no
campaign it covers the whole cluster, with a campaign it covers that campaign on that cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update

from cigri.domain.event_codes import EventCode
from cigri.domain.events import BLACKLIST, Event, NewEvent
from cigri.domain.states import EventClass, EventState
from cigri.storage.tables import events

log = logging.getLogger(__name__)


def event_from_row(row: Any) -> Event:
    return Event(
        id=row.id, class_=EventClass(row.class_), code=row.code, state=EventState(row.state),
        job_id=row.job_id, cluster_id=row.cluster_id, campaign_id=row.campaign_id,
        parent=row.parent, checked=bool(row.checked), notified=bool(row.notified),
        date_open=row.date_open, date_closed=row.date_closed, date_update=row.date_update,
        message=row.message,
    )


def _event_values(event: NewEvent, *, now: datetime, code: str | None = None) -> dict[str, Any]:
    """The `events` row of a new event (the one place events become columns); `code`: an
    admin's free-text code instead of the event's."""
    return {
        "class_": event.class_.value, "code": str(code if code is not None else event.code),
        "state": event.state.value, "job_id": event.job_id, "cluster_id": event.cluster_id,
        "campaign_id": event.campaign_id, "parent": event.parent, "checked": event.checked,
        "notified": event.notified, "date_open": now, "date_update": now,
        "date_closed": now if event.state is EventState.CLOSED else None,
        "message": event.message,
    }


def record_event(conn: Connection, *, class_: EventClass | str, code: EventCode,
                 campaign_id: int | None = None, cluster_id: int | None = None,
                 job_id: int | None = None, parent: int | None = None,
                 message: str | None = None, state: EventState | str = EventState.OPEN,
                 now: datetime, checked: bool = False, notified: bool = False) -> int:
    """Insert one event and return its id. A closed event gets `date_closed = now`."""
    return record_manual_event(conn, class_=class_, code=code, campaign_id=campaign_id,
                               cluster_id=cluster_id, job_id=job_id, parent=parent,
                               message=message, state=state, now=now, checked=checked,
                               notified=notified)


def record_manual_event(conn: Connection, *, class_: EventClass | str, code: str,
                        campaign_id: int | None = None, cluster_id: int | None = None,
                        job_id: int | None = None, parent: int | None = None,
                        message: str | None = None, state: EventState | str = EventState.OPEN,
                        now: datetime, checked: bool = False, notified: bool = False) -> int:
    """`record_event` for a code from outside the vocabulary: an admin's manual event, whose
    code is the admin's own (the only free-text code)."""
    event = NewEvent(class_=EventClass(class_), code=EventCode.MANUAL_EVENT,
                     campaign_id=campaign_id, cluster_id=cluster_id, job_id=job_id,
                     parent=parent, message=message, state=EventState(state), checked=checked,
                     notified=notified)
    event_id = conn.execute(insert(events).values(**_event_values(event, now=now, code=code))
                            .returning(events.c.id)).scalar_one()
    return int(event_id)


def record_events(conn: Connection, new: Sequence[NewEvent], *, now: datetime) -> None:
    """Insert many events at once (one executemany)."""
    if new:
        conn.execute(insert(events), [_event_values(event, now=now) for event in new])


def get_event(conn: Connection, event_id: int) -> Event:
    """The event with this id; raises LookupError if there is none."""
    row = conn.execute(select(events).where(events.c.id == event_id)).one_or_none()
    if row is None:
        raise LookupError(f"no event {event_id}")
    return event_from_row(row)


def close_event(conn: Connection, event_id: int, *, now: datetime,
                message: str | None = None) -> bool:
    """Close one open event; False if it was already closed (state-guarded)."""
    values: dict[str, Any] = {"state": EventState.CLOSED.value, "date_closed": now,
                              "date_update": now}
    if message is not None:
        values["message"] = message
    result = conn.execute(
        update(events).where(events.c.id == event_id, events.c.state == EventState.OPEN.value)
        .values(**values)
    )
    return result.rowcount == 1


def close_events(conn: Connection, event_ids: Iterable[int], *, now: datetime) -> int:
    """Close every listed event still open; return how many were closed."""
    ids = list(event_ids)
    if not ids:
        return 0
    result = conn.execute(
        update(events).where(events.c.id.in_(ids), events.c.state == EventState.OPEN.value)
        .values(state=EventState.CLOSED.value, date_closed=now, date_update=now)
    )
    return int(result.rowcount)


def close_job_events(conn: Connection, *, now: datetime, campaign_id: int | None = None,
                     job_id: int | None = None, except_ids: Sequence[int] = ()) -> int:
    """Close the open class-`job` events of a campaign or of one job (nikita on cancel)."""
    query = update(events).where(events.c.state == EventState.OPEN.value,
                                 events.c.class_ == EventClass.JOB.value)
    if campaign_id is not None:
        query = query.where(events.c.campaign_id == campaign_id)
    if job_id is not None:
        query = query.where(events.c.job_id == job_id)
    if except_ids:
        query = query.where(events.c.id.not_in(list(except_ids)))
    result = conn.execute(
        query.values(state=EventState.CLOSED.value, date_closed=now, date_update=now))
    return int(result.rowcount)


def mark_checked(conn: Connection, event_ids: Iterable[int], *, now: datetime) -> None:
    """Mark events as acted upon (v3 `checked = yes`), refreshing `date_update`."""
    ids = list(event_ids)
    if ids:
        conn.execute(update(events).where(events.c.id.in_(ids))
                     .values(checked=True, date_update=now))


def mark_notified(conn: Connection, event_ids: Iterable[int]) -> None:
    ids = list(event_ids)
    if ids:
        conn.execute(update(events).where(events.c.id.in_(ids)).values(notified=True))


def list_events(conn: Connection, *, state: EventState | str | None = None,
                class_: EventClass | str | None = None, code: str | Sequence[str] | None = None,
                campaign_id: int | None = None, cluster_id: int | None = None,
                job_id: int | None = None, checked: bool | None = None,
                limit: int | None = None, newest_first: bool = False) -> list[Event]:
    """Events matching every given filter, oldest first unless `newest_first`."""
    query = select(events)
    if state is not None:
        query = query.where(events.c.state == EventState(state).value)
    if class_ is not None:
        query = query.where(events.c.class_ == EventClass(class_).value)
    if isinstance(code, str):
        query = query.where(events.c.code == code)
    elif code is not None:
        query = query.where(events.c.code.in_(list(code)))
    if campaign_id is not None:
        query = query.where(events.c.campaign_id == campaign_id)
    if cluster_id is not None:
        query = query.where(events.c.cluster_id == cluster_id)
    if job_id is not None:
        query = query.where(events.c.job_id == job_id)
    if checked is not None:
        query = query.where(events.c.checked == checked)
    query = query.order_by(events.c.id.desc() if newest_first else events.c.id)
    if limit is not None:
        query = query.limit(limit)
    return [event_from_row(row) for row in conn.execute(query)]


def list_open_events(conn: Connection, **filters: Any) -> list[Event]:
    """Open events matching the filters of `list_events`."""
    return list_events(conn, state=EventState.OPEN, **filters)


def find_open_event(conn: Connection, *, code: EventCode, class_: EventClass | str | None = None,
                    campaign_id: int | None = None, cluster_id: int | None = None,
                    job_id: int | None = None) -> Event | None:
    """The oldest open event with this code and scope, or None."""
    found = list_open_events(conn, code=code, class_=class_, campaign_id=campaign_id,
                             cluster_id=cluster_id, job_id=job_id, limit=1)
    return found[0] if found else None


def last_event_date(conn: Connection, *, code: str) -> datetime | None:
    """When the newest event with this code was opened (nikita's hourly timer)."""
    value = conn.execute(select(func.max(events.c.date_open)).where(events.c.code == code))
    return value.scalar_one_or_none()


def _open_blacklists() -> Any:
    return and_(events.c.code == BLACKLIST, events.c.state == EventState.OPEN.value)


# Every runner pass asks this of its cluster: built once with a bound parameter (see jobs.py).
_CLUSTER_BLACKLIST = (select(events.c.id)
                      .where(_open_blacklists(), events.c.cluster_id == bindparam("cluster_id"),
                             events.c.campaign_id.is_(None))
                      .limit(1))


def is_cluster_blacklisted(conn: Connection, cluster_id: int) -> bool:
    """True when an open whole-cluster BLACKLIST (no campaign) exists on the cluster."""
    return conn.execute(_CLUSTER_BLACKLIST, {"cluster_id": cluster_id}).first() is not None


def is_campaign_blacklisted(conn: Connection, *, campaign_id: int, cluster_id: int) -> bool:
    """True when the campaign may not submit on the cluster: a campaign×cluster BLACKLIST or a
    whole-cluster one."""
    found = conn.execute(
        select(events.c.id).where(
            _open_blacklists(), events.c.cluster_id == cluster_id,
            or_(events.c.campaign_id.is_(None), events.c.campaign_id == campaign_id),
        ).limit(1)
    ).first()
    return found is not None


def list_blacklisted_clusters(conn: Connection) -> set[int]:
    """Ids of clusters with an open whole-cluster BLACKLIST."""
    rows = conn.execute(
        select(events.c.cluster_id).where(_open_blacklists(), events.c.campaign_id.is_(None),
                                          events.c.cluster_id.is_not(None)).distinct()
    )
    return {int(row.cluster_id) for row in rows}


def list_blacklisted_couples(conn: Connection) -> set[tuple[int, int]]:
    """(campaign id, cluster id) of every open campaign×cluster BLACKLIST."""
    rows = conn.execute(
        select(events.c.campaign_id, events.c.cluster_id).where(
            _open_blacklists(), events.c.campaign_id.is_not(None),
            events.c.cluster_id.is_not(None)).distinct()
    )
    return {(int(row.campaign_id), int(row.cluster_id)) for row in rows}


def list_blacklisted_campaigns(conn: Connection) -> set[int]:
    """Campaigns blacklisted on at least one cluster (campaign×cluster BLACKLIST)."""
    return {campaign for campaign, _cluster in list_blacklisted_couples(conn)}
