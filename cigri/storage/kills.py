"""What nikita reads and writes: cancellation requests, jobs to kill, overdue and long-waiting
jobs, and the marks it leaves once a kill is decided or done.

A kill is recorded in two steps so that a crash between them loses nothing: `mark_jobs_killed`
moves the jobs to `event` and opens one class-`job` `USER_FRAG` event per job (a pending kill)
in the transaction that decides it; the OAR delete happens afterwards, outside any transaction;
the pending event is closed once OAR confirmed. The updater never polls `event` jobs, so a
cancelled job is never resubmitted, and an open job event keeps the job active until it is dead.
Does not own the API side of cancellation (`cigri.storage.actions`) nor the queue
(`cigri.storage.queue`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, select, update

from cigri.domain.event_codes import EventCode
from cigri.domain.events import USER_FRAG, NewEvent
from cigri.domain.kills import ON_CLUSTER_STATES, KillTarget
from cigri.domain.states import CampaignState, EventClass, EventState, JobState
from cigri.storage.events import record_events
from cigri.storage.tables import (
    campaign_properties,
    campaigns,
    events,
    jobs,
    submissions,
    users_mapping,
)


def _targets_query() -> Any:
    walltime = (select(campaign_properties.c.value)
                .where(campaign_properties.c.campaign_id == jobs.c.campaign_id,
                       campaign_properties.c.cluster_id == jobs.c.cluster_id,
                       campaign_properties.c.name == "walltime")
                .limit(1).scalar_subquery())
    login = func.coalesce(users_mapping.c.cluster_login, campaigns.c.grid_user)
    return (select(jobs.c.id, jobs.c.campaign_id, jobs.c.cluster_id, jobs.c.state,
                   jobs.c.remote_id, jobs.c.tag, jobs.c.param_id, jobs.c.start_time,
                   jobs.c.submission_time, login.label("login"), walltime.label("walltime"),
                   submissions.c.remote_array_id.label("array_id"),
                   submissions.c.nb_jobs.label("batch_size"))
            .join(campaigns, campaigns.c.id == jobs.c.campaign_id)
            .outerjoin(submissions, submissions.c.id == jobs.c.submission_id)
            .outerjoin(users_mapping, and_(users_mapping.c.grid_login == campaigns.c.grid_user,
                                           users_mapping.c.cluster_id == jobs.c.cluster_id)))


def _target(row: Any) -> KillTarget:
    return KillTarget(job_id=int(row.id), campaign_id=int(row.campaign_id),
                      cluster_id=row.cluster_id, state=JobState(row.state),
                      remote_id=row.remote_id, login=str(row.login), tag=row.tag,
                      param_id=row.param_id, start_time=row.start_time,
                      submission_time=row.submission_time, walltime=row.walltime,
                      array_id=row.array_id, batch_size=row.batch_size)


def list_kill_targets(conn: Connection, *, campaign_id: int | None = None,
                      job_ids: Sequence[int] | None = None,
                      states: Sequence[JobState] | None = None,
                      limit: int = 1000) -> list[KillTarget]:
    """Jobs of a campaign (or these jobs) in the given states (default: not final)."""
    wanted = states if states is not None else [s for s in JobState if not s.is_final]
    query = _targets_query().where(jobs.c.state.in_([s.value for s in wanted]))
    if campaign_id is not None:
        query = query.where(jobs.c.campaign_id == campaign_id)
    if job_ids is not None:
        query = query.where(jobs.c.id.in_(list(job_ids)))
    return [_target(row) for row in conn.execute(query.order_by(jobs.c.id).limit(limit))]


def _without_event(code: str) -> Any:
    return ~exists().where(events.c.job_id == jobs.c.id, events.c.code == code)


def list_long_waiting_jobs(conn: Connection, *, submitted_before: datetime,
                           limit: int = 1000) -> list[KillTarget]:
    """`remote_waiting` jobs submitted before the threshold and not yet fragged for it."""
    query = _targets_query().where(
        jobs.c.state == JobState.REMOTE_WAITING.value, jobs.c.submission_time < submitted_before,
        _without_event(EventCode.REMOTE_WAITING_FRAG))
    return [_target(row) for row in conn.execute(query.order_by(jobs.c.id).limit(limit))]


def list_running_unkilled_jobs(conn: Connection, *, started_before: datetime,
                               limit: int = 1000) -> list[KillTarget]:
    """Running jobs started before the threshold that nikita has not yet killed for walltime
    (the caller decides, per job, whether its walltime is really exceeded)."""
    query = _targets_query().where(
        jobs.c.state == JobState.RUNNING.value, jobs.c.start_time < started_before,
        _without_event(EventCode.CIGRI_WALLTIME))
    return [_target(row) for row in conn.execute(query.order_by(jobs.c.id).limit(limit))]


def delete_unlaunched_jobs(conn: Connection, job_ids: Sequence[int]) -> int:
    """Delete `to_launch` jobs (never sent to OAR); a job the runner claimed meanwhile is kept."""
    if not job_ids:
        return 0
    return int(conn.execute(delete(jobs).where(
        jobs.c.id.in_(list(job_ids)), jobs.c.state == JobState.TO_LAUNCH.value)).rowcount)


def mark_jobs_killed(conn: Connection, targets: Sequence[KillTarget], *, code: str,
                     now: datetime) -> list[int]:
    """Move on-cluster jobs to `event` (guarded by the state they were read in) and open one
    pending-kill `USER_FRAG` job event each; return the ids really marked."""
    marked: list[int] = []
    for state in {t.state for t in targets}:
        ids = [t.job_id for t in targets if t.state is state]
        rows = conn.execute(update(jobs).where(jobs.c.id.in_(ids), jobs.c.state == state.value)
                            .values(state=JobState.EVENT.value, updated_at=now)
                            .returning(jobs.c.id))
        marked += [int(row.id) for row in rows]
    by_id = {t.job_id: t for t in targets}
    record_events(conn, [NewEvent(
        class_=EventClass.JOB, code=USER_FRAG, job_id=job_id,
        campaign_id=by_id[job_id].campaign_id, cluster_id=by_id[job_id].cluster_id,
        checked=True, message=f"Nikita requested to kill the job because of a {code} event")
        for job_id in marked], now=now)
    return marked


def list_pending_kills(conn: Connection, *, limit: int = 1000) -> list[tuple[int, KillTarget]]:
    """(event id, job) of every open class-`job` USER_FRAG: a job whose remote kill is due."""
    query = (_targets_query().add_columns(events.c.id.label("event_id"))
             .join(events, events.c.job_id == jobs.c.id)
             .where(events.c.class_ == EventClass.JOB.value, events.c.code == USER_FRAG,
                    events.c.state == EventState.OPEN.value)
             .order_by(events.c.id).limit(limit))
    return [(int(row.event_id), _target(row)) for row in conn.execute(query)]


def count_unsettled_jobs(conn: Connection, campaign_id: int) -> int:
    """Jobs of a cancelled campaign still alive (not final) or with a kill pending."""
    alive = conn.execute(select(func.count()).select_from(jobs).where(
        jobs.c.campaign_id == campaign_id,
        jobs.c.state.in_([s.value for s in JobState if not s.is_final]))).scalar_one()
    pending = conn.execute(select(func.count()).select_from(events).where(
        events.c.campaign_id == campaign_id, events.c.class_ == EventClass.JOB.value,
        events.c.code == USER_FRAG, events.c.state == EventState.OPEN.value)).scalar_one()
    return int(alive) + int(pending)


ON_CLUSTER: tuple[JobState, ...] = tuple(ON_CLUSTER_STATES)


def mark_jobs_event(conn: Connection, job_ids: Sequence[int], *, expected: JobState,
                    now: datetime) -> list[int]:
    """Move jobs still in `expected` to `event` (a cancelled job stops being followed)."""
    if not job_ids:
        return []
    rows = conn.execute(update(jobs).where(jobs.c.id.in_(list(job_ids)),
                                           jobs.c.state == expected.value)
                        .values(state=JobState.EVENT.value, updated_at=now).returning(jobs.c.id))
    return [int(row.id) for row in rows]


def list_cancelled_campaigns(conn: Connection, campaign_ids: Sequence[int]) -> frozenset[int]:
    """Which of these campaigns are cancelled (all their jobs die: arrays go whole)."""
    if not campaign_ids:
        return frozenset()
    rows = conn.execute(select(campaigns.c.id).where(
        campaigns.c.id.in_(list(campaign_ids)),
        campaigns.c.state == CampaignState.CANCELLED.value))
    return frozenset(int(row.id) for row in rows)
