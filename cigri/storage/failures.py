"""What the updater writes for a failed job: its job event, and the failure plan applied.

The decisions are `cigri.domain.failures`'s (`analyze_failure`, `plan_failure`); this module reads
the retry budget they need and applies a `FailurePlan` to the rows (affinity, resubmission, events,
campaign blacklist), inside the caller's transaction. Does not read anything from OAR (the updater
does, before its transaction) nor count metrics.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from cigri.domain import failures
from cigri.domain.event_codes import EventCode
from cigri.domain.jobs import Job
from cigri.domain.states import EventClass, EventState
from cigri.storage import events as event_store
from cigri.storage import jobs as job_store
from cigri.storage import queue
from cigri.storage.incidents import open_campaign_blacklist


def record_job_event(conn: Connection, job: Job, code: EventCode, message: str, *,
                     now: datetime, state: EventState = EventState.OPEN) -> int:
    """A job event (already checked: the updater wrote it knowingly); returns its id."""
    return event_store.record_event(conn, class_=EventClass.JOB, code=code, job_id=job.id,
                                    campaign_id=job.campaign_id, cluster_id=job.cluster_id,
                                    message=message, state=state, now=now, checked=True)


def resubmission_budget(conn: Connection, job: Job, outcome: failures.FailureOutcome, *,
                        default: int) -> tuple[int | None, int | None]:
    """(resubmissions used, the campaign's maximum) when this failure counts against the budget,
    else (None, None)."""
    if not (outcome.resubmit and outcome.counts_against_budget and job.param_id is not None):
        return None, None
    used = job_store.count_budget_used(conn, param_id=job.param_id)
    return used, job_store.max_resubmissions(conn, campaign_id=job.campaign_id, default=default)


def apply_failure_plan(conn: Connection, job: Job, plan: failures.FailurePlan, *,
                       now: datetime) -> bool:
    """Write the failure plan of a job now in `event`; True if it was resubmitted."""
    if job.param_id is not None and job.cluster_id is not None and plan.affinity_penalty > 0:
        queue.decrease_affinity(conn, [(job.param_id, job.cluster_id)], by=plan.affinity_penalty)
    if plan.resubmit:
        for notice in plan.notices:
            event_store.record_event(
                conn, class_=EventClass.NOTIFY, code=notice.code, job_id=job.id,
                campaign_id=job.campaign_id, cluster_id=job.cluster_id,
                state=EventState.CLOSED, now=now, message=notice.message)
        done = job_store.resubmit(conn, job, priority=plan.priority)
        record_job_event(conn, job, plan.event_code,
                         plan.message if done else plan.not_resubmitted_message, now=now,
                         state=EventState.CLOSED)
        return bool(done)
    event_id = record_job_event(conn, job, plan.event_code, plan.message, now=now)
    if plan.blacklists_campaign:
        open_campaign_blacklist(conn, failure_id=event_id, now=now)
    return False
