"""SQL behind `/metrics`: the daemons' counters (`daemon_counters`, added to once per pass) and
the grid state read from small or maintained tables, never from a scan of `jobs`.

What a scrape reads (each bounded whatever the number of jobs):
- terminated task jobs per cluster: the trigger-kept sums of `campaign_cluster_job_stats`
  (SQLite: counted from `jobs`);
- jobs in every other state per cluster: one index-only count per (cluster, state) on
  `ix_jobs_cluster_state` (active jobs are bounded by the taps; `event` jobs by the failures);
- tasks in the bag: the sums of `bag_task_counts` (migration 0005; SQLite: counted);
- tasks queued per cluster (`jobs_to_launch`, bounded), open taps' rates, campaigns by state,
  open events by class, open cluster blacklists, stress factors, heartbeats.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    and_,
    column,
    delete,
    func,
    literal,
    select,
    true,
    values,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cigri.domain.events import BLACKLIST
from cigri.domain.heartbeats import Heartbeat
from cigri.domain.states import EventState, JobState, TapState
from cigri.domain.telemetry import Labels, Series
from cigri.storage.heartbeats import list_heartbeats
from cigri.storage.tables import (
    bag_of_tasks,
    bag_task_counts,
    campaign_cluster_job_stats,
    campaigns,
    clusters,
    daemon_counters,
    events,
    jobs,
    jobs_to_launch,
    taps,
)

# Counted per (cluster, state) through the index; `terminated` comes from the maintained sums.
_COUNTED_STATES = tuple(state.value for state in JobState if state is not JobState.TERMINATED)


@dataclass(kw_only=True)
class ClusterFigures:
    name: str
    enabled: bool
    stress_factor: float
    jobs: dict[str, int] = field(default_factory=dict)  # job state -> count
    queued: int = 0  # tasks in jobs_to_launch
    tap_rate: int = 0  # sum of the open taps' rates
    blacklisted_since: datetime | None = None  # oldest open whole-cluster BLACKLIST


@dataclass(kw_only=True)
class GridFigures:
    clusters: list[ClusterFigures]
    campaigns: dict[str, int]  # campaign state -> count
    tasks_in_bag: int
    open_events: dict[str, int]  # event class -> open events
    heartbeats: list[Heartbeat]
    campaign_tasks: dict[int, int] | None = None  # campaign id -> tasks in the bag (opt-in)
    user_campaigns: dict[tuple[str, str], int] | None = None  # (user, state) -> n (opt-in)


def encode_labels(labels: Labels) -> str:
    return json.dumps([list(pair) for pair in labels], separators=(",", ":"))


@functools.lru_cache(maxsize=4096)  # a grid has a few hundred series; each scrape reads them all
def decode_labels(text: str) -> Labels:
    return tuple((str(key), str(value)) for key, value in json.loads(text))


def add_counters(conn: Connection, deltas: Mapping[Series, float]) -> None:
    """Add `deltas` to their series, in ONE statement (a multi-row upsert, in key order so two
    daemons flushing at once lock the rows in the same order and cannot deadlock)."""
    if not deltas:
        return
    rows = sorted(({"name": name, "labels": encode_labels(labels), "value": value}
                   for (name, labels), value in deltas.items()),
                  key=lambda row: (row["name"], row["labels"]))
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(daemon_counters).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[daemon_counters.c.name, daemon_counters.c.labels],
        set_={"value": daemon_counters.c.value + statement.excluded.value})
    conn.execute(statement)


_COUNTERS = select(daemon_counters.c.name, daemon_counters.c.labels, daemon_counters.c.value)


def read_counters(conn: Connection) -> dict[Series, float]:
    return {(name, decode_labels(labels)): float(value)
            for name, labels, value in conn.execute(_COUNTERS)}


# A scrape's statements, built once (building and cache-keying one costs about as much CPU as
# running it on these small tables).
_CLUSTERS = select(clusters.c.id, clusters.c.name, clusters.c.enabled, clusters.c.stress_factor)
_QUEUED = (select(jobs_to_launch.c.cluster_id, func.count())
           .group_by(jobs_to_launch.c.cluster_id))
_TAP_RATES = (select(taps.c.cluster_id, func.sum(taps.c.rate))
              .where(taps.c.state == TapState.OPEN.value).group_by(taps.c.cluster_id))
_BLACKLISTED_SINCE = (select(events.c.cluster_id, func.min(events.c.date_open))
                      .where(events.c.code == BLACKLIST, events.c.state == EventState.OPEN.value,
                             events.c.campaign_id.is_(None), events.c.cluster_id.is_not(None))
                      .group_by(events.c.cluster_id))
_CAMPAIGN_STATES = select(campaigns.c.state, func.count()).group_by(campaigns.c.state)
_OPEN_EVENTS = (select(events.c.class_, func.count())
                .where(events.c.state == EventState.OPEN.value).group_by(events.c.class_))
_USER_CAMPAIGNS = (select(campaigns.c.grid_user, campaigns.c.state, func.count())
                   .group_by(campaigns.c.grid_user, campaigns.c.state))
_BAG_MAINTAINED = (select(bag_task_counts.c.campaign_id, func.sum(bag_task_counts.c.tasks))
                   .group_by(bag_task_counts.c.campaign_id))
_BAG_COUNTED = (select(bag_of_tasks.c.campaign_id, func.count())
                .group_by(bag_of_tasks.c.campaign_id))
_JOBS_COUNTED = (select(jobs.c.cluster_id, jobs.c.state, func.count())
                 .where(jobs.c.cluster_id.is_not(None)).group_by(jobs.c.cluster_id, jobs.c.state))
_TERMINATED = (select(campaign_cluster_job_stats.c.cluster_id,
                      func.sum(campaign_cluster_job_stats.c.terminated))
               .group_by(campaign_cluster_job_stats.c.cluster_id))


def _per_state_counts() -> Any:
    """One index-only count per (cluster, state other than terminated) on `ix_jobs_cluster_state`:
    a correlated subquery per pair, which the planner cannot turn into a scan of `jobs`."""
    states = values(column("state", String), name="states").data(
        [(state,) for state in _COUNTED_STATES])
    pairs = (select(clusters.c.id.label("cluster_id"), states.c.state)
             .select_from(clusters.join(states, true())).subquery("pairs"))
    count = (select(func.count()).select_from(jobs)
             .where(and_(jobs.c.cluster_id == pairs.c.cluster_id, jobs.c.state == pairs.c.state))
             .scalar_subquery())
    return select(pairs.c.cluster_id, pairs.c.state, count.label("n"))


_PER_STATE = _per_state_counts()


def read_grid_figures(conn: Connection, *, per_campaign: bool = False,
                      per_user: bool = False) -> GridFigures:
    """The grid's state for one scrape (run it in one transaction for one snapshot)."""
    by_id = {row.id: ClusterFigures(name=row.name, enabled=bool(row.enabled),
                                    stress_factor=float(row.stress_factor or 0))
             for row in conn.execute(_CLUSTERS)}
    for cluster_id, state, count in _job_counts(conn):
        if cluster_id in by_id:
            by_id[cluster_id].jobs[state] = by_id[cluster_id].jobs.get(state, 0) + int(count)
    for cluster_id, count in conn.execute(_QUEUED):
        if cluster_id in by_id:
            by_id[cluster_id].queued = int(count)
    for cluster_id, rate in conn.execute(_TAP_RATES):
        if cluster_id in by_id:
            by_id[cluster_id].tap_rate = int(rate or 0)
    for cluster_id, since in conn.execute(_BLACKLISTED_SINCE):
        if cluster_id in by_id:
            by_id[cluster_id].blacklisted_since = since
    campaign_states = {state: int(count) for state, count in conn.execute(_CAMPAIGN_STATES)}
    open_events = {class_: int(count) for class_, count in conn.execute(_OPEN_EVENTS)}
    bag = {int(campaign): int(tasks or 0) for campaign, tasks in conn.execute(
        _BAG_MAINTAINED if conn.dialect.name == "postgresql" else _BAG_COUNTED)}
    figures = GridFigures(
        clusters=sorted(by_id.values(), key=lambda cluster: cluster.name),
        campaigns=campaign_states, tasks_in_bag=sum(bag.values()), open_events=open_events,
        heartbeats=list_heartbeats(conn))
    if per_campaign:
        figures.campaign_tasks = {campaign: tasks for campaign, tasks in bag.items() if tasks}
    if per_user:
        figures.user_campaigns = {(user, state): int(count)
                                  for user, state, count in conn.execute(_USER_CAMPAIGNS)}
    return figures


def _job_counts(conn: Connection) -> list[tuple[int, str, int]]:
    """(cluster id, state, jobs). On PostgreSQL: terminated task jobs from the maintained sums,
    every other state counted per (cluster, state) through the index. SQLite counts them all."""
    if conn.dialect.name != "postgresql":
        return [(int(c), str(s), int(n)) for c, s, n in conn.execute(_JOBS_COUNTED)]
    found = [(int(c), JobState.TERMINATED.value, int(n)) for c, n in conn.execute(_TERMINATED)]
    found.extend((int(c), str(s), int(n)) for c, s, n in conn.execute(_PER_STATE) if n)
    return found


def compact_bag_counts(conn: Connection) -> int:
    """Fold every session's `bag_task_counts` rows into its campaign's one folded row
    (`backend_pid` 0) in one statement, then drop the folded rows that reached 0 (the campaign's
    bag is empty); returns how many rows went. The sums stay the same. A no-op on SQLite.

    Never waits for a writer, as `cigri.storage.stats.compact_event_counts`: rows a running
    transaction holds, and campaigns being deleted, are left for the next run. Only this
    statement writes folded rows (the triggers write their session's row)."""
    if conn.dialect.name != "postgresql":
        return 0
    counts = bag_task_counts
    live = (select(campaigns.c.id)
            .where(campaigns.c.id.in_(select(counts.c.campaign_id)
                                      .where(counts.c.backend_pid != 0)))
            .with_for_update(read=True, key_share=True, skip_locked=True)
            .cte("live").prefix_with("MATERIALIZED"))
    locked = (select(counts.c.campaign_id, counts.c.backend_pid)
              .where(counts.c.backend_pid != 0, counts.c.campaign_id.in_(select(live.c.id)))
              .with_for_update(skip_locked=True).cte("locked").prefix_with("MATERIALIZED"))
    moved = (delete(counts)
             .where(counts.c.campaign_id == locked.c.campaign_id,
                    counts.c.backend_pid == locked.c.backend_pid)
             .returning(counts.c.campaign_id, counts.c.tasks).cte("moved"))
    sums = (select(moved.c.campaign_id, literal(0), func.sum(moved.c.tasks))
            .group_by(moved.c.campaign_id).having(func.sum(moved.c.tasks) != 0)
            .order_by(moved.c.campaign_id))
    fold = pg_insert(counts).from_select(["campaign_id", "backend_pid", "tasks"], sums)
    fold = fold.on_conflict_do_update(
        index_elements=[counts.c.campaign_id, counts.c.backend_pid],
        set_={"tasks": counts.c.tasks + fold.excluded.tasks})
    folded = fold.returning(counts.c.campaign_id).cte("folded")
    # A data-modifying CTE runs to completion whether or not the query reads it.
    moved_rows = int(conn.execute(select(func.count()).select_from(moved)
                                  .add_cte(folded)).scalar_one())
    # Folded rows are written by this function only: an emptied bag leaves no row behind.
    emptied = conn.execute(delete(counts).where(counts.c.backend_pid == 0, counts.c.tasks == 0))
    return moved_rows + int(emptied.rowcount)
