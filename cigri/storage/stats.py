"""Statistics SQL: per campaign and cluster counts, durations and throughput for
`cigri.domain.stats`, and the `grid_usage` samples (write, latest per cluster, age, and averaged
per period for the dashboard's charts).

On PostgreSQL the per-cluster sums (terminated tasks, count, sum and sum of squares of their
durations), the terminated tasks per minute and the failure and resubmission events are maintained
by triggers (`campaign_cluster_job_stats`, `campaign_cluster_throughput`,
`campaign_cluster_event_counts`, migration 0002), so a million-job campaign costs a few rows read.
SQLite computes the same sums from `jobs` and `events` (`recompute_campaign_cluster_stats`, which
also checks the maintained ones on PostgreSQL). Active jobs are counted through
`ix_jobs_campaign_state` on both: they are few, and maintaining them would lock a sums row on every
state change of the runner and the updater.

Throughput counts the tasks that stopped since the start of the minute `window_seconds` before
`now` (the per-minute buckets cannot split a minute).

`campaign_cluster_event_counts` grows one row per (campaign, cluster, database session);
`compact_event_counts` (run by `cigri maintenance`) folds them into one row per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    and_,
    case,
    cast,
    delete,
    extract,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from cigri.domain.event_codes import EventCode
from cigri.domain.states import ACTIVE_JOB_STATES, EventClass, JobState
from cigri.domain.stats import (
    CampaignForecast,
    ClusterStats,
    UsagePoint,
    UsageSample,
    duration_stats_from_sums,
    forecast,
    throughput_per_hour,
)
from cigri.storage.tables import (
    bag_of_tasks,
    campaign_cluster_event_counts,
    campaign_cluster_job_stats,
    campaign_cluster_throughput,
    campaigns,
    clusters,
    events,
    grid_usage,
    jobs,
    parameters,
)

# Failures as v3 counts them (server §2.4), minus the internal resubmission records. Migration
# 0002's triggers hold the same list.
_NOT_FAILURES = (
    EventCode.REMOTE_WAITING_FRAG, EventCode.RESUBMIT, EventCode.RESUBMIT_END,
    EventCode.OAR_AUTO_RESUBMIT,
)
# `campaign_cluster_job_stats.cluster_id` of jobs and events without a cluster.
_NO_CLUSTER = 0
# `campaign_cluster_event_counts.backend_pid` of the folded rows (no session has pid 0).
_FOLDED = 0


@dataclass(kw_only=True)
class _Sums:
    """One cluster's (or the whole campaign's) figures before they become a `ClusterStats`."""

    terminated: int = 0
    timed: int = 0
    total: float = 0.0
    squares: float = 0.0
    recent: int = 0
    failures: int = 0
    resubmissions: int = 0
    active: int = 0

    def add(self, other: _Sums) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def window_start(now: datetime, window_seconds: int) -> datetime:
    """The first instant the throughput counts: `window_seconds` before `now`, down to the
    minute (UTC)."""
    return (now - timedelta(seconds=window_seconds)).astimezone(UTC).replace(second=0,
                                                                            microsecond=0)


def campaign_cluster_stats(conn: Connection, campaign_id: int, *, now: datetime,
                           window_seconds: int) -> list[ClusterStats]:
    """One `ClusterStats` per cluster where the campaign has terminated tasks, active jobs,
    failures or resubmissions, then one for the whole campaign (`cluster_id` None). Throughput
    counts tasks that stopped since `window_start`.

    Reads the trigger-maintained sums on PostgreSQL, computes them from the jobs on SQLite."""
    since = window_start(now, window_seconds)
    if conn.dialect.name == "postgresql":
        sums = _maintained_sums(conn, campaign_id, since)
    else:
        sums = _computed_sums(conn, campaign_id, since)
    return _assemble(conn, campaign_id, sums, window_seconds)


def recompute_campaign_cluster_stats(conn: Connection, campaign_id: int, *, now: datetime,
                                     window_seconds: int) -> list[ClusterStats]:
    """`campaign_cluster_stats` from every job and event of the campaign, on either database
    (SQLite's way; on PostgreSQL, a check of the maintained sums)."""
    sums = _computed_sums(conn, campaign_id, window_start(now, window_seconds))
    return _assemble(conn, campaign_id, sums, window_seconds)


def many_campaign_cluster_stats(conn: Connection, campaign_ids: Sequence[int], *, now: datetime,
                                window_seconds: int) -> dict[int, list[ClusterStats]]:
    """`campaign_cluster_stats` of several campaigns (a page of the dashboard's list): on
    PostgreSQL four statements whatever their number, each reading the maintained rows of those
    campaigns only; SQLite computes each campaign's."""
    ids = sorted(set(campaign_ids))
    if conn.dialect.name != "postgresql" or not ids:
        return {campaign_id: campaign_cluster_stats(conn, campaign_id, now=now,
                                                    window_seconds=window_seconds)
                for campaign_id in ids}
    since = window_start(now, window_seconds)
    table, minutes, counts = (campaign_cluster_job_stats, campaign_cluster_throughput,
                              campaign_cluster_event_counts)
    sums: dict[int, dict[int | None, _Sums]] = {campaign_id: {} for campaign_id in ids}
    for row in conn.execute(select(table).where(table.c.campaign_id.in_(ids))):
        sums[row.campaign_id][_cluster_key(row.cluster_id)] = _Sums(
            terminated=int(row.terminated), timed=int(row.timed),
            total=float(row.total_seconds), squares=float(row.squares))
    for campaign_id, cluster_id, count in conn.execute(
            select(minutes.c.campaign_id, minutes.c.cluster_id, func.sum(minutes.c.terminated))
            .where(minutes.c.campaign_id.in_(ids), minutes.c.minute >= since)
            .group_by(minutes.c.campaign_id, minutes.c.cluster_id)):
        sums[campaign_id].setdefault(_cluster_key(cluster_id), _Sums()).recent = int(count or 0)
    for campaign_id, cluster_id, failed, resubmitted in conn.execute(
            select(counts.c.campaign_id, counts.c.cluster_id, func.sum(counts.c.failures),
                   func.sum(counts.c.resubmissions))
            .where(counts.c.campaign_id.in_(ids))
            .group_by(counts.c.campaign_id, counts.c.cluster_id)):
        cluster = sums[campaign_id].setdefault(_cluster_key(cluster_id), _Sums())
        cluster.failures, cluster.resubmissions = int(failed or 0), int(resubmitted or 0)
    active: dict[int, dict[int | None, int]] = {campaign_id: {} for campaign_id in ids}
    for campaign_id, cluster_id, count in conn.execute(
            select(jobs.c.campaign_id, jobs.c.cluster_id, func.count())
            .where(jobs.c.campaign_id.in_(ids),
                   jobs.c.state.in_(sorted(s.value for s in ACTIVE_JOB_STATES)))
            .group_by(jobs.c.campaign_id, jobs.c.cluster_id)):
        active[campaign_id][cluster_id] = int(count)
    names = dict(conn.execute(select(clusters.c.id, clusters.c.name)).all())
    return {campaign_id: _assemble(conn, campaign_id, sums[campaign_id], window_seconds,
                                   active=active[campaign_id], names=names)
            for campaign_id in ids}


def _assemble(conn: Connection, campaign_id: int, sums: dict[int | None, _Sums],
              window_seconds: int, *, active: dict[int | None, int] | None = None,
              names: dict[int | None, str] | None = None) -> list[ClusterStats]:
    if active is None:
        active = _active_jobs(conn, campaign_id)
    for cluster_id, count in active.items():
        sums.setdefault(cluster_id, _Sums()).active += count
    if names is None:
        names = dict(conn.execute(select(clusters.c.id, clusters.c.name)).all())
    found = []
    whole = _Sums()
    for cluster_id in sorted(sums, key=lambda key: key or 0):
        cluster = sums[cluster_id]
        whole.add(cluster)
        # Sums rows outlive what they counted: a cluster is listed while it has something to show.
        if cluster.terminated or cluster.active or cluster.failures or cluster.resubmissions:
            found.append(_stats(campaign_id, cluster_id, names.get(cluster_id), cluster,
                                window_seconds))
    found.append(_stats(campaign_id, None, None, whole, window_seconds))
    return found


def _stats(campaign_id: int, cluster_id: int | None, name: str | None, sums: _Sums,
           window_seconds: int) -> ClusterStats:
    return ClusterStats(
        campaign_id=campaign_id, cluster_id=cluster_id, cluster_name=name,
        terminated=sums.terminated, active=sums.active, failures=sums.failures,
        resubmissions=sums.resubmissions,
        durations=duration_stats_from_sums(sums.timed, sums.total, sums.squares),
        jobs_per_hour=throughput_per_hour(sums.recent, window_seconds))


def _maintained_sums(conn: Connection, campaign_id: int, since: datetime
                     ) -> dict[int | None, _Sums]:
    table, minutes, counts = (campaign_cluster_job_stats, campaign_cluster_throughput,
                              campaign_cluster_event_counts)
    sums = {
        _cluster_key(row.cluster_id): _Sums(
            terminated=int(row.terminated), timed=int(row.timed),
            total=float(row.total_seconds), squares=float(row.squares))
        for row in conn.execute(select(table).where(table.c.campaign_id == campaign_id))}
    # A primary-key range: at most window/60 minutes per cluster.
    recent = conn.execute(
        select(minutes.c.cluster_id, func.sum(minutes.c.terminated))
        .where(minutes.c.campaign_id == campaign_id, minutes.c.minute >= since)
        .group_by(minutes.c.cluster_id))
    for cluster_id, count in recent:
        sums.setdefault(_cluster_key(cluster_id), _Sums()).recent = int(count or 0)
    # One row per database session that recorded events of the campaign.
    events_rows = conn.execute(
        select(counts.c.cluster_id, func.sum(counts.c.failures), func.sum(counts.c.resubmissions))
        .where(counts.c.campaign_id == campaign_id).group_by(counts.c.cluster_id))
    for cluster_id, failed, resubmitted in events_rows:
        cluster = sums.setdefault(_cluster_key(cluster_id), _Sums())
        cluster.failures, cluster.resubmissions = int(failed or 0), int(resubmitted or 0)
    return sums


def compact_event_counts(conn: Connection) -> int:
    """Fold every session's `campaign_cluster_event_counts` rows into its (campaign, cluster)'s
    one folded row (`backend_pid` 0), in one statement; returns how many rows were folded. The
    sums, hence every figure, stay the same. A no-op on SQLite, which keeps no such rows.

    Never waits for a writer: rows a running transaction holds (it is adding to them) and
    campaigns being deleted are skipped, to be folded next time. Waiting instead could deadlock
    with a transaction that adds to two of its session's rows, or with a purge whose cascade waits for
    our rows while our insert's foreign key check waits for its campaign. A writer that meets a
    row this statement deleted waits for the commit, then inserts its row afresh."""
    if conn.dialect.name != "postgresql":
        return 0
    counts = campaign_cluster_event_counts
    key = (counts.c.campaign_id, counts.c.cluster_id, counts.c.backend_pid)
    # The KEY SHARE lock keeps the campaigns from being deleted until we commit, so the folded
    # rows' foreign key check cannot wait; it does not hold up updates of the campaigns.
    live = (select(campaigns.c.id)
            .where(campaigns.c.id.in_(select(counts.c.campaign_id)
                                      .where(counts.c.backend_pid != _FOLDED)))
            .with_for_update(read=True, key_share=True, skip_locked=True)
            .cte("live").prefix_with("MATERIALIZED"))
    locked = (select(*key)
              .where(counts.c.backend_pid != _FOLDED, counts.c.campaign_id.in_(select(live.c.id)))
              .with_for_update(skip_locked=True).cte("locked").prefix_with("MATERIALIZED"))
    moved = (delete(counts)
             .where(*(column == locked.c[column.name] for column in key))
             .returning(counts.c.campaign_id, counts.c.cluster_id, counts.c.failures,
                        counts.c.resubmissions).cte("moved"))
    # Key order, as the triggers write, so two compactions lock the folded rows in one order.
    sums = (select(moved.c.campaign_id, moved.c.cluster_id, literal(_FOLDED),
                   func.sum(moved.c.failures), func.sum(moved.c.resubmissions))
            .group_by(moved.c.campaign_id, moved.c.cluster_id)
            .order_by(moved.c.campaign_id, moved.c.cluster_id))
    fold = pg_insert(counts).from_select(
        ["campaign_id", "cluster_id", "backend_pid", "failures", "resubmissions"], sums)
    fold = fold.on_conflict_do_update(
        index_elements=list(key),
        set_={"failures": counts.c.failures + fold.excluded.failures,
              "resubmissions": counts.c.resubmissions + fold.excluded.resubmissions})
    folded = fold.returning(counts.c.campaign_id).cte("folded")
    # A data-modifying CTE runs to completion whether or not the query reads it.
    return int(conn.execute(select(func.count()).select_from(moved).add_cte(folded)).scalar_one())


def _cluster_key(cluster_id: int) -> int | None:
    return None if cluster_id == _NO_CLUSTER else int(cluster_id)


def _duration(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", jobs.c.stop_time - jobs.c.start_time)
    return (func.julianday(jobs.c.stop_time) - func.julianday(jobs.c.start_time)) * 86400.0


def _computed_sums(conn: Connection, campaign_id: int, since: datetime
                   ) -> dict[int | None, _Sums]:
    duration = cast(_duration(conn), Float)
    done = and_(jobs.c.state == JobState.TERMINATED.value, jobs.c.param_id.is_not(None))
    timed = and_(done, jobs.c.start_time.is_not(None), jobs.c.stop_time.is_not(None))
    rows = conn.execute(
        select(jobs.c.cluster_id,
               func.sum(case((done, 1), else_=0)).label("terminated"),
               func.sum(case((timed, 1), else_=0)).label("timed"),
               func.sum(case((timed, duration), else_=0.0)).label("total"),
               func.sum(case((timed, duration * duration), else_=0.0)).label("squares"),
               func.sum(case((and_(done, jobs.c.stop_time >= since), 1), else_=0))
               .label("recent"))
        .where(jobs.c.campaign_id == campaign_id).group_by(jobs.c.cluster_id))
    sums = {row.cluster_id: _Sums(
        terminated=int(row.terminated or 0), timed=int(row.timed or 0),
        total=float(row.total or 0), squares=float(row.squares or 0), recent=int(row.recent or 0))
        for row in rows}
    failure_rows = conn.execute(
        select(events.c.cluster_id,
               func.sum(case((events.c.code.not_in(_NOT_FAILURES), 1), else_=0)),
               func.sum(case((events.c.code == EventCode.RESUBMIT, 1), else_=0)))
        .where(events.c.campaign_id == campaign_id, events.c.class_ == EventClass.JOB.value)
        .group_by(events.c.cluster_id))
    for cluster_id, failed, resubmitted in failure_rows:
        cluster = sums.setdefault(cluster_id, _Sums())
        cluster.failures, cluster.resubmissions = int(failed or 0), int(resubmitted or 0)
    return sums


def _active_jobs(conn: Connection, campaign_id: int) -> dict[int | None, int]:
    """Active jobs per cluster, through `ix_jobs_campaign_state` (bounded by the taps)."""
    rows = conn.execute(
        select(jobs.c.cluster_id, func.count())
        .where(jobs.c.campaign_id == campaign_id,
               jobs.c.state.in_(sorted(s.value for s in ACTIVE_JOB_STATES)))
        .group_by(jobs.c.cluster_id))
    return {cluster_id: int(count) for cluster_id, count in rows}


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


@dataclass(frozen=True, kw_only=True)
class GridUsageRow:
    """One cluster's usage sample at one date, with the cluster's name (GET /gridusage)."""
    date: datetime
    cluster_id: int
    cluster_name: str | None
    max_resources: int | None
    used_resources: int | None
    used_by_cigri: int | None
    unavailable_resources: int | None


MAX_GRID_USAGE_ROWS = 100_000


def grid_usage_rows(conn: Connection, *, after: datetime | None = None,
                    until: datetime | None = None) -> list[GridUsageRow]:
    """The usage samples dated after `after` and up to `until` (oldest first, at most
    MAX_GRID_USAGE_ROWS); with neither, each cluster's newest sample (a cluster missing from the
    last pass keeps its previous one) dated by the newest pass."""
    if after is None and until is None:
        latest = last_grid_usage_date(conn)
        if latest is None:
            return []
        names = {r.id: r.name for r in conn.execute(select(clusters.c.id, clusters.c.name))}
        return [GridUsageRow(
            date=latest, cluster_id=u.cluster_id, cluster_name=names.get(u.cluster_id),
            max_resources=u.max_resources, used_resources=u.used_resources,
            used_by_cigri=u.used_by_cigri, unavailable_resources=u.unavailable_resources)
            for u in latest_grid_usage(conn)]
    query = (select(grid_usage, clusters.c.name.label("cluster_name"))
             .join(clusters, clusters.c.id == grid_usage.c.cluster_id))
    if after is not None:
        query = query.where(grid_usage.c.date > after)
    if until is not None:
        query = query.where(grid_usage.c.date <= until)
    return [GridUsageRow(
        date=r.date, cluster_id=r.cluster_id, cluster_name=r.cluster_name,
        max_resources=r.max_resources, used_resources=r.used_resources,
        used_by_cigri=r.used_by_cigri, unavailable_resources=r.unavailable_resources)
        for r in conn.execute(query.order_by(grid_usage.c.date).limit(MAX_GRID_USAGE_ROWS))]


def grid_usage_series(conn: Connection, *, since: datetime, until: datetime,
                      period_seconds: int) -> dict[int, list[UsagePoint]]:
    """Each cluster's samples dated after `since` and up to `until`, averaged per period of
    `period_seconds` (oldest first; a period without samples is absent). Averaged in SQL, so a
    day of one-minute samples is (day / period) rows per cluster whatever the sampling rate."""
    period = (cast(extract("epoch", grid_usage.c.date), BigInteger)
              // period_seconds).label("period")
    samples = select(grid_usage, period).where(
        grid_usage.c.date > since, grid_usage.c.date <= until).subquery()
    rows = conn.execute(
        select(samples.c.cluster_id, samples.c.period, func.count().label("samples"),
               func.avg(samples.c.max_resources).label("max_resources"),
               func.avg(samples.c.used_resources).label("used_resources"),
               func.avg(samples.c.used_by_cigri).label("used_by_cigri"),
               func.avg(samples.c.unavailable_resources).label("unavailable_resources"))
        .group_by(samples.c.cluster_id, samples.c.period)
        .order_by(samples.c.cluster_id, samples.c.period))
    series: dict[int, list[UsagePoint]] = {}
    for r in rows:
        series.setdefault(r.cluster_id, []).append(UsagePoint(
            start=datetime.fromtimestamp(int(r.period) * period_seconds, tz=UTC),
            samples=int(r.samples), max_resources=float(r.max_resources or 0),
            used_resources=float(r.used_resources or 0),
            used_by_cigri=float(r.used_by_cigri or 0),
            unavailable_resources=float(r.unavailable_resources or 0)))
    return series


def purge_grid_usage(conn: Connection, *, before: datetime) -> int:
    return int(conn.execute(grid_usage.delete().where(grid_usage.c.date < before)).rowcount)
