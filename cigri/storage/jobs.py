"""Jobs: claim queued tasks into jobs, follow them through their states, resubmit, finish campaigns.

Owns the runner's and the updater's writes to `jobs`, the resubmission inserts into `bag_of_tasks`,
`queue_counts`, and the `in_treatment` → `terminated` transition of campaigns (affinity decreases
are `cigri.storage.queue.decrease_affinity`). Every state change is guarded by the state it
expects, so concurrent daemons never overwrite each other. Does not own the meta-scheduler's
inserts into `jobs_to_launch`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, insert, or_, select, update

from cigri.domain.campaigns import SETTLED_EPILOGUE_STEPS, EpilogueSite, EpilogueStep, next_epilogue_step
from cigri.domain.failures import BUDGETED_EVENT_CODES
from cigri.domain.jobs import EPILOGUE, KEEP, PROLOGUE, Job, JobChange, LaunchItem, RunnerOptions
from cigri.domain.states import CampaignState, EventClass, EventState, JobState
from cigri.storage.epilogues import list_epilogue_sites
from cigri.storage.tables import (
    bag_of_tasks,
    campaign_properties,
    campaigns,
    events,
    jobs,
    jobs_to_launch,
    parameters,
    queue_counts,
)

log = logging.getLogger(__name__)

POLLED_STATES: Final = (JobState.SUBMITTED.value, JobState.REMOTE_WAITING.value,
                        JobState.RUNNING.value)
# A job in these states keeps its campaign unfinished (v3 §2.4 "active", plus launching/batch).
_ACTIVE_STATES: Final = (JobState.TO_LAUNCH.value, JobState.LAUNCHING.value,
                         JobState.SUBMITTED.value, JobState.REMOTE_WAITING.value,
                         JobState.RUNNING.value, JobState.BATCH_WAITING.value)
RESUBMITTABLE_CAMPAIGN_STATES: Final = (CampaignState.IN_TREATMENT.value,
                                        CampaignState.PAUSED.value)


def job_from_row(row: Any) -> Job:
    return Job(id=row.id, campaign_id=row.campaign_id, cluster_id=row.cluster_id,
               state=JobState(row.state), param_id=row.param_id, remote_id=row.remote_id,
               tag=row.tag, submission_id=row.submission_id, array_index=row.array_index,
               attempt=row.attempt, return_code=row.return_code,
               submission_time=row.submission_time, start_time=row.start_time)


def get_job(conn: Connection, job_id: int) -> Job:
    return job_from_row(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())


# The statements that daemons run at every pass are built once (bound parameters): building and
# cache-keying a statement costs about as much CPU as executing it.
_JOBS_TO_POLL = (select(jobs).where(jobs.c.cluster_id == bindparam("cluster_id"),
                                    jobs.c.state.in_(POLLED_STATES),
                                    jobs.c.id > bindparam("after_id"))
                 .order_by(jobs.c.id).limit(bindparam("limit")))
_CLUSTERS_TO_POLL = select(jobs.c.cluster_id).where(
    jobs.c.state.in_(POLLED_STATES), jobs.c.cluster_id.is_not(None)).distinct()
_WAITING_JOBS = (select(jobs.c.campaign_id, func.count()).where(
    jobs.c.cluster_id == bindparam("cluster_id"), jobs.c.state == JobState.REMOTE_WAITING.value)
    .group_by(jobs.c.campaign_id))
_QUEUE_HEAD = (select(bag_of_tasks.c.campaign_id, bag_of_tasks.c.priority,
                      jobs_to_launch.c.order_num, jobs_to_launch.c.id)
               .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
               .where(jobs_to_launch.c.cluster_id == bindparam("cluster_id"))
               .order_by(bag_of_tasks.c.priority.desc(), jobs_to_launch.c.order_num,
                         jobs_to_launch.c.id)
               .limit(bindparam("limit")))
_TO_LAUNCH = (select(jobs).where(jobs.c.cluster_id == bindparam("cluster_id"),
                                 jobs.c.state == JobState.TO_LAUNCH.value)
              .order_by(jobs.c.id).limit(bindparam("limit")))


def list_jobs_to_poll(conn: Connection, *, cluster_id: int, after_id: int = 0,
                      limit: int = 100) -> list[Job]:
    """One page (by id) of the jobs of a cluster that OAR runs or will run."""
    rows = conn.execute(_JOBS_TO_POLL, {"cluster_id": cluster_id, "after_id": after_id,
                                        "limit": limit})
    return [job_from_row(row) for row in rows]


def clusters_with_jobs_to_poll(conn: Connection) -> set[int]:
    """The clusters that have at least one job OAR runs or will run (the updater polls only
    those: an idle cluster costs no page query)."""
    return {int(row.cluster_id) for row in conn.execute(_CLUSTERS_TO_POLL)}


def list_jobs_of_submission(conn: Connection, submission_id: int) -> list[Job]:
    rows = conn.execute(select(jobs).where(jobs.c.submission_id == submission_id)
                        .order_by(jobs.c.array_index))
    return [job_from_row(row) for row in rows]


def count_waiting_jobs(conn: Connection, *, cluster_id: int) -> dict[int, int]:
    """Jobs waiting on OAR per campaign on this cluster (what closes taps)."""
    rows = conn.execute(_WAITING_JOBS, {"cluster_id": cluster_id})
    return {int(campaign): int(count) for campaign, count in rows}


def list_queued_campaigns(conn: Connection, *, cluster_id: int, limit: int = 1000) -> list[int]:
    """Campaigns with queued tasks on the cluster, in v3 queue order (task priority desc, order_num,
    queue id) of their first row; bounded scan of the queue head."""
    seen: list[int] = []
    for row in conn.execute(_QUEUE_HEAD, {"cluster_id": cluster_id, "limit": limit}):
        if row.campaign_id not in seen:
            seen.append(int(row.campaign_id))
    return seen


def list_to_launch_jobs(conn: Connection, *, cluster_id: int, limit: int = 100) -> list[Job]:
    """Jobs already created for this cluster and never submitted (prologue/epilogue, leftovers)."""
    rows = conn.execute(_TO_LAUNCH, {"cluster_id": cluster_id, "limit": limit})
    return [job_from_row(row) for row in rows]


def _attempts(conn: Connection, param_ids: Collection[int]) -> dict[int, int]:
    if not param_ids:
        return {}
    rows = conn.execute(select(jobs.c.param_id, func.count()).where(
        jobs.c.param_id.in_(list(param_ids))).group_by(jobs.c.param_id))
    return {int(param): int(count) for param, count in rows}


def claim_queued_tasks(conn: Connection, *, cluster_id: int, campaign_id: int, limit: int,
                       submission_id: int, now: datetime) -> list[LaunchItem]:
    """Turn up to `limit` queued tasks of a campaign into `launching` jobs of a submission.

    Deletes the tasks and their queue rows and inserts the jobs in the caller's transaction (v3
    "take", behaviour 11). On PostgreSQL the queue rows are locked with SKIP LOCKED, so a task
    removed or claimed concurrently (nikita, a cancel, another runner) is silently not taken; SQLite
    serialises writers instead. Jobs get `array_index` 1, 2, ... in queue order.
    """
    query = (
        select(jobs_to_launch.c.id.label("queue_id"), jobs_to_launch.c.task_id,
               jobs_to_launch.c.tag, jobs_to_launch.c.runner_options, bag_of_tasks.c.param_id,
               parameters.c.param)
        .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
        .join(parameters, parameters.c.id == bag_of_tasks.c.param_id)
        .where(jobs_to_launch.c.cluster_id == cluster_id,
               bag_of_tasks.c.campaign_id == campaign_id)
        .order_by(bag_of_tasks.c.priority.desc(), jobs_to_launch.c.order_num, jobs_to_launch.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=[jobs_to_launch, bag_of_tasks])
    rows = list(conn.execute(query))
    if not rows:
        return []
    conn.execute(delete(jobs_to_launch).where(
        jobs_to_launch.c.id.in_([row.queue_id for row in rows])))
    conn.execute(delete(bag_of_tasks).where(bag_of_tasks.c.id.in_([row.task_id for row in rows])))
    attempts = _attempts(conn, {row.param_id for row in rows})
    values = []
    for index, row in enumerate(rows, start=1):
        options = RunnerOptions.parse(row.runner_options)
        values.append({
            "campaign_id": campaign_id, "param_id": row.param_id, "cluster_id": cluster_id,
            "batch_id": options.batch_id, "state": JobState.LAUNCHING.value, "tag": row.tag,
            "runner_options": row.runner_options, "submission_id": submission_id,
            "array_index": index, "attempt": attempts.get(row.param_id, 0) + 1,
            "updated_at": now,
        })
    inserted = conn.execute(insert(jobs).returning(jobs.c.id, jobs.c.array_index,
                                                   sort_by_parameter_order=True), values)
    ids = {row.array_index: row.id for row in inserted}
    conn.execute(insert(queue_counts).values(date=now, campaign_id=campaign_id,
                                             cluster_id=cluster_id, jobs_count=len(rows)))
    return [LaunchItem(job_id=ids[index], campaign_id=campaign_id, param_id=row.param_id,
                       param=row.param, array_index=index, tag=row.tag,
                       besteffort=RunnerOptions.parse(row.runner_options).besteffort)
            for index, row in enumerate(rows, start=1)]


def launch_existing_jobs(conn: Connection, job_ids: Sequence[int], *, submission_id: int,
                         now: datetime) -> list[LaunchItem]:
    """Move `to_launch` jobs (prologue, epilogue, leftovers) into a submission, state-guarded."""
    items: list[LaunchItem] = []
    for index, job_id in enumerate(job_ids, start=1):
        moved = conn.execute(
            update(jobs).where(jobs.c.id == job_id, jobs.c.state == JobState.TO_LAUNCH.value)
            .values(state=JobState.LAUNCHING.value, submission_id=submission_id,
                    array_index=index, updated_at=now)
            .returning(jobs.c.campaign_id, jobs.c.param_id, jobs.c.tag, jobs.c.runner_options)
        ).one_or_none()
        if moved is None:
            continue
        param = None
        if moved.param_id is not None:
            param = conn.execute(select(parameters.c.param)
                                 .where(parameters.c.id == moved.param_id)).scalar_one()
        items.append(LaunchItem(job_id=job_id, campaign_id=moved.campaign_id,
                                param_id=moved.param_id, param=param, array_index=index,
                                tag=moved.tag,
                                besteffort=RunnerOptions.parse(moved.runner_options).besteffort))
    return items


def record_remote_ids(conn: Connection, *, submission_id: int, remote_ids: Mapping[int, int],
                      now: datetime) -> int:
    """Jobs of the submission get the OAR job running their own array index (`remote_ids` maps
    array index → OAR id; never matched by command text). Only `launching` jobs move."""
    if not remote_ids:
        return 0
    statement = (
        update(jobs)
        .where(jobs.c.submission_id == bindparam("b_submission"),
               jobs.c.array_index == bindparam("b_index"),
               jobs.c.state == JobState.LAUNCHING.value)
        .values(remote_id=bindparam("b_remote"), state=JobState.SUBMITTED.value,
                submission_time=bindparam("b_now"), updated_at=bindparam("b_now"))
    )
    result = conn.execute(statement, [
        {"b_submission": submission_id, "b_index": index, "b_remote": remote_id, "b_now": now}
        for index, remote_id in sorted(remote_ids.items())])
    return int(result.rowcount)


def _change_values(change: JobChange) -> dict[str, Any]:
    """The `jobs` columns a change writes besides its state (the one place changes become
    columns): every field not left as KEEP."""
    fields = {"start_time": change.start_time, "stop_time": change.stop_time,
              "return_code": change.return_code, "remote_id": change.remote_id}
    return {column: value for column, value in fields.items() if value is not KEEP}


def mark_job(conn: Connection, change: JobChange, *, expected: Collection[JobState],
             now: datetime) -> bool:
    """Move one job to `change.state` if it is still in one of `expected`; False if someone else
    moved it."""
    result = conn.execute(
        update(jobs).where(jobs.c.id == change.job_id,
                           jobs.c.state.in_([s.value for s in expected]))
        .values(state=change.state.value, updated_at=now, **_change_values(change)))
    return result.rowcount == 1


def mark_jobs(conn: Connection, changes: Sequence[JobChange], *,
              expected: Collection[JobState], now: datetime) -> int:
    """Many state changes in one round trip (executemany), each guarded by `expected` like
    `mark_job`. Returns how many rows moved."""
    if not changes:
        return 0
    expected_values = [s.value for s in expected]
    moved = 0
    # one statement per shape of change, so every row of an executemany binds the same columns
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in changes:
        values = _change_values(change)
        row = {f"b_{k}": v for k, v in values.items()}
        row.update(b_id=change.job_id, b_state=change.state.value, b_now=now)
        shapes.setdefault(tuple(sorted(values)), []).append(row)
    for keys, rows in shapes.items():
        columns: dict[str, Any] = {"state": bindparam("b_state"), "updated_at": bindparam("b_now")}
        columns.update({key: bindparam(f"b_{key}") for key in keys})
        # IN (...) expands and cannot be used with executemany: spell the guard with ORs
        guard = or_(*[jobs.c.state == value for value in expected_values])
        statement = update(jobs).where(jobs.c.id == bindparam("b_id"), guard).values(**columns)
        moved += int(conn.execute(statement, rows).rowcount)
    return moved


def update_job_start(conn: Connection, job_id: int, *, expected: Collection[JobState],
                     start_time: datetime) -> bool:
    """Write the start time of a job without changing its state (state-guarded)."""
    result = conn.execute(update(jobs).where(
        jobs.c.id == job_id, jobs.c.state.in_([s.value for s in expected]))
        .values(start_time=start_time))
    return result.rowcount == 1


def resubmit(conn: Connection, job: Job, *, priority: int) -> bool:
    """A new task for the job's parameter (v3 `Job.resubmit`): never for prologue/epilogue jobs,
    nor for campaigns that are neither in_treatment nor paused. The job row keeps its history."""
    if job.param_id is None or job.tag in {PROLOGUE, EPILOGUE}:
        return False
    state = conn.execute(select(campaigns.c.state).where(campaigns.c.id == job.campaign_id)
                         ).scalar_one_or_none()
    if state not in RESUBMITTABLE_CAMPAIGN_STATES:
        return False
    conn.execute(insert(bag_of_tasks).values(campaign_id=job.campaign_id, param_id=job.param_id,
                                             priority=priority))
    return True


def count_budget_used(conn: Connection, *, param_id: int) -> int:
    """Failures of this parameter that count against the retry budget (walltime kills, exit
    errors), from the events of its earlier jobs."""
    return int(conn.execute(
        select(func.count()).select_from(events.join(jobs, jobs.c.id == events.c.job_id))
        .where(jobs.c.param_id == param_id, events.c.code.in_(sorted(BUDGETED_EVENT_CODES)))
    ).scalar_one())


def count_param_events(conn: Connection, *, param_id: int, codes: Collection[str],
                       since_codes: Collection[str] = ()) -> int:
    """Events with one of `codes` on the jobs of this parameter (e.g. its stuck launches); with
    `since_codes`, only on jobs newer than its last job that has an event with one of those (a
    count that restarts after the user fixed and resubmitted it)."""
    query = (select(func.count()).select_from(events.join(jobs, jobs.c.id == events.c.job_id))
             .where(jobs.c.param_id == param_id, events.c.code.in_(sorted(codes))))
    if since_codes:
        last = (select(func.coalesce(func.max(jobs.c.id), 0))
                .select_from(events.join(jobs, jobs.c.id == events.c.job_id))
                .where(jobs.c.param_id == param_id, events.c.code.in_(sorted(since_codes)))
                .scalar_subquery())
        query = query.where(jobs.c.id > last)
    return int(conn.execute(query).scalar_one())


def lock_campaign_cluster(conn: Connection, *, campaign_id: int, cluster_id: int) -> None:
    """Serialise decisions about one (campaign, cluster) pair until the transaction ends (a
    PostgreSQL transaction-level advisory lock keyed by the two ids; SQLite serialises writers
    anyway). The runner and the updater take it before deciding whether to open the pair's
    campaign BLACKLIST, so two concurrent failures never open two."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(campaign_id, cluster_id)))


def list_open_failure_pairs(conn: Connection, pairs: Collection[tuple[int, int]], *,
                            ignored_codes: Collection[str]) -> set[tuple[int, int]]:
    """Which of these (campaign id, cluster id) pairs still have an open class-`job` event whose
    code is not in `ignored_codes` (a cause that keeps their campaign blacklist)."""
    if not pairs:
        return set()
    rows = conn.execute(
        select(events.c.campaign_id, events.c.cluster_id).distinct().where(
            events.c.state == EventState.OPEN.value, events.c.class_ == EventClass.JOB.value,
            events.c.campaign_id.in_(sorted({campaign for campaign, _ in pairs})),
            events.c.cluster_id.is_not(None), events.c.code.not_in(sorted(ignored_codes))))
    return {(int(row.campaign_id), int(row.cluster_id)) for row in rows} & set(pairs)


def max_resubmissions(conn: Connection, *, campaign_id: int, default: int) -> int:
    """The campaign's retry budget: JDL key `max_resubmissions`, else the configured default."""
    value = conn.execute(select(campaign_properties.c.value).where(
        campaign_properties.c.campaign_id == campaign_id,
        campaign_properties.c.name == "max_resubmissions").limit(1)).scalar_one_or_none()
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


@dataclass(frozen=True, kw_only=True)
class TerminatedCampaign:
    id: int
    skipped_epilogues: tuple[EpilogueSite, ...] = ()  # clusters where its epilogue cannot run


def _is_finished() -> Any:
    """No task, no queued task, no active job, and no job in `event` with an open event
    (behaviour 26), as one SQL condition on `campaigns`, so it is checked in one snapshot."""
    open_job_event = exists().where(events.c.job_id == jobs.c.id,
                                    events.c.state == EventState.OPEN.value)
    busy_job = exists().where(
        jobs.c.campaign_id == campaigns.c.id,
        (jobs.c.state.in_(_ACTIVE_STATES))
        | and_(jobs.c.state == JobState.EVENT.value, open_job_event))
    return and_(campaigns.c.state == CampaignState.IN_TREATMENT.value,
                ~exists().where(bag_of_tasks.c.campaign_id == campaigns.c.id), ~busy_job)


def _epilogue_steps(conn: Connection, campaign_ids: Sequence[int], *, now: datetime,
                    epilogue_wait: timedelta) -> list[tuple[EpilogueSite, EpilogueStep]]:
    return [(site, next_epilogue_step(site, now=now, blacklist_wait=epilogue_wait))
            for site in list_epilogue_sites(conn, campaign_ids)]


def list_finished_campaigns(conn: Connection, *, now: datetime, epilogue_wait: timedelta,
                            limit: int = 100) -> list[int]:
    """The ids of the `in_treatment` campaigns that have nothing left to run, their epilogue
    included: one whose epilogue still has to run on a cluster where the campaign ran is not
    finished (the meta-scheduler creates that epilogue once the tasks are done; v3 §7.16). An
    epilogue that cannot run there (cluster disabled, or blacklisted for `epilogue_wait`) does not
    hold it (`cigri.domain.campaigns.next_epilogue_step`)."""
    found: list[int] = []
    after = 0
    while len(found) < limit:  # pages by id, so campaigns waiting for an epilogue starve no one
        rows = list(conn.execute(select(campaigns.c.id)
                                 .where(_is_finished(), campaigns.c.id > after)
                                 .order_by(campaigns.c.id).limit(limit)))
        if not rows:
            break
        after = int(rows[-1].id)
        waiting = {site.campaign_id for site, step in _epilogue_steps(
            conn, [int(row.id) for row in rows], now=now, epilogue_wait=epilogue_wait)
            if step not in SETTLED_EPILOGUE_STEPS}
        found.extend(int(row.id) for row in rows if row.id not in waiting)
    return found[:limit]


def mark_campaign_terminated(conn: Connection, campaign_id: int, *, now: datetime,
                             epilogue_wait: timedelta) -> TerminatedCampaign | None:
    """in_treatment → terminated with `completion_time`, re-checking in the same statement that
    nothing came back meanwhile (and that no epilogue is still due). None if it did not happen;
    otherwise the epilogues it finished without, for the caller to tell the user."""
    steps = _epilogue_steps(conn, [campaign_id], now=now, epilogue_wait=epilogue_wait)
    if any(step not in SETTLED_EPILOGUE_STEPS for _site, step in steps):
        return None
    result = conn.execute(update(campaigns).where(campaigns.c.id == campaign_id, _is_finished())
                          .values(state=CampaignState.TERMINATED.value, completion_time=now))
    if result.rowcount != 1:
        return None
    return TerminatedCampaign(id=campaign_id, skipped_epilogues=tuple(
        site for site, step in steps if step is EpilogueStep.SKIP))


def set_tag(conn: Connection, job_ids: Sequence[int], tag: str) -> None:
    """Tag jobs still `launching` (the runner tags the jobs of a temporal-grouping batch)."""
    if job_ids:
        conn.execute(update(jobs).where(jobs.c.id.in_(list(job_ids)),
                                        jobs.c.state == JobState.LAUNCHING.value)
                     .values(tag=tag))
