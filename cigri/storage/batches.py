"""What the runner reads to size temporal-grouping batches (`cigri.domain.batches`): recent task
durations of a campaign on a cluster, the cluster's newest grid-usage sample, and how many tasks
the pass can take. Every read is bounded, since it runs on each runner pass of a grouped campaign.

Does not own the jobs, the queue or the usage samples (`cigri.storage.jobs`, `queue`, `stats`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Connection, func, select

from cigri.domain.states import JobState
from cigri.domain.stats import UsageSample
from cigri.storage.tables import bag_of_tasks, grid_usage, jobs, jobs_to_launch

RECENT_JOBS_WINDOW: Final = 5000  # newest job ids (of the whole grid) looked at for durations
DURATION_SAMPLE: Final = 100  # newest terminated tasks averaged


def list_recent_durations(conn: Connection, *, campaign_id: int, cluster_id: int,
                          sample: int = DURATION_SAMPLE, window: int = RECENT_JOBS_WINDOW
                          ) -> list[tuple[datetime | None, datetime | None]]:
    """(start, stop) of the campaign's newest terminated tasks on the cluster, among the grid's
    `window` newest job ids: at most `window` rows are read whatever the campaign's size (a
    campaign with no task among them is treated as having no duration yet)."""
    newest = conn.execute(select(func.max(jobs.c.id))).scalar_one_or_none()
    if newest is None:
        return []
    # The id range makes this a bounded backward scan of the primary key, not a read of every
    # terminated job of a million-job campaign through (campaign_id, state).
    rows = conn.execute(
        select(jobs.c.start_time, jobs.c.stop_time)
        .where(jobs.c.id > int(newest) - window, jobs.c.campaign_id == campaign_id,
               jobs.c.cluster_id == cluster_id, jobs.c.state == JobState.TERMINATED.value,
               jobs.c.param_id.is_not(None))
        .order_by(jobs.c.id.desc()).limit(sample))
    return [(row.start_time, row.stop_time) for row in rows]


def find_usage(conn: Connection, *, cluster_id: int, since: datetime) -> UsageSample | None:
    """The cluster's newest grid-usage sample taken at or after `since`, if any."""
    row = conn.execute(
        select(grid_usage).where(grid_usage.c.cluster_id == cluster_id, grid_usage.c.date >= since)
        .order_by(grid_usage.c.date.desc()).limit(1)).first()
    if row is None:
        return None
    return UsageSample(cluster_id=row.cluster_id, max_resources=row.max_resources or 0,
                       used_resources=row.used_resources or 0,
                       unavailable_resources=row.unavailable_resources or 0,
                       used_by_cigri=row.used_by_cigri or 0)


def count_queued_tasks(conn: Connection, *, campaign_id: int, cluster_id: int, limit: int) -> int:
    """Tasks of the campaign queued on the cluster, counted up to `limit` (the pass's rate)."""
    queued = (select(jobs_to_launch.c.id)
              .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
              .where(jobs_to_launch.c.cluster_id == cluster_id,
                     bag_of_tasks.c.campaign_id == campaign_id)
              .limit(limit).subquery())
    return int(conn.execute(select(func.count()).select_from(queued)).scalar_one())
