"""The scheduling queue: what the meta-scheduler reads to decide and writes once it has decided.

Owns `jobs_to_launch` inserts, withdrawals and expiries, the creation of `taps` rows (their state and rate
belong to the runner), `tasks_affinity` and the counts the meta-scheduler needs (active, queued
and remaining work per campaign and cluster). Taking queued tasks into jobs is the runner's
(`cigri.storage.jobs`); emptying a cancelled campaign's bag is the API's (`cigri.storage.actions`).

Definitions follow v3 (`cigri-v3-server.md` §2.4): a task is *unscheduled* when no queue row refers
to it; a couple's *queued* jobs are the queue rows of the campaign on that cluster.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cigri.domain.scheduling import CampaignCluster, QueueEntry, StaleEntry, TaskCandidate
from cigri.domain.states import ACTIVE_JOB_STATES, CampaignState, EventState, JobState, TapState
from cigri.storage.tables import (
    bag_of_tasks,
    campaign_properties,
    campaigns,
    events,
    jobs,
    jobs_to_launch,
    parameters,
    taps,
    tasks_affinity,
    users_priority,
)

log = logging.getLogger(__name__)

# Per-cluster campaign properties the meta-scheduler reads (v3 `campaign_properties` names).
SCHEDULING_PROPERTIES = ("type", "test_mode", "max_jobs", "prologue", "epilogue",
                         "temporal_grouping", "dimensional_grouping")
AFFINITY_WINDOW = 10_000  # tasks with an affinity row considered per couple and pass
INSERT_CHUNK = 500  # rows per multi-row INSERT (SQLite caps bound parameters per statement)


def _insert(conn: Connection) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"true", "yes", "1"}


_RUNNING = (select(campaigns.c.id, campaigns.c.grid_user, campaigns.c.submission_time)
            .where(campaigns.c.state == CampaignState.IN_TREATMENT.value).subquery())
# The meta-scheduler's first read at every pass: built once, not rebuilt and re-keyed each time.
_RUNNING_COUPLES = (select(_RUNNING.c.id, _RUNNING.c.grid_user, _RUNNING.c.submission_time,
                           campaign_properties.c.cluster_id, campaign_properties.c.name,
                           campaign_properties.c.value)
                    .join(campaign_properties, campaign_properties.c.campaign_id == _RUNNING.c.id)
                    .where(campaign_properties.c.cluster_id.is_not(None))
                    .order_by(_RUNNING.c.id, campaign_properties.c.cluster_id))


def list_running_couples(conn: Connection) -> list[CampaignCluster]:
    """Every (campaign, cluster) couple of `in_treatment` campaigns, with the per-cluster
    properties that drive scheduling. A cluster belongs to a campaign iff it has a property row."""
    rows = conn.execute(_RUNNING_COUPLES)
    grouped: dict[tuple[int, int], dict[str, Any]] = {}
    for row in rows:
        couple = grouped.setdefault((row.id, row.cluster_id), {
            "grid_user": row.grid_user, "submitted_at": row.submission_time, "props": {}})
        if row.name in SCHEDULING_PROPERTIES:
            couple["props"][row.name] = row.value
    result = []
    for (campaign_id, cluster_id), data in grouped.items():
        props: dict[str, str] = data["props"]
        max_jobs = props.get("max_jobs")
        result.append(CampaignCluster(
            campaign_id=campaign_id, cluster_id=cluster_id, grid_user=data["grid_user"],
            campaign_type=props.get("type", "best-effort").strip().lower(),
            is_test=_is_true(props.get("test_mode")),
            max_jobs=int(max_jobs) if max_jobs and max_jobs.strip().lstrip("-").isdigit()
            else None,
            has_prologue=bool(props.get("prologue", "").strip()),
            has_epilogue=bool(props.get("epilogue", "").strip()),
            temporal_grouping=_is_true(props.get("temporal_grouping")),
            dimensional_grouping=_is_true(props.get("dimensional_grouping")),
        ))
    return result


# The meta-scheduler's snapshot reads, built once (bound parameters) instead of at every pass.
_ACTIVE_JOBS = (select(jobs.c.campaign_id, jobs.c.cluster_id, func.count())
                .where(jobs.c.state.in_([s.value for s in ACTIVE_JOB_STATES]),
                       jobs.c.cluster_id.is_not(None), jobs.c.param_id.is_not(None))
                .group_by(jobs.c.campaign_id, jobs.c.cluster_id))
_QUEUED = (select(bag_of_tasks.c.campaign_id, jobs_to_launch.c.cluster_id, func.count())
           .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
           .group_by(bag_of_tasks.c.campaign_id, jobs_to_launch.c.cluster_id))
_QUEUED_BY_CAMPAIGN = (select(bag_of_tasks.c.campaign_id, func.count())
                       .join(jobs_to_launch, jobs_to_launch.c.task_id == bag_of_tasks.c.id)
                       .where(bag_of_tasks.c.campaign_id.in_(
                           bindparam("campaign_ids", expanding=True)))
                       .group_by(bag_of_tasks.c.campaign_id))
# v3 "active": a job in `event` still counts while an open event is attached to it.
_UNFINISHED_TASK_JOBS = (
    select(jobs.c.campaign_id, func.count())
    .where(jobs.c.campaign_id.in_(bindparam("campaign_ids", expanding=True)),
           jobs.c.param_id.is_not(None),
           or_(jobs.c.state.in_([s.value for s in ACTIVE_JOB_STATES]),
               and_(jobs.c.state == JobState.EVENT.value,
                    exists().where(events.c.job_id == jobs.c.id,
                                   events.c.state == EventState.OPEN.value))))
    .group_by(jobs.c.campaign_id))
_TAGGED_JOB_STATES = (select(jobs.c.campaign_id, jobs.c.cluster_id, jobs.c.state).distinct()
                      .where(jobs.c.campaign_id.in_(bindparam("campaign_ids", expanding=True)),
                             jobs.c.tag == bindparam("tag"), jobs.c.cluster_id.is_not(None)))
_USERS_PRIORITY = select(users_priority.c.grid_user, users_priority.c.cluster_id,
                         users_priority.c.priority)
_TAP_RATES = select(taps.c.campaign_id, taps.c.cluster_id, taps.c.rate).where(
    taps.c.campaign_id.in_(bindparam("campaign_ids", expanding=True)))


def count_active_jobs(conn: Connection) -> dict[tuple[int, int], int]:
    """(campaign, cluster) → jobs there in an active state (to_launch … running), without the
    prologue/epilogue jobs, which are not tasks."""
    return {(int(a), int(b)): int(n) for a, b, n in conn.execute(_ACTIVE_JOBS)}


def count_queued(conn: Connection) -> dict[tuple[int, int], int]:
    """(campaign, cluster) → queue rows of the campaign's tasks for that cluster."""
    return {(int(a), int(b)): int(n) for a, b, n in conn.execute(_QUEUED)}


def campaigns_with_unscheduled_tasks(conn: Connection, campaign_ids: Sequence[int]) -> set[int]:
    """The campaigns that still have a task with no queue row (v3 "remaining tasks" > 0).

    An EXISTS per campaign, not a count: it stops at the first unqueued task instead of scanning a
    million-task bag every pass.
    """
    found = set()
    for campaign_id in campaign_ids:
        if conn.execute(_ANY_UNQUEUED, {"campaign_id": campaign_id}).first() is not None:
            found.add(campaign_id)
    return found


def count_queued_by_campaign(conn: Connection, campaign_ids: Sequence[int]) -> dict[int, int]:
    """campaign → queue rows of its tasks, on any cluster."""
    if not campaign_ids:
        return {}
    rows = conn.execute(_QUEUED_BY_CAMPAIGN, {"campaign_ids": list(campaign_ids)})
    return {int(a): int(n) for a, n in rows}


def count_unfinished_task_jobs(conn: Connection, campaign_ids: Sequence[int]) -> dict[int, int]:
    """campaign → task jobs (not prologue/epilogue) still active, on any cluster."""
    if not campaign_ids:
        return {}
    rows = conn.execute(_UNFINISHED_TASK_JOBS, {"campaign_ids": list(campaign_ids)})
    return {int(a): int(n) for a, n in rows}


def list_tagged_job_states(conn: Connection, campaign_ids: Sequence[int],
                           tag: str) -> dict[tuple[int, int], set[JobState]]:
    """(campaign, cluster) → the states of its prologue (or epilogue) jobs."""
    if not campaign_ids:
        return {}
    rows = conn.execute(_TAGGED_JOB_STATES, {"campaign_ids": list(campaign_ids), "tag": tag})
    found: dict[tuple[int, int], set[JobState]] = {}
    for campaign_id, cluster_id, state in rows:
        found.setdefault((int(campaign_id), int(cluster_id)), set()).add(JobState(state))
    return found


def list_users_priority(conn: Connection) -> dict[tuple[str, int], int]:
    """(grid user, cluster) → priority; a missing row means 0."""
    return {(str(u), int(c)): int(p) for u, c, p in conn.execute(_USERS_PRIORITY)}


def ensure_taps(conn: Connection, couples: Iterable[tuple[int, int]], *,
                initial_rate: int) -> dict[tuple[int, int], int]:
    """Create the missing taps of (campaign, cluster) couples (open, `initial_rate`) and return
    every couple's current rate."""
    wanted = set(couples)
    if not wanted:
        return {}
    campaign_ids = sorted({campaign for campaign, _ in wanted})
    rates = _tap_rates(conn, campaign_ids)
    missing = [{"campaign_id": a, "cluster_id": b, "state": TapState.OPEN.value,
                "rate": initial_rate} for a, b in sorted(wanted - set(rates))]
    if missing:
        # Another daemon (the runner) may create the same tap at the same moment.
        conn.execute(_insert(conn)(taps).on_conflict_do_nothing(
            index_elements=["cluster_id", "campaign_id"]), missing)
        rates = _tap_rates(conn, campaign_ids)
    return {couple: rates.get(couple, initial_rate) for couple in wanted}


def _tap_rates(conn: Connection, campaign_ids: Sequence[int]) -> dict[tuple[int, int], int]:
    rows = conn.execute(_TAP_RATES, {"campaign_ids": list(campaign_ids)})
    return {(int(a), int(b)): int(r) for a, b, r in rows}


# The meta-scheduler's per-couple reads, built once (bound parameters) instead of at every pass.
_UNQUEUED = ~exists().where(jobs_to_launch.c.task_id == bag_of_tasks.c.id)
_IN_CAMPAIGN = bag_of_tasks.c.campaign_id == bindparam("campaign_id")
_ANY_UNQUEUED = select(bag_of_tasks.c.id).where(_IN_CAMPAIGN, _UNQUEUED).limit(1)
_WITH_AFFINITY = (
    select(bag_of_tasks.c.id, bag_of_tasks.c.param_id, bag_of_tasks.c.priority,
           tasks_affinity.c.priority.label("affinity"))
    .join(tasks_affinity, and_(tasks_affinity.c.param_id == bag_of_tasks.c.param_id,
                               tasks_affinity.c.cluster_id == bindparam("cluster_id")))
    .where(_IN_CAMPAIGN, _UNQUEUED).limit(AFFINITY_WINDOW))
_TOP_LEVEL = select(func.max(bag_of_tasks.c.priority)).where(_IN_CAMPAIGN)
_LEVEL_ROWS = (select(bag_of_tasks.c.id, bag_of_tasks.c.param_id, bag_of_tasks.c.priority)
               .where(_IN_CAMPAIGN, bag_of_tasks.c.priority == bindparam("level"), _UNQUEUED)
               .order_by(bag_of_tasks.c.id).limit(bindparam("limit")))
_NEXT_LEVEL = select(func.max(bag_of_tasks.c.priority)).where(
    _IN_CAMPAIGN, bag_of_tasks.c.priority < bindparam("level"))


def list_unscheduled_tasks(conn: Connection, *, campaign_id: int, cluster_id: int,
                           limit: int) -> list[TaskCandidate]:
    """Up to `limit` unscheduled tasks of a campaign, in v3 order for that cluster: task priority
    desc, parameter affinity for the cluster desc (absent = 0), task id.

    Sorting the whole bag by affinity would scan a million-task campaign every pass. Instead: the
    tasks that have an affinity row for the cluster (few: only failures create them), plus the
    first `limit + len(those)` tasks in index order (priority desc, id). Only a task with a
    negative affinity can precede a zero-affinity task in index order and follow it in the true
    order, so that window always holds the true top `limit`; merge and cut.
    """
    if limit <= 0:
        return []
    with_affinity = conn.execute(_WITH_AFFINITY, {"campaign_id": campaign_id,
                                                  "cluster_id": cluster_id}).all()
    affinity = {int(r.id): int(r.affinity) for r in with_affinity}
    window = _in_index_order(conn, campaign_id, limit + len(with_affinity))
    rows = {int(r.id): r for r in [*with_affinity, *window]}
    ordered = sorted(rows.values(),
                     key=lambda r: (-r.priority, -affinity.get(int(r.id), 0), int(r.id)))
    return [TaskCandidate(task_id=int(r.id), campaign_id=campaign_id, param_id=int(r.param_id),
                          priority=int(r.priority), affinity=affinity.get(int(r.id), 0))
            for r in ordered[:limit]]


def _in_index_order(conn: Connection, campaign_id: int, limit: int) -> list[Any]:
    """The first `limit` unqueued tasks by (priority desc, id), one priority level at a time.

    A single ORDER BY priority DESC, id cannot walk the (campaign_id, priority, id) index (mixed
    directions) and sorts the whole bag; per level, each query is an index range scan, and the
    levels themselves are found with max() lookups (there are few: 20, 10, 0).
    """
    rows: list[Any] = []
    level = conn.execute(_TOP_LEVEL, {"campaign_id": campaign_id}).scalar()
    while level is not None and len(rows) < limit:
        rows += conn.execute(_LEVEL_ROWS, {"campaign_id": campaign_id, "level": level,
                                           "limit": limit - len(rows)}).all()
        level = conn.execute(_NEXT_LEVEL, {"campaign_id": campaign_id, "level": level}).scalar()
    return rows


def next_batch_id(conn: Connection) -> int:
    """A batch id above every one in use (v3 takes the largest `jobs.batch_id` + 1)."""
    job_max = conn.execute(select(func.max(jobs.c.batch_id))).scalar_one_or_none() or 0
    return int(job_max) + 1


def queue_tasks(conn: Connection, entries: Sequence[QueueEntry], *, now: datetime,
                after_queued: bool = False) -> int:
    """Insert queue rows for tasks still in the bag of a campaign still `in_treatment`.

    The tasks are read `FOR SHARE` first: a concurrent cancel (which deletes the bag) waits for
    this transaction instead of making it fail on a foreign key, and a task cancelled before we got
    here is simply not queued. `task_id` is UNIQUE: a task already queued (by another instance)
    is skipped, never queued twice. Returns how many rows were inserted.

    `after_queued`: each cluster's `order_num`s continue after the largest already queued there,
    so this pass's batches queue behind earlier ones instead of (v3) restarting at 1 and jumping
    ahead of them; the fair-share policy needs it, or each pass's first user would always hold the
    head of the queue.
    """
    if not entries:
        return 0
    task_ids = [entry.task_id for entry in entries]
    still_there = select(bag_of_tasks.c.id).join(
        campaigns, campaigns.c.id == bag_of_tasks.c.campaign_id).where(
        bag_of_tasks.c.id.in_(task_ids),
        campaigns.c.state == CampaignState.IN_TREATMENT.value)
    if conn.dialect.name == "postgresql":
        still_there = still_there.with_for_update(read=True, of=bag_of_tasks)
    present = {int(row.id) for row in conn.execute(still_there)}
    offsets: dict[int, int] = {}
    if after_queued:
        cluster_ids = sorted({e.cluster_id for e in entries})
        offsets = {int(c): int(n or 0) for c, n in conn.execute(
            select(jobs_to_launch.c.cluster_id, func.max(jobs_to_launch.c.order_num))
            .where(jobs_to_launch.c.cluster_id.in_(cluster_ids))
            .group_by(jobs_to_launch.c.cluster_id))}
    rows = [{"task_id": e.task_id, "cluster_id": e.cluster_id, "tag": None, "queuing_date": now,
             "order_num": e.order_num + offsets.get(e.cluster_id, 0),
             "runner_options": json.dumps(e.runner_options)}
            for e in entries if e.task_id in present]
    if not rows:
        return 0
    # One multi-row INSERT; RETURNING counts the rows really inserted (rowcount is unreliable
    # with ON CONFLICT DO NOTHING across drivers).
    inserted = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        inserted += len(conn.execute(
            _insert(conn)(jobs_to_launch).values(rows[start:start + INSERT_CHUNK])
            .on_conflict_do_nothing(index_elements=["task_id"]).returning(jobs_to_launch.c.id)
        ).all())
    return inserted


def list_stale_queue_entries(conn: Connection, *, queued_before: datetime,
                             limit: int) -> list[StaleEntry]:
    """Queue rows older than `queued_before` (nikita expires them)."""
    rows = conn.execute(
        select(jobs_to_launch.c.id, jobs_to_launch.c.task_id, jobs_to_launch.c.cluster_id,
               bag_of_tasks.c.param_id, bag_of_tasks.c.campaign_id)
        .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
        .where(jobs_to_launch.c.queuing_date < queued_before)
        .order_by(jobs_to_launch.c.id).limit(limit)
    )
    return [StaleEntry(queue_id=int(r.id), task_id=int(r.task_id), cluster_id=int(r.cluster_id),
                       param_id=int(r.param_id), campaign_id=int(r.campaign_id)) for r in rows]


def delete_queue_entries(conn: Connection, queue_ids: Sequence[int], *,
                         queued_before: datetime | None = None) -> int:
    """Delete queue rows (still older than `queued_before`, if given); returns how many."""
    if not queue_ids:
        return 0
    query = delete(jobs_to_launch).where(jobs_to_launch.c.id.in_(list(queue_ids)))
    if queued_before is not None:
        query = query.where(jobs_to_launch.c.queuing_date < queued_before)
    return int(conn.execute(query).rowcount)


def withdraw_queued_tasks(conn: Connection, couples: Sequence[tuple[int, int]]) -> int:
    """Delete the queue rows of these (campaign, cluster) couples, so their tasks are unscheduled
    again (the meta-scheduler queues them elsewhere); returns how many.

    A queue row exists only while no runner took its task: the runner deletes it in the
    transaction that records its submission intent. The rows a runner is taking right now are
    locked, and SKIP LOCKED leaves them to it, so a task is either withdrawn or submitted, never
    both (SQLite serialises writers instead).
    """
    withdrawn = 0
    for campaign_id, cluster_id in couples:
        candidates = (select(jobs_to_launch.c.id)
                      .where(jobs_to_launch.c.cluster_id == cluster_id,
                             jobs_to_launch.c.task_id.in_(select(bag_of_tasks.c.id).where(
                                 bag_of_tasks.c.campaign_id == campaign_id)))
                      .with_for_update(skip_locked=True).cte("candidates"))
        withdrawn += int(conn.execute(delete(jobs_to_launch).where(
            jobs_to_launch.c.id.in_(select(candidates.c.id)))).rowcount)
    return withdrawn


def delete_campaign_queue(conn: Connection, campaign_id: int) -> int:
    """Remove every queue row of a campaign's tasks (its tasks stay in the bag)."""
    tasks = select(bag_of_tasks.c.id).where(bag_of_tasks.c.campaign_id == campaign_id)
    return int(conn.execute(
        delete(jobs_to_launch).where(jobs_to_launch.c.task_id.in_(tasks))).rowcount)


def delete_campaign_bag(conn: Connection, campaign_id: int) -> int:
    """Remove every unstarted task of a campaign (its queue rows go by cascade)."""
    delete_campaign_queue(conn, campaign_id)
    return int(conn.execute(
        delete(bag_of_tasks).where(bag_of_tasks.c.campaign_id == campaign_id)).rowcount)


def decrease_affinity(conn: Connection, pairs: Iterable[tuple[int, int]], *,
                      by: int = 1) -> None:
    """Lower the affinity of each (parameter, cluster) by `by` (an absent row counts as 0), so
    the next scheduling of those parameters prefers other clusters."""
    counts: dict[tuple[int, int], int] = {}
    for pair in pairs:
        counts[pair] = counts.get(pair, 0) + by
    if not counts:
        return
    stmt = _insert(conn)(tasks_affinity)
    stmt = stmt.on_conflict_do_update(
        index_elements=["param_id", "cluster_id"],
        set_={"priority": tasks_affinity.c.priority + stmt.excluded.priority})
    conn.execute(stmt, [{"param_id": p, "cluster_id": c, "priority": -n}
                        for (p, c), n in sorted(counts.items())])


def get_affinities(conn: Connection, param_ids: Sequence[int],
                   cluster_id: int) -> Mapping[int, int]:
    rows = conn.execute(select(tasks_affinity.c.param_id, tasks_affinity.c.priority).where(
        tasks_affinity.c.param_id.in_(list(param_ids)), tasks_affinity.c.cluster_id == cluster_id))
    return {int(p): int(v) for p, v in rows}


def delete_finished_affinities(conn: Connection) -> int:
    """Drop affinity rows of parameters whose campaign is terminated or cancelled."""
    finished = (select(parameters.c.id).join(campaigns, campaigns.c.id == parameters.c.campaign_id)
                .where(campaigns.c.state.in_([CampaignState.TERMINATED.value,
                                              CampaignState.CANCELLED.value])))
    return int(conn.execute(
        delete(tasks_affinity).where(tasks_affinity.c.param_id.in_(finished))).rowcount)


def touch_queue(conn: Connection, queue_ids: Sequence[int], *, now: datetime) -> None:
    """Refresh `queuing_date` of queue rows (tests and admin requeue)."""
    if queue_ids:
        conn.execute(update(jobs_to_launch).where(jobs_to_launch.c.id.in_(list(queue_ids)))
                     .values(queuing_date=now))


def create_tagged_job(conn: Connection, *, campaign_id: int, cluster_id: int, tag: str,
                      now: datetime) -> int | None:
    """Create a prologue/epilogue job (`to_launch`, no parameter, normal job) unless the campaign
    is no longer `in_treatment` or such a job is already in flight there. The campaign row is
    locked first (lock order: campaign, then jobs) so two creators cannot both pass the check."""
    locked = select(campaigns.c.state).where(campaigns.c.id == campaign_id)
    if conn.dialect.name == "postgresql":
        locked = locked.with_for_update()
    state = conn.execute(locked).scalar_one_or_none()
    if state != CampaignState.IN_TREATMENT.value:
        return None
    in_flight = conn.execute(
        select(jobs.c.id).where(jobs.c.campaign_id == campaign_id, jobs.c.cluster_id == cluster_id,
                                jobs.c.tag == tag,
                                jobs.c.state.in_([s.value for s in ACTIVE_JOB_STATES]
                                                 + [JobState.TERMINATED.value]))
        .limit(1)).first()
    if in_flight is not None:
        return None
    job_id = conn.execute(
        insert(jobs).values(campaign_id=campaign_id, cluster_id=cluster_id, param_id=None,
                            state=JobState.TO_LAUNCH.value, tag=tag,
                            runner_options=json.dumps({"besteffort": False}), updated_at=now)
        .returning(jobs.c.id)).scalar_one()
    return int(job_id)
