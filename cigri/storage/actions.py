"""What a user (or an admin) does to campaigns, jobs and events through the API: cancel, pause,
resume, purge and rename a campaign, cancel one job, fix events (optionally resubmitting their
jobs), and the admin's manual events.

Owns these state changes and the events that record them (v3 API-side writes,
`cigri-v3-server.md` §3.8), with v3's bugs fixed: PUT never revives a cancelled or terminated
campaign, purge really purges (finished campaigns only), fixing a campaign's events leaves a pending
cancellation (`USER_FRAG`) alone, a job is resubmitted once however many events it has, and a job
cancel event carries its campaign. Each change locks the campaign row first (the fixed lock order:
campaign, then jobs). Killing on OAR is nikita's; creating campaigns is `campaigns`'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, func, select, update

from cigri.domain.colombo import FixPlan, plan_fix
from cigri.domain.errors import CampaignNotFound, Conflict, JobNotFound, NotFound
from cigri.domain.event_codes import EventCode
from cigri.domain.events import Event
from cigri.domain.notifications import NEW_CAMPAIGN
from cigri.domain.states import PRIORITY_RESUBMIT, CampaignState, EventClass, EventState, JobState
from cigri.storage.events import (
    close_events,
    event_from_row,
    get_event,
    record_event,
    record_manual_event,
)
from cigri.storage.heartbeats import notify_daemons
from cigri.storage.tables import bag_of_tasks, campaigns, clusters, events, jobs, jobs_to_launch

log = logging.getLogger(__name__)


def _lock_campaign(conn: Connection, campaign_id: int) -> CampaignState:
    row = conn.execute(select(campaigns.c.state).where(campaigns.c.id == campaign_id)
                       .with_for_update()).one_or_none()
    if row is None:
        raise CampaignNotFound(f"Campaign {campaign_id} not found")
    return CampaignState(row.state)


def record_new_campaign(conn: Connection, campaign_id: int, *, name: str | None, tasks: int,
                        now: datetime, plan: str | None = None) -> int:
    """The closed `notify` event NEW_CAMPAIGN the notifier turns into the new-campaign message;
    recorded in the submission's transaction, so a campaign and its announcement go together.
    `plan`: what a `nightly`/`semi-best-effort` campaign runs now and next, appended."""
    message = f"Campaign {campaign_id} ({name}) submitted with {tasks} tasks"
    return record_event(conn, class_=EventClass.NOTIFY, code=NEW_CAMPAIGN,
                        campaign_id=campaign_id, state=EventState.CLOSED, now=now,
                        message=f"{message}; {plan}" if plan else message)


def cancel_campaign(conn: Connection, campaign_id: int, *, now: datetime) -> None:
    """Empty the campaign's bag and queue, mark it cancelled, open a USER_FRAG for nikita."""
    state = _lock_campaign(conn, campaign_id)
    if state is CampaignState.CANCELLED:
        raise Conflict("Campaign already cancelled.")
    tasks = select(bag_of_tasks.c.id).where(bag_of_tasks.c.campaign_id == campaign_id)
    conn.execute(delete(jobs_to_launch).where(jobs_to_launch.c.task_id.in_(tasks)))
    conn.execute(delete(bag_of_tasks).where(bag_of_tasks.c.campaign_id == campaign_id))
    conn.execute(update(campaigns).where(campaigns.c.id == campaign_id)
                 .values(state=CampaignState.CANCELLED.value, completion_time=now))
    record_event(conn, class_=EventClass.CAMPAIGN, code=EventCode.USER_FRAG, campaign_id=campaign_id,
                 message=f"Campaign {campaign_id} cancelled by its user", now=now)
    notify_daemons(conn, "nikita")  # its jobs are killed now, not at nikita's next pass
    log.info("campaign %d cancelled", campaign_id,
             extra={"campaign_id": campaign_id, "action": "cancel"})


def pause_campaign(conn: Connection, campaign_id: int, *, now: datetime) -> None:
    state = _lock_campaign(conn, campaign_id)
    if state is not CampaignState.IN_TREATMENT:
        raise Conflict(f"Can't hold (pause) a {state.value} campaign")
    _set_state(conn, campaign_id, CampaignState.PAUSED, EventCode.PAUSED, now=now)


def resume_campaign(conn: Connection, campaign_id: int, *, now: datetime) -> None:
    state = _lock_campaign(conn, campaign_id)
    if state is not CampaignState.PAUSED:
        raise Conflict(f"Can't resume a {state.value} campaign")
    _set_state(conn, campaign_id, CampaignState.IN_TREATMENT, EventCode.RESUMED, now=now)
    notify_daemons(conn, "metascheduler")  # scheduled again now, not at its next pass


def _set_state(conn: Connection, campaign_id: int, target: CampaignState, code: EventCode, *,
               now: datetime) -> None:
    conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(state=target.value))
    record_event(conn, class_=EventClass.CAMPAIGN, code=code, campaign_id=campaign_id,
                 state=EventState.CLOSED, now=now)
    log.info("campaign %d %s", campaign_id, target.value,
             extra={"campaign_id": campaign_id, "action": code.lower()})


def purge_campaign(conn: Connection, campaign_id: int) -> None:
    """Delete a finished (terminated or cancelled) campaign and every row hanging off it."""
    state = _lock_campaign(conn, campaign_id)
    if not state.is_final:
        raise Conflict(f"Can't purge a {state.value} campaign")
    # Active jobs of a just-cancelled campaign may still be on OAR: nikita needs their rows.
    if conn.execute(select(exists().where(
            jobs.c.campaign_id == campaign_id,
            jobs.c.state.in_([JobState.SUBMITTED.value, JobState.RUNNING.value,
                              JobState.REMOTE_WAITING.value, JobState.LAUNCHING.value])))
            ).scalar_one():
        raise Conflict(f"Campaign {campaign_id} still has jobs on clusters; purge it later")
    conn.execute(delete(campaigns).where(campaigns.c.id == campaign_id))
    log.info("campaign %d purged", campaign_id,
             extra={"campaign_id": campaign_id, "action": "purge"})


def update_campaign(conn: Connection, campaign_id: int, *, name: str | None = None,
                    state: str | None = None, now: datetime) -> None:
    """PUT: rename, and/or pause (`paused`) or resume (`in_treatment`) with DELETE's rules."""
    if state is not None and state not in {CampaignState.PAUSED.value,
                                           CampaignState.IN_TREATMENT.value}:
        raise ValueError(f"state must be 'paused' or 'in_treatment', not {state!r}")
    current = _lock_campaign(conn, campaign_id)
    if name is not None:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(name=name))
    if state is not None and state != current.value:
        if state == CampaignState.PAUSED.value:
            pause_campaign(conn, campaign_id, now=now)
        else:
            resume_campaign(conn, campaign_id, now=now)


def cancel_job(conn: Connection, job_id: int, *, now: datetime) -> int:
    """Open a USER_FRAG job event for nikita; returns the event id."""
    row = conn.execute(select(jobs.c.campaign_id, jobs.c.cluster_id, jobs.c.state)
                       .where(jobs.c.id == job_id)).one_or_none()
    if row is None:
        raise JobNotFound(f"Job {job_id} not found")
    _lock_campaign(conn, row.campaign_id)
    if JobState(row.state).is_final:
        raise Conflict(f"Job {job_id} is already {row.state}")
    notify_daemons(conn, "nikita")  # killed now, not at nikita's next pass
    return record_event(conn, class_=EventClass.JOB, code=EventCode.USER_FRAG, job_id=job_id,
                        campaign_id=row.campaign_id, cluster_id=row.cluster_id,
                        message=f"Job {job_id} cancelled by its user", now=now)


def resubmit_jobs(conn: Connection, job_ids: Iterable[int]) -> int:
    """Put the tasks of these jobs back at the front of the bag, once each; returns how many.
    A parameter already waiting in the bag is not added again. Callers deciding *which* jobs to
    resubmit go through `cigri.domain.colombo.plan_fix` first (see `fix_event`)."""
    count = 0
    params = conn.execute(
        select(jobs.c.campaign_id, jobs.c.param_id).where(
            jobs.c.id.in_(sorted(set(job_ids))), jobs.c.param_id.is_not(None)).distinct()).all()
    for campaign_id, param_id in params:
        already = conn.execute(select(exists().where(bag_of_tasks.c.param_id == param_id))
                               ).scalar_one()
        if not already:
            conn.execute(bag_of_tasks.insert().values(campaign_id=campaign_id, param_id=param_id,
                                                      priority=PRIORITY_RESUBMIT))
            count += 1
    return count


def _busy_params(conn: Connection, job_params: Mapping[int, int | None]) -> set[int]:
    """Parameters of these failed jobs that must not be resubmitted: a task of theirs waits in
    the bag, or they have a job newer than the newest of the failed jobs (Colombo, the runner or
    an earlier fix already gave them another run)."""
    newest_failed: dict[int, int] = {}
    for job_id, param_id in job_params.items():
        if param_id is not None:
            newest_failed[param_id] = max(job_id, newest_failed.get(param_id, 0))
    if not newest_failed:
        return set()
    wanted = sorted(newest_failed)
    busy = set(conn.execute(select(bag_of_tasks.c.param_id).where(
        bag_of_tasks.c.param_id.in_(wanted)).distinct()).scalars())
    for param_id, newest in conn.execute(select(jobs.c.param_id, func.max(jobs.c.id)).where(
            jobs.c.param_id.in_(wanted)).group_by(jobs.c.param_id)).all():
        if newest > newest_failed[param_id]:
            busy.add(param_id)
    return busy


def _apply_fix(conn: Connection, found: Sequence[Event], *, resubmit: bool, campaign_wide: bool,
               now: datetime) -> FixPlan:
    """Close and resubmit what `plan_fix` says for these events."""
    job_params: dict[int, int | None] = {}
    job_ids = sorted({e.job_id for e in found if e.job_id is not None})
    if resubmit and job_ids:
        job_params = {row.id: row.param_id for row in conn.execute(
            select(jobs.c.id, jobs.c.param_id).where(jobs.c.id.in_(job_ids)))}
    plan = plan_fix(found, resubmit=resubmit, campaign_wide=campaign_wide,
                    job_params=job_params, busy_params=_busy_params(conn, job_params))
    close_events(conn, plan.close_event_ids, now=now)
    if plan.resubmit_job_ids:
        resubmit_jobs(conn, plan.resubmit_job_ids)
    return plan


def fix_event(conn: Connection, event_id: int, *, resubmit: bool, now: datetime) -> None:
    """Close one event; with `resubmit`, put its job's task back in the bag unless it already
    waits there or already has a newer job (`plan_fix`: a task is never resubmitted twice)."""
    row = conn.execute(select(events.c.campaign_id).where(events.c.id == event_id)).one_or_none()
    if row is None:
        raise NotFound(f"Event {event_id} not found")
    if row.campaign_id is not None:
        _lock_campaign(conn, row.campaign_id)
    event = get_event(conn, event_id)
    if not event.is_open:
        raise Conflict(f"Event {event_id} is already closed")
    _apply_fix(conn, [event], resubmit=resubmit, campaign_wide=False, now=now)


def fix_events(conn: Connection, found: Sequence[Event], *, resubmit: bool,
                now: datetime) -> FixPlan:
    """Close these open events of any campaigns (each campaign locked first); with `resubmit`,
    each failed task once (`plan_fix`). The updater's way to resume what a missing token
    stopped."""
    for campaign_id in sorted({e.campaign_id for e in found if e.campaign_id is not None}):
        _lock_campaign(conn, campaign_id)
    return _apply_fix(conn, found, resubmit=resubmit, campaign_wide=False, now=now)


def fix_campaign_events(conn: Connection, campaign_id: int, *, resubmit: bool,
                        now: datetime) -> int:
    """Close a campaign's open events but BLACKLIST (lifted by the updater once its cause is
    closed) and USER_FRAG (a cancellation under way); with `resubmit`, each failed task once
    (`plan_fix`). Returns how many events were closed."""
    _lock_campaign(conn, campaign_id)
    found = [event_from_row(r) for r in conn.execute(select(events).where(
        events.c.campaign_id == campaign_id, events.c.state == EventState.OPEN.value))]
    plan = _apply_fix(conn, found, resubmit=resubmit, campaign_wide=True, now=now)
    return len(plan.close_event_ids)


def create_admin_event(conn: Connection, *, class_: str, code: str, message: str | None,
                       cluster_id: int | None, job_id: int | None, now: datetime) -> int:
    """An admin's manual event: a cluster-wide one (e.g. CLUSTER_MANUALLY_DISABLED, which with a
    BLACKLIST child disables the cluster) or a job one (MANUAL_EVENT puts the job in `event`)."""
    campaign_id = None
    if job_id is not None:
        row = conn.execute(select(jobs.c.campaign_id, jobs.c.cluster_id)
                           .where(jobs.c.id == job_id)).one_or_none()
        if row is None:
            raise JobNotFound(f"Job {job_id} not found")
        campaign_id = row.campaign_id
        cluster_id = cluster_id if cluster_id is not None else row.cluster_id
        _lock_campaign(conn, campaign_id)
        conn.execute(update(jobs).where(jobs.c.id == job_id)
                     .values(state=JobState.EVENT.value, updated_at=now))
    if cluster_id is not None and conn.execute(
            select(clusters.c.id).where(clusters.c.id == cluster_id)).first() is None:
        raise NotFound(f"Cluster {cluster_id} not found")
    event_id = record_manual_event(conn, class_=class_, code=code, campaign_id=campaign_id,
                                   cluster_id=cluster_id, job_id=job_id, message=message, now=now)
    if code == EventCode.CLUSTER_MANUALLY_DISABLED and cluster_id is not None:
        record_event(conn, class_=EventClass.CLUSTER, code=EventCode.BLACKLIST, cluster_id=cluster_id,
                     parent=event_id, message=f"Cluster {cluster_id} disabled by an admin",
                     now=now)
    return event_id


def event_owner(conn: Connection, event_id: int) -> dict[str, Any]:
    """campaign owner of an event (None when global); raises NotFound."""
    row = conn.execute(select(events.c.id, campaigns.c.grid_user)
                       .outerjoin(campaigns, campaigns.c.id == events.c.campaign_id)
                       .where(events.c.id == event_id)).one_or_none()
    if row is None:
        raise NotFound(f"Event {event_id} not found")
    return {"grid_user": row.grid_user}
