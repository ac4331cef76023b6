"""What the runner reads to decide how many tasks to submit (`cigri.domain.injection`): cigri's
jobs running and waiting on a cluster, the recent start latency there, and (through
`cigri.storage.batches`) the campaign's recent task durations and the cluster's newest grid-usage
sample. Every read is bounded: it runs on each runner pass that has queued tasks.

Does not own the jobs or the usage samples (`cigri.storage.jobs`, `cigri.storage.stats`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, bindparam, func, select

from cigri.domain import batches as batch_rules
from cigri.domain import injection
from cigri.domain.states import JobState
from cigri.storage import batches as batch_store
from cigri.storage.tables import jobs, jobs_to_launch

LATENCY_SAMPLE: Final = 100  # newest started jobs of the cluster averaged
_WAITING: Final = (JobState.LAUNCHING.value, JobState.SUBMITTED.value,
                   JobState.REMOTE_WAITING.value)

# An OAR job carries several cigri jobs in temporal grouping: count OAR jobs (distinct remote
# ids), plus the jobs not on OAR yet (launching, no remote id), one each.
_COUNTS = (select(jobs.c.state, func.count(func.distinct(jobs.c.remote_id)),
                  func.count() - func.count(jobs.c.remote_id))
           .where(jobs.c.cluster_id == bindparam("cluster_id"),
                  jobs.c.state.in_((*_WAITING, JobState.RUNNING.value)))
           .group_by(jobs.c.state))
_NEWEST = select(func.max(jobs.c.id))
_STARTS = (select(jobs.c.submission_time, jobs.c.start_time)
           .where(jobs.c.id > bindparam("lowest"), jobs.c.cluster_id == bindparam("cluster_id"),
                  jobs.c.start_time.is_not(None), jobs.c.submission_time.is_not(None))
           .order_by(jobs.c.id.desc()).limit(LATENCY_SAMPLE))


@dataclass(frozen=True, kw_only=True)
class InjectionInputs:
    view: injection.ClusterView
    available: int  # tasks queued on the cluster (every campaign), counted up to the largest pass


def count_cigri_jobs(conn: Connection, *, cluster_id: int) -> tuple[int, int]:
    """(running, waiting) OAR jobs of cigri on the cluster, every campaign; waiting counts the
    jobs being submitted, submitted and waiting on OAR."""
    running = waiting = 0
    for state, remote, unsent in conn.execute(_COUNTS, {"cluster_id": cluster_id}):
        if state == JobState.RUNNING.value:
            running += int(remote) + int(unsent)
        else:
            waiting += int(remote) + int(unsent)
    return running, waiting


def recent_start_cost(conn: Connection, *, cluster_id: int,
                         window: int = batch_store.RECENT_JOBS_WINDOW) -> float | None:
    """What starting a job costs on the cluster (`injection.start_cost`), from its newest started
    jobs among the grid's `window` newest job ids; None when none started there recently."""
    newest = conn.execute(_NEWEST).scalar_one_or_none()
    if newest is None:
        return None
    rows = conn.execute(_STARTS, {"lowest": int(newest) - window, "cluster_id": cluster_id})
    return injection.start_cost((row.submission_time, row.start_time) for row in rows)


def read_inputs(conn: Connection, *, cluster_id: int, campaign_id: int, now: datetime,
                usage_period: float, max_jobs: int) -> InjectionInputs:
    """Everything a policy needs on one cluster (durations: of `campaign_id`, the first campaign
    in queue order), in the caller's transaction."""
    running, waiting = count_cigri_jobs(conn, cluster_id=cluster_id)
    sample = batch_store.find_usage(conn, cluster_id=cluster_id,
                                    since=now - batch_rules.usage_max_age(usage_period))
    spans = batch_store.list_recent_durations(conn, campaign_id=campaign_id,
                                              cluster_id=cluster_id)
    view = injection.cluster_view(
        sample, running=running, waiting=waiting,
        start_latency=recent_start_cost(conn, cluster_id=cluster_id),
        task_seconds=batch_rules.average_seconds(spans))
    queued = (select(jobs_to_launch.c.id).where(jobs_to_launch.c.cluster_id == cluster_id)
              .limit(max(1, max_jobs)).subquery())
    available = int(conn.execute(select(func.count()).select_from(queued)).scalar_one())
    return InjectionInputs(view=view, available=available)


def count_campaign_waiting(conn: Connection, *, cluster_id: int, campaign_id: int) -> int:
    """The campaign's jobs being submitted, submitted or waiting on the cluster (test mode)."""
    return int(conn.execute(
        select(func.count()).where(jobs.c.cluster_id == cluster_id,
                                   jobs.c.campaign_id == campaign_id,
                                   jobs.c.state.in_(_WAITING))).scalar_one())


@dataclass(frozen=True, kw_only=True)
class GroupingInputs:
    """What `temporal_grouping: auto` decides from on one cluster (`cigri.domain.batches`)."""

    task_seconds: float | None  # the campaign's recent mean task duration there
    free: int | None  # resources neither busy nor promised to a waiting cigri job (None: no sample)
    first_starts: dict[int, datetime]  # first start among each probed submission's jobs


def read_grouping_inputs(conn: Connection, *, cluster_id: int, campaign_id: int, now: datetime,
                         usage_period: float, probes: Collection[int]) -> GroupingInputs:
    """The campaign's recent task duration on the cluster, the cluster's free resources now (its
    newest usage sample, cigri's own jobs counted from the database) and, for the `probes`
    (submission ids), the first start among each one's jobs that started."""
    spans = batch_store.list_recent_durations(conn, campaign_id=campaign_id,
                                              cluster_id=cluster_id)
    sample = batch_store.find_usage(conn, cluster_id=cluster_id,
                                    since=now - batch_rules.usage_max_age(usage_period))
    running, waiting = count_cigri_jobs(conn, cluster_id=cluster_id)
    view = injection.cluster_view(sample, running=running, waiting=waiting, start_latency=None,
                                  task_seconds=None)
    first_starts: dict[int, datetime] = {}
    if probes:
        rows = conn.execute(
            select(jobs.c.submission_id, func.min(jobs.c.start_time))
            .where(jobs.c.submission_id.in_(list(probes)), jobs.c.start_time.is_not(None))
            .group_by(jobs.c.submission_id))
        first_starts = {int(submission): start for submission, start in rows if start is not None}
    return GroupingInputs(task_seconds=batch_rules.average_seconds(spans), free=view.free,
                          first_starts=first_starts)
