"""The schedules' step of the automations daemon (issue 13): submits each due schedule's campaign
(its JDL with the `{DATE}` macros of the run) and moves the schedule to its next run, both in one
transaction, so a crash neither loses nor doubles a run. A schedule that says `skip_if_running`
skips a period while its previous campaign is in treatment or paused; missed periods (the daemon
was down) are not caught up: one run, then the next period after now. A JDL that no longer
passes (a cluster removed) is recorded on the schedule (`last_error`) and a `log` event, and the
schedule moves on."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Engine

from cigri.config import Settings
from cigri.domain.errors import JDLError
from cigri.domain.event_codes import EventCode
from cigri.domain.jdl import JDLDefaults, parse_jdl
from cigri.domain.schedules import expand_macros
from cigri.domain.states import EventClass, EventState
from cigri.storage import schedules as store
from cigri.storage.actions import record_new_campaign
from cigri.storage.campaigns import create_campaign_from_spec
from cigri.storage.clusters import list_clusters
from cigri.storage.events import record_event

log = logging.getLogger(__name__)

SCHEDULE_FAILED = EventCode.SCHEDULE_FAILED


def run_due_schedules(engine: Engine, settings: Settings, now: datetime) -> int:
    """Run every due schedule; returns how many campaigns were submitted."""
    submitted = 0
    with engine.begin() as conn:
        due = store.due_schedule_ids(conn, now=now)
    for schedule_id in due:
        with engine.begin() as conn:
            schedule = store.lock_due_schedule(conn, schedule_id, now=now)
            if schedule is None or schedule.next_run_at is None:
                continue
            at = schedule.next_run_at
            following = schedule.spec.next_run(at, now)
            if schedule.spec.skip_if_running and store.campaign_running(
                    conn, schedule.last_campaign_id):
                store.record_run(conn, schedule, next_run_at=following, skipped=True)
                log.info("schedule %d: run of %s skipped, campaign %s still runs", schedule.id,
                         at.isoformat(), schedule.last_campaign_id)
                continue
            jdl = expand_macros(schedule.spec.jdl, at, schedule.spec.time_zone)
            defaults = JDLDefaults(resources=settings.DEFAULT_JOB_RESOURCES,
                                   walltime=settings.DEFAULT_JOB_WALLTIME,
                                   max_resubmissions=settings.DEFAULT_MAX_RESUBMISSIONS)
            try:
                spec = parse_jdl(jdl, defaults=defaults,
                                 known_clusters=[c.name for c in list_clusters(conn)])
                savepoint = conn.begin_nested()
                campaign_id = create_campaign_from_spec(
                    conn, grid_user=schedule.owner, spec=spec, params=spec.parameter_lines(),
                    now=now)
                savepoint.commit()
            except JDLError as error:
                message = f"schedule {schedule.id} ({schedule.name}): {error}"
                record_event(conn, class_=EventClass.LOG, code=SCHEDULE_FAILED, message=message,
                             state=EventState.CLOSED, now=now)
                store.record_run(conn, schedule, next_run_at=following, error=str(error))
                continue
            record_new_campaign(conn, campaign_id, name=spec.name, tasks=len(spec.params or [])
                                or (spec.nb_jobs or 0), now=now,
                                plan=f"from schedule {schedule.id}")
            store.record_run(conn, schedule, next_run_at=following, campaign_id=campaign_id)
        submitted += 1
        log.info("schedule %d: campaign %d submitted for %s", schedule.id, campaign_id,
                 at.isoformat(), extra={"campaign_id": campaign_id})
    return submitted
