"""Statistics SQL: per campaign and cluster counts, durations and throughput for
`cigri.domain.stats`, and the `grid_usage` samples (write, latest per cluster, age).

Durations are summed in SQL (count, sum, sum of squares) so a million-job campaign costs one
aggregate query per campaign, not a million rows in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Float, and_, case, cast, func, insert, select

from cigri.domain.states import ACTIVE_JOB_STATES, EventClass, JobState
from cigri.domain.stats import (
    CampaignForecast,
    ClusterStats,
    UsageSample,
    duration_stats_from_sums,
    forecast,
    throughput_per_hour,
)
from cigri.storage.tables import bag_of_tasks, clusters, events, grid_usage, jobs, parameters

# Failures as v3 counts them (server §2.4), minus the internal resubmission records.
_NOT_FAILURES = ("REMOTE_WAITING_FRAG", "RESUBMIT", "RESUBMIT_END", "OAR_AUTO_RESUBMIT")


def _duration(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", jobs.c.stop_time - jobs.c.start_time)
    return (func.julianday(jobs.c.stop_time) - func.julianday(jobs.c.start_time)) * 86400.0


def campaign_cluster_stats(conn: Connection, campaign_id: int, *, now: datetime,
                           window_seconds: int) -> list[ClusterStats]:
    """One `ClusterStats` per cluster the campaign has jobs on, then one for the whole campaign
    (`cluster_id` None). Throughput counts jobs that stopped within `window_seconds` before `now`."""
    duration = cast(_duration(conn), Float)
    done = and_(jobs.c.state == JobState.TERMINATED.value, jobs.c.param_id.is_not(None))
    timed = and_(done, jobs.c.start_time.is_not(None), jobs.c.stop_time.is_not(None))
    since = now - timedelta(seconds=window_seconds)
    rows = conn.execute(
        select(jobs.c.cluster_id,
               func.sum(case((done, 1), else_=0)).label("terminated"),
               func.sum(case((jobs.c.state.in_([s.value for s in ACTIVE_JOB_STATES]), 1),
                             else_=0)).label("active"),
               func.sum(case((timed, 1), else_=0)).label("timed"),
               func.sum(case((timed, duration), else_=None)).label("total"),
               func.sum(case((timed, duration * duration), else_=None)).label("squares"),
               func.sum(case((and_(done, jobs.c.stop_time >= since), 1), else_=0))
               .label("recent"))
        .where(jobs.c.campaign_id == campaign_id).group_by(jobs.c.cluster_id)
    ).all()
    failure_rows = conn.execute(
        select(events.c.cluster_id,
               func.sum(case((events.c.code.not_in(_NOT_FAILURES), 1), else_=0)),
               func.sum(case((events.c.code == "RESUBMIT", 1), else_=0)))
        .where(events.c.campaign_id == campaign_id, events.c.class_ == EventClass.JOB.value)
        .group_by(events.c.cluster_id)).all()
    failures = {row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in failure_rows}
    names = dict(conn.execute(select(clusters.c.id, clusters.c.name)).all())
    found = []
    totals = {"terminated": 0, "active": 0, "timed": 0, "total": 0.0, "squares": 0.0, "recent": 0}
    for row in sorted(rows, key=lambda r: r.cluster_id or 0):
        failed, resubmitted = failures.get(row.cluster_id, (0, 0))
        found.append(_stats(campaign_id, row.cluster_id, names.get(row.cluster_id), row,
                            failed, resubmitted, window_seconds))
        for key in totals:
            totals[key] += getattr(row, key) or 0
    all_failed = sum(f for f, _ in failures.values())
    all_resubmitted = sum(r for _, r in failures.values())
    found.append(ClusterStats(
        campaign_id=campaign_id, cluster_id=None, cluster_name=None,
        terminated=int(totals["terminated"]), active=int(totals["active"]),
        failures=all_failed, resubmissions=all_resubmitted,
        durations=duration_stats_from_sums(int(totals["timed"]), float(totals["total"]),
                                           float(totals["squares"])),
        jobs_per_hour=throughput_per_hour(int(totals["recent"]), window_seconds)))
    return found


def _stats(campaign_id: int, cluster_id: int | None, name: str | None, row: Any, failed: int,
           resubmitted: int, window_seconds: int) -> ClusterStats:
    return ClusterStats(
        campaign_id=campaign_id, cluster_id=cluster_id, cluster_name=name,
        terminated=int(row.terminated or 0), active=int(row.active or 0), failures=failed,
        resubmissions=resubmitted,
        durations=duration_stats_from_sums(int(row.timed or 0), row.total, row.squares),
        jobs_per_hour=throughput_per_hour(int(row.recent or 0), window_seconds))


def campaign_forecast(conn: Connection, campaign_id: int, *, now: datetime,
                      window_seconds: int) -> CampaignForecast:
    """Progress and ETA: parameters with a terminated job are finished; the rest are remaining."""
    total = int(conn.execute(select(func.count()).select_from(parameters)
                             .where(parameters.c.campaign_id == campaign_id)).scalar_one())
    finished = int(conn.execute(
        select(func.count(func.distinct(jobs.c.param_id))).where(
            jobs.c.campaign_id == campaign_id, jobs.c.state == JobState.TERMINATED.value,
            jobs.c.param_id.is_not(None))).scalar_one())
    recent = int(conn.execute(
        select(func.count()).select_from(jobs).where(
            jobs.c.campaign_id == campaign_id, jobs.c.state == JobState.TERMINATED.value,
            jobs.c.param_id.is_not(None),
            jobs.c.stop_time >= now - timedelta(seconds=window_seconds))).scalar_one())
    return forecast(campaign_id, total_tasks=total, finished_tasks=finished,
                    jobs_per_hour=throughput_per_hour(recent, window_seconds))


def count_waiting_tasks(conn: Connection, campaign_id: int) -> int:
    return int(conn.execute(select(func.count()).select_from(bag_of_tasks)
                            .where(bag_of_tasks.c.campaign_id == campaign_id)).scalar_one())


def list_running_remote_ids(conn: Connection, cluster_id: int) -> list[int]:
    """OAR ids of the cigri jobs running on a cluster (for `used_by_cigri`)."""
    rows = conn.execute(select(jobs.c.remote_id).where(
        jobs.c.cluster_id == cluster_id, jobs.c.state == JobState.RUNNING.value,
        jobs.c.remote_id.is_not(None)).distinct())
    return [int(row.remote_id) for row in rows]


def record_grid_usage(conn: Connection, samples: Sequence[UsageSample], *, now: datetime) -> None:
    """Insert one sample per cluster, all with the same date."""
    if samples:
        conn.execute(insert(grid_usage), [{
            "date": now, "cluster_id": s.cluster_id, "max_resources": s.max_resources,
            "used_resources": s.used_resources,
            "unavailable_resources": s.unavailable_resources, "used_by_cigri": s.used_by_cigri,
        } for s in samples])


def last_grid_usage_date(conn: Connection) -> datetime | None:
    return conn.execute(select(func.max(grid_usage.c.date))).scalar_one_or_none()


def latest_grid_usage(conn: Connection) -> list[UsageSample]:
    """The newest sample of every cluster (for gridclusters -u)."""
    newest = (select(grid_usage.c.cluster_id, func.max(grid_usage.c.date).label("date"))
              .group_by(grid_usage.c.cluster_id).subquery())
    rows = conn.execute(select(grid_usage).join(
        newest, and_(grid_usage.c.cluster_id == newest.c.cluster_id,
                     grid_usage.c.date == newest.c.date)).order_by(grid_usage.c.cluster_id))
    return [UsageSample(cluster_id=r.cluster_id, max_resources=r.max_resources or 0,
                        used_resources=r.used_resources or 0,
                        unavailable_resources=r.unavailable_resources or 0,
                        used_by_cigri=r.used_by_cigri or 0) for r in rows]


def purge_grid_usage(conn: Connection, *, before: datetime) -> int:
    return int(conn.execute(grid_usage.delete().where(grid_usage.c.date < before)).rowcount)
