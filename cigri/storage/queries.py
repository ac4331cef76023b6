"""Read models of the REST API: campaign lists and details with their counts, task pages, event
pages, single jobs, statistics.

Owns only SELECTs shaped for the user surface. Every query is indexed and bounded: a campaign's
finished count is one row of `campaign_job_counts` on PostgreSQL (kept by triggers) and an
index-only count on `ix_jobs_campaign_state` on SQLite; the other counts go through indexes on
small sets (active jobs, queued tasks); pages are keyset pages (`WHERE id > :after ORDER BY id
LIMIT :limit`); statistics read the per-cluster sums of `cigri.storage.stats`. Writes live elsewhere
(`campaigns`, `events`, `actions`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Integer, and_, bindparam, exists, func, literal, or_, select

from cigri.domain.admission import AdmissionRule
from cigri.domain.errors import CampaignNotFound, JobNotFound, NotFound
from cigri.domain.event_codes import EventCode
from cigri.domain.states import ACTIVE_JOB_STATES, CampaignState, EventClass, EventState, JobState
from cigri.domain.stats import ClusterStats
from cigri.storage.stats import campaign_cluster_stats
from cigri.storage.tables import (
    admission_rules,
    bag_of_tasks,
    campaign_job_counts,
    campaign_properties,
    campaigns,
    clusters,
    events,
    jobs,
    jobs_to_launch,
    parameters,
)

MAX_PAGE: Final = 1000
# Events v3 hides from a campaign's history: bookkeeping, not something a user acts on.
HIDDEN_HISTORY_CODES: Final = (EventCode.REMOTE_WAITING_FRAG, EventCode.FRAG_RESUBMIT_BY_NIKITA)
UNFINISHED_STATES: Final = (CampaignState.IN_TREATMENT.value, CampaignState.PAUSED.value)


@dataclass(frozen=True, kw_only=True)
class CampaignSummary:
    id: int
    name: str | None
    grid_user: str
    state: str
    type: str
    submission_time: datetime | None
    completion_time: datetime | None
    total_jobs: int
    finished_jobs: int
    has_events: bool


@dataclass(frozen=True, kw_only=True)
class CampaignCluster:
    cluster_id: int
    cluster_name: str
    active_jobs: int  # running + waiting
    queued_jobs: int
    prologue_ok: bool
    running_jobs: int = 0  # running on the cluster
    waiting_jobs: int = 0  # being launched, or submitted and waiting in the cluster's queue
    epilogue_ok: bool


@dataclass(frozen=True, kw_only=True)
class CampaignDetail:
    summary: CampaignSummary
    clusters: list[CampaignCluster] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class TaskRow:
    id: int
    name: str
    parameters: str
    cluster: str | None
    cigri_job_id: int | None
    remote_id: int | None
    state: str


@dataclass(frozen=True, kw_only=True)
class CampaignStats:
    average_jobs_duration: float | None
    stddev_jobs_duration: float | None
    jobs_throughput: float
    remaining_time: float
    failures_rate: float
    resubmit_rate: float


# ---------------------------------------------------------------- campaigns


def get_campaign_owner(conn: Connection, campaign_id: int) -> tuple[str, str]:
    """(grid_user, state) of a campaign; raises CampaignNotFound."""
    row = conn.execute(select(campaigns.c.grid_user, campaigns.c.state)
                       .where(campaigns.c.id == campaign_id)).one_or_none()
    if row is None:
        raise CampaignNotFound(f"Campaign {campaign_id} not found")
    return str(row.grid_user), str(row.state)


def _campaign_cluster_ids(campaign_id: Any) -> Any:
    return (select(campaign_properties.c.cluster_id)
            .where(campaign_properties.c.campaign_id == campaign_id,
                   campaign_properties.c.cluster_id.is_not(None)))


@functools.cache
def _summary_select(dialect: str) -> Any:
    """Campaign rows with their counts, in one statement (one round trip per page). Built once
    per dialect: building the expression cost more CPU than running it (issue 16 point 8).

    On PostgreSQL the terminated tasks are read from `campaign_job_counts`, which triggers keep
    (one row, whatever the size of the campaign); SQLite counts them on the index.
    """
    if dialect == "postgresql":
        terminated: Any = func.coalesce(
            select(campaign_job_counts.c.terminated_tasks)
            .where(campaign_job_counts.c.campaign_id == campaigns.c.id)
            .correlate(campaigns).scalar_subquery(), 0)
        special: Any = literal(0)
    else:
        terminated = (select(func.count()).select_from(jobs)
                      .where(jobs.c.campaign_id == campaigns.c.id,
                             jobs.c.state == JobState.TERMINATED.value)
                      .correlate(campaigns).scalar_subquery())
        # Prologue/epilogue jobs (NULL param_id, through ix_jobs_param_id) are not tasks.
        special = (select(func.count()).select_from(jobs)
                   .where(jobs.c.param_id.is_(None), jobs.c.campaign_id == campaigns.c.id,
                          jobs.c.state == JobState.TERMINATED.value)
                   .correlate(campaigns).scalar_subquery())
    own = (exists().where(events.c.campaign_id == campaigns.c.id,
                          events.c.state == EventState.OPEN.value,
                          events.c.class_.in_([EventClass.CAMPAIGN.value, EventClass.JOB.value]))
           .correlate(campaigns))
    cluster_wide = (exists().where(events.c.state == EventState.OPEN.value,
                                   events.c.class_ == EventClass.CLUSTER.value,
                                   events.c.campaign_id.is_(None),
                                   events.c.cluster_id.in_(_campaign_cluster_ids(campaigns.c.id)))
                    .correlate(campaigns))
    return select(campaigns, terminated.label("terminated"), special.label("special"),
                  or_(own, cluster_wide).label("has_events"))


def _summary(row: Any) -> CampaignSummary:
    total = int(row.nb_jobs or 0)
    # v3 bug: a task that terminated twice made finished exceed total.
    finished = max(0, min(int(row.terminated) - int(row.special), total))
    return CampaignSummary(
        id=row.id, name=row.name, grid_user=row.grid_user, state=row.state, type=row.type,
        submission_time=row.submission_time, completion_time=row.completion_time,
        total_jobs=total, finished_jobs=finished, has_events=bool(row.has_events))


def get_campaign_summary(conn: Connection, campaign_id: int) -> CampaignSummary:
    row = conn.execute(_summary_by_id(conn.dialect.name), {"campaign_id": campaign_id}
                       ).one_or_none()
    if row is None:
        raise CampaignNotFound(f"Campaign {campaign_id} not found")
    return _summary(row)


@functools.cache
def _summary_by_id(dialect: str) -> Any:
    return _summary_select(dialect).where(campaigns.c.id == bindparam("campaign_id", type_=Integer()))


def list_campaigns(conn: Connection, *, grid_user: str | None = None,
                   states: Sequence[str] | None = UNFINISHED_STATES, after: int = 0,
                   limit: int = MAX_PAGE) -> list[CampaignSummary]:
    """Campaigns by id (keyset page after `after`), of one user or all, in `states` (None: any)."""
    query = (_summary_select(conn.dialect.name).where(campaigns.c.id > after)
             .order_by(campaigns.c.id))
    if grid_user is not None:
        query = query.where(campaigns.c.grid_user == grid_user)
    if states is not None:
        query = query.where(campaigns.c.state.in_(list(states)))
    return [_summary(row) for row in conn.execute(query.limit(min(limit, MAX_PAGE)))]


def _has_script(campaign_id: Any, cluster_id: Any, name: str) -> Any:
    return exists().where(campaign_properties.c.campaign_id == campaign_id,
                          campaign_properties.c.cluster_id == cluster_id,
                          campaign_properties.c.name == name,
                          func.trim(campaign_properties.c.value) != "")


def _script_done(campaign_id: Any, cluster_id: Any, tag: str) -> Any:
    return exists().where(jobs.c.param_id.is_(None), jobs.c.campaign_id == campaign_id,
                          jobs.c.cluster_id == cluster_id, jobs.c.tag == tag,
                          jobs.c.state == JobState.TERMINATED.value)


def get_campaign_detail(conn: Connection, campaign_id: int) -> CampaignDetail:
    """The summary and, per cluster of the campaign, its counts: two statements in all, built
    once (bound `campaign_id`)."""
    summary = get_campaign_summary(conn, campaign_id)
    rows = conn.execute(_detail_select(), {"campaign_id": campaign_id}).all()
    result = [
        CampaignCluster(cluster_id=r.cluster_id, cluster_name=r.name, active_jobs=int(r.active),
                        queued_jobs=int(r.queued), running_jobs=int(r.running),
                        waiting_jobs=int(r.active) - int(r.running),
                        prologue_ok=not r.has_prologue or bool(r.prologue_done),
                        epilogue_ok=not r.has_epilogue or bool(r.epilogue_done))
        for r in rows
    ]
    return CampaignDetail(summary=summary, clusters=result)


@functools.cache
def _detail_select() -> Any:
    campaign_id: Any = bindparam("campaign_id", type_=Integer())
    ids = _campaign_cluster_ids(campaign_id).distinct().subquery("campaign_clusters")
    cid = ids.c.cluster_id
    active = (select(func.count()).select_from(jobs)
              .where(jobs.c.campaign_id == campaign_id, jobs.c.cluster_id == cid,
                     jobs.c.state.in_([s.value for s in ACTIVE_JOB_STATES]))
              .scalar_subquery())
    running = (select(func.count()).select_from(jobs)
               .where(jobs.c.campaign_id == campaign_id, jobs.c.cluster_id == cid,
                      jobs.c.state == JobState.RUNNING.value)
               .scalar_subquery())
    queued = (select(func.count()).select_from(jobs_to_launch)
              .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
              .where(bag_of_tasks.c.campaign_id == campaign_id, jobs_to_launch.c.cluster_id == cid)
              .scalar_subquery())
    return (select(cid, clusters.c.name, active.label("active"), running.label("running"),
                   queued.label("queued"),
                   _has_script(campaign_id, cid, "prologue").label("has_prologue"),
                   _script_done(campaign_id, cid, "prologue").label("prologue_done"),
                   _has_script(campaign_id, cid, "epilogue").label("has_epilogue"),
                   _script_done(campaign_id, cid, "epilogue").label("epilogue_done"))
            .join(clusters, clusters.c.id == cid).order_by(cid))


def get_campaign_jdl(conn: Connection, campaign_id: int) -> str | None:
    row = conn.execute(select(campaigns.c.jdl).where(campaigns.c.id == campaign_id)).one_or_none()
    if row is None:
        raise CampaignNotFound(f"Campaign {campaign_id} not found")
    return row.jdl


# ---------------------------------------------------------------- tasks and jobs


WAITING_RESUBMISSION: Final = "waiting_resubmission"
_ENDED: Final = frozenset({JobState.TERMINATED.value, JobState.EVENT.value})


def task_state(latest_job_state: str | None, bag: bool | None) -> str:
    """What a task is doing, from its latest job's state (None: it has had none) and its place in
    the bag (None: not there; False: waiting; True: queued on a cluster). A task back in the bag
    after a job that ended (exit 66/67, a kill, a fixed event) is `waiting_resubmission`, not
    its old job's `event`."""
    if latest_job_state is None:
        if bag is None:
            return "cancelled"
        return "queued" if bag else "pending"
    if bag is not None and latest_job_state in _ENDED:
        return WAITING_RESUBMISSION
    return latest_job_state


def _bag_states(conn: Connection, param_ids: Sequence[int]) -> dict[int, bool]:
    """Parameter id -> queued (True) or waiting unqueued (False), for those in the bag."""
    found: dict[int, bool] = {}
    if not param_ids:
        return found
    for task in conn.execute(
        select(bag_of_tasks.c.param_id, jobs_to_launch.c.id.label("queued"))
        .outerjoin(jobs_to_launch, jobs_to_launch.c.task_id == bag_of_tasks.c.id)
        .where(bag_of_tasks.c.param_id.in_(list(param_ids)))
    ):
        found[task.param_id] = found.get(task.param_id, False) or task.queued is not None
    return found


def list_tasks(conn: Connection, campaign_id: int, *, after: int = 0, offset: int = 0,
               limit: int = 100, ids: Sequence[int] | None = None) -> list[TaskRow]:
    """One row per task (parameter) by id, with its latest job: a keyset page after `after`
    (only among `ids` when given: the dashboard's filtered pages).

    v3 listed task×job rows, so a resubmitted task took several places and `limit` counted rows;
    here a page is `limit` tasks and never skips one.
    """
    page = (select(parameters.c.id, parameters.c.name, parameters.c.param)
            .where(parameters.c.campaign_id == campaign_id, parameters.c.id > after)
            .order_by(parameters.c.id).limit(min(limit, MAX_PAGE)))
    if ids is not None:
        page = page.where(parameters.c.id.in_(list(ids)))
    if offset:
        page = page.offset(offset)
    page_sq = page.subquery("page")
    latest = (select(func.max(jobs.c.id)).where(jobs.c.param_id == page_sq.c.id)
              .correlate(page_sq).scalar_subquery())
    rows = conn.execute(
        select(page_sq, jobs.c.id.label("job_id"), jobs.c.remote_id, jobs.c.state,
               clusters.c.name.label("cluster_name"))
        .select_from(page_sq)
        .outerjoin(jobs, jobs.c.id == latest)
        .outerjoin(clusters, clusters.c.id == jobs.c.cluster_id)
        .order_by(page_sq.c.id)
    ).all()
    in_bag = _bag_states(conn, [r.id for r in rows])
    result = []
    for r in rows:
        state = task_state(r.state if r.job_id is not None else None, in_bag.get(r.id))
        result.append(TaskRow(id=r.id, name=r.name, parameters=r.param,
                              cluster=r.cluster_name, cigri_job_id=r.job_id,
                              remote_id=r.remote_id, state=state))
    return result


def get_task(conn: Connection, campaign_id: int, param_id: int) -> dict[str, Any]:
    """A task with every job (execution) it has had, oldest first."""
    row = conn.execute(select(parameters).where(parameters.c.id == param_id,
                                                parameters.c.campaign_id == campaign_id)
                       ).one_or_none()
    if row is None:
        raise NotFound(f"Task {param_id} of campaign {campaign_id} not found")
    executions = [
        {"id": j.id, "cluster_id": j.cluster_id, "cluster_name": j.cluster_name, "state": j.state,
         "return_code": j.return_code, "remote_id": j.remote_id}
        for j in conn.execute(
            select(jobs, clusters.c.name.label("cluster_name"))
            .outerjoin(clusters, clusters.c.id == jobs.c.cluster_id)
            .where(jobs.c.param_id == param_id).order_by(jobs.c.id))
    ]
    state = task_state(executions[-1]["state"] if executions else None,
                       _bag_states(conn, [param_id]).get(param_id))
    return {"id": row.id, "name": row.name, "parameters": row.param, "state": state,
            "execution": executions}


def get_job(conn: Connection, job_id: int) -> dict[str, Any]:
    """A job row with its parameter line, owner and cluster name; raises JobNotFound."""
    row = conn.execute(
        select(jobs, parameters.c.param, campaigns.c.grid_user,
               clusters.c.name.label("cluster_name"))
        .join(campaigns, campaigns.c.id == jobs.c.campaign_id)
        .outerjoin(parameters, parameters.c.id == jobs.c.param_id)
        .outerjoin(clusters, clusters.c.id == jobs.c.cluster_id)
        .where(jobs.c.id == job_id)
    ).one_or_none()
    if row is None:
        raise JobNotFound(f"Job {job_id} not found")
    return dict(row._mapping)


def get_job_detail(conn: Connection, job_id: int) -> dict[str, Any]:
    """`get_job`, saying what became of an ended job's task as the task list does: its state is
    `waiting_resubmission` while the task waits in the bag again, and `resubmitted_as` names the
    job that ran it next."""
    found = get_job(conn, job_id)
    param_id = found["param_id"]
    if found["state"] in _ENDED and param_id is not None:
        newer = conn.execute(select(func.min(jobs.c.id)).where(
            jobs.c.param_id == param_id, jobs.c.id > job_id)).scalar_one_or_none()
        if newer is not None:
            found["resubmitted_as"] = newer
        else:
            found["state"] = task_state(found["state"], _bag_states(conn, [param_id]).get(param_id))
    return found


def list_finished_jobs(conn: Connection, campaign_id: int, *, after: int = 0,
                       limit: int = 100) -> list[dict[str, Any]]:
    """Keyset page of a campaign's jobs in `terminated` or `event` state."""
    rows = conn.execute(
        select(jobs).where(jobs.c.campaign_id == campaign_id, jobs.c.id > after,
                           jobs.c.state.in_([JobState.TERMINATED.value, JobState.EVENT.value]))
        .order_by(jobs.c.id).limit(min(limit, MAX_PAGE)))
    return [dict(r._mapping) for r in rows]


# ---------------------------------------------------------------- events


def list_campaign_events(conn: Connection, campaign_id: int, *, include_closed: bool = False,
                         after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Events of a campaign (keyset page by id).

    Open ones by default, plus the open cluster-wide events on the campaign's clusters; with
    `include_closed`, the campaign's whole history without the bookkeeping codes.
    """
    if include_closed:
        where: Any = and_(events.c.campaign_id == campaign_id,
                          events.c.code.not_in(HIDDEN_HISTORY_CODES))
    else:
        where = or_(
            and_(events.c.campaign_id == campaign_id, events.c.state == EventState.OPEN.value),
            and_(events.c.state == EventState.OPEN.value, events.c.campaign_id.is_(None),
                 events.c.class_ == EventClass.CLUSTER.value,
                 events.c.cluster_id.in_(_campaign_cluster_ids(campaign_id))))
    return _event_page(conn, where, after=after, limit=limit)


def list_global_events(conn: Connection, *, after: int = 0, limit: int = 100
                       ) -> list[dict[str, Any]]:
    """Open events that are neither job nor campaign events (cluster-wide and the like)."""
    where = and_(events.c.state == EventState.OPEN.value,
                 events.c.class_.not_in([EventClass.JOB.value, EventClass.CAMPAIGN.value]))
    return _event_page(conn, where, after=after, limit=limit)


def _event_page(conn: Connection, where: Any, *, after: int, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(events, clusters.c.name.label("cluster_name"))
        .outerjoin(clusters, clusters.c.id == events.c.cluster_id)
        .where(where, events.c.id > after).order_by(events.c.id).limit(min(limit, MAX_PAGE)))
    return [dict(r._mapping) for r in rows]


def get_event_row(conn: Connection, event_id: int) -> dict[str, Any]:
    """An event with its cluster name and its campaign's owner (None for global events)."""
    row = conn.execute(
        select(events, clusters.c.name.label("cluster_name"),
               campaigns.c.grid_user.label("campaign_owner"))
        .outerjoin(clusters, clusters.c.id == events.c.cluster_id)
        .outerjoin(campaigns, campaigns.c.id == events.c.campaign_id)
        .where(events.c.id == event_id)).one_or_none()
    if row is None:
        raise NotFound(f"Event {event_id} not found")
    return dict(row._mapping)


# ---------------------------------------------------------------- statistics


def get_campaign_stats(conn: Connection, campaign_id: int, *, now: datetime,
                       window_seconds: int) -> CampaignStats:
    """v3's six statistics, from the same whole-campaign sums as `/stats`'s per-cluster figures
    (`cigri.storage.stats`: maintained by triggers on PostgreSQL, computed on SQLite)."""
    per_cluster = campaign_cluster_stats(conn, campaign_id, now=now,
                                         window_seconds=window_seconds)
    return campaign_stats_from(get_campaign_summary(conn, campaign_id), per_cluster[-1])


def campaign_stats_from(summary: CampaignSummary, whole: ClusterStats) -> CampaignStats:
    """v3's six statistics from a campaign's summary and its whole-campaign `ClusterStats`
    (for a caller that has both already). Throughput is in jobs per second, 1e-16 when nothing
    finished in the window, as v3 returns it."""
    throughput = whole.jobs_per_hour / 3600.0 or 1e-16
    return CampaignStats(
        average_jobs_duration=whole.durations.mean_seconds,
        stddev_jobs_duration=whole.durations.stddev_seconds, jobs_throughput=throughput,
        remaining_time=max(summary.total_jobs - summary.finished_jobs, 0) / throughput,
        failures_rate=whole.failure_rate, resubmit_rate=whole.resubmit_rate)


def list_admission_rules(conn: Connection) -> list[AdmissionRule]:
    """The enabled admission rules, by id."""
    rows = conn.execute(select(admission_rules).where(admission_rules.c.enabled.is_(True))
                        .order_by(admission_rules.c.id))
    return [AdmissionRule(id=r.id, rule=r.rule, value=r.value) for r in rows]


def campaign_gathers_outputs(conn: Connection, campaign_id: int) -> bool:
    """Whether the campaign has an output gathering method on some cluster (the collector's)."""
    return bool(conn.execute(select(exists().where(
        campaign_properties.c.campaign_id == campaign_id,
        campaign_properties.c.name == "output_gathering_method",
        func.lower(campaign_properties.c.value).in_(["collector", "media", "scp", "rsync"]),
    ))).scalar_one())
