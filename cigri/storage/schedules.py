"""Campaign schedules in the database (`campaign_schedules`): add, list, the owner check, the
campaigns a schedule created, pause/resume, remove, and for the automations daemon the due
schedules (locked, skipping those another instance holds) and the record of a run, a skip or a
failure, with the next run, in the run's transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from cigri.domain.schedules import ScheduleSpec, parse_schedule
from cigri.storage.automations import check_row_owner, delete_row, get_row
from cigri.storage.heartbeats import notify_daemons
from cigri.storage.tables import campaign_schedules, campaigns

# How far back `list_schedule_campaigns` looks: the owner's newest campaigns, whatever made them.


@dataclass(frozen=True, kw_only=True)
class Schedule:
    id: int
    owner: str
    name: str
    spec: ScheduleSpec
    source: dict[str, Any]
    enabled: bool
    next_run_at: datetime | None
    last_campaign_id: int | None
    runs: int
    skipped: int
    last_error: str | None


def _schedule(row: Any) -> Schedule:
    source = json.loads(row.definition)
    return Schedule(id=row.id, owner=row.owner, name=row.name, spec=parse_schedule(source),
                    source=source, enabled=bool(row.enabled), next_run_at=row.next_run_at,
                    last_campaign_id=row.last_campaign_id, runs=row.runs, skipped=row.skipped,
                    last_error=row.last_error)


def add_schedule(conn: Connection, *, owner: str, source: dict[str, Any], now: datetime) -> int:
    spec = parse_schedule(source)
    name = str(spec.jdl.get("name") or "schedule")[:255]
    notify_daemons(conn, "automations")  # an idle automations daemon watches it from now
    return int(conn.execute(insert(campaign_schedules).values(
        owner=owner, name=name, definition=json.dumps(source), enabled=True,
        next_run_at=spec.first_run(now), created_at=now).returning(campaign_schedules.c.id)
    ).scalar_one())


def get_schedule(conn: Connection, schedule_id: int) -> Schedule:
    return _schedule(get_row(conn, campaign_schedules, schedule_id, "Schedule"))


def get_own_schedule(conn: Connection, schedule_id: int, *, user: str,
                     is_admin: bool) -> Schedule:
    """The schedule, if this user may see and change it (its owner, or an admin); `NotFound` or
    `Forbidden` otherwise. The API's and the dashboard's one check."""
    schedule = get_schedule(conn, schedule_id)
    check_row_owner(schedule.owner, user=user, is_admin=is_admin, what="Schedule",
                    row_id=schedule_id)
    return schedule


@dataclass(frozen=True, kw_only=True)
class ScheduledCampaign:
    id: int
    name: str | None
    state: str
    submission_time: datetime | None


def list_schedule_campaigns(conn: Connection, schedule: Schedule, *,
                            limit: int) -> list[ScheduledCampaign]:
    """The newest `limit` campaigns this schedule created, newest first (`campaigns.schedule_id`,
    set when the automations daemon submits one, `record_run`)."""
    rows = conn.execute(
        select(campaigns.c.id, campaigns.c.name, campaigns.c.state, campaigns.c.submission_time)
        .where(campaigns.c.schedule_id == schedule.id)
        .order_by(campaigns.c.id.desc()).limit(limit))
    return [ScheduledCampaign(id=r.id, name=r.name, state=r.state,
                              submission_time=r.submission_time) for r in rows]


def list_schedules(conn: Connection, *, owner: str | None) -> list[Schedule]:
    query = select(campaign_schedules).order_by(campaign_schedules.c.id)
    if owner is not None:
        query = query.where(campaign_schedules.c.owner == owner)
    return [_schedule(row) for row in conn.execute(query)]


def set_schedule_enabled(conn: Connection, schedule_id: int, *, enabled: bool,
                         now: datetime) -> None:
    """Pause, or resume (the next run is the next period from now: paused periods are not
    caught up)."""
    schedule = get_schedule(conn, schedule_id)
    values: dict[str, Any] = {"enabled": enabled}
    if enabled and not schedule.enabled:
        values["next_run_at"] = (schedule.spec.next_run(schedule.next_run_at or now, now)
                                 if schedule.spec.recurring else schedule.spec.first_run(now))
    conn.execute(update(campaign_schedules).where(campaign_schedules.c.id == schedule_id)
                 .values(**values))
    if enabled:
        notify_daemons(conn, "automations")


def remove_schedule(conn: Connection, schedule_id: int) -> None:
    """Remove a schedule; the campaigns it created stay, no longer linked to it."""
    delete_row(conn, campaign_schedules, schedule_id, "Schedule")
    conn.execute(update(campaigns).where(campaigns.c.schedule_id == schedule_id)
                 .values(schedule_id=None))


def due_schedule_ids(conn: Connection, *, now: datetime, limit: int = 100) -> list[int]:
    return list(conn.execute(select(campaign_schedules.c.id).where(
        campaign_schedules.c.enabled.is_(True), campaign_schedules.c.next_run_at <= now)
        .order_by(campaign_schedules.c.next_run_at).limit(limit)).scalars())


def lock_due_schedule(conn: Connection, schedule_id: int, *, now: datetime) -> Schedule | None:
    """The schedule, locked for the caller's transaction, if it is still due."""
    query = select(campaign_schedules).where(
        campaign_schedules.c.id == schedule_id, campaign_schedules.c.enabled.is_(True),
        campaign_schedules.c.next_run_at <= now)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = conn.execute(query).one_or_none()
    return None if row is None else _schedule(row)


def campaign_running(conn: Connection, campaign_id: int | None) -> bool:
    """Whether a schedule's previous campaign still runs (in treatment or paused)."""
    if campaign_id is None:
        return False
    state = conn.execute(select(campaigns.c.state).where(campaigns.c.id == campaign_id)
                         ).scalar_one_or_none()
    return state in ("in_treatment", "paused")


def record_run(conn: Connection, schedule: Schedule, *, next_run_at: datetime | None,
               campaign_id: int | None = None, skipped: bool = False,
               error: str | None = None) -> None:
    values: dict[str, Any] = {"next_run_at": next_run_at, "last_error": error}
    if next_run_at is None:
        values["enabled"] = False
    if campaign_id is not None:
        values.update(last_campaign_id=campaign_id, runs=schedule.runs + 1)
        conn.execute(update(campaigns).where(campaigns.c.id == campaign_id)
                     .values(schedule_id=schedule.id))
    if skipped:
        values["skipped"] = schedule.skipped + 1
    conn.execute(update(campaign_schedules).where(campaign_schedules.c.id == schedule.id)
                 .values(**values))
