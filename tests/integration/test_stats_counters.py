"""The per campaign and cluster statistics sums that PostgreSQL's triggers maintain (migration 0002)
give the same figures as a recomputation from every job and event, through a job's whole life,
resubmissions, prologue jobs, edits, deletions, cascades and purges; SQLite, which computes them,
gives the same figures as PostgreSQL for the same story."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, create_engine, delete, func, insert, select, text, update
from sqlalchemy.engine import make_url

from cigri.storage import queries, stats
from cigri.storage.db import make_engine
from cigri.storage.events import close_job_events, record_event
from cigri.storage.maintenance import purge_campaigns
from cigri.storage.migrate import alembic_config, upgrade
from cigri.storage.tables import (
    campaign_cluster_event_counts,
    campaign_cluster_job_stats,
    campaign_cluster_throughput,
    campaigns,
    clusters,
    events,
    jobs,
    parameters,
)

# Mid-minute, so the throughput window starts at 11:00:00 while `now - 1 h` is 11:00:30.
NOW = datetime(2026, 1, 10, 12, 0, 30, tzinfo=UTC)
WINDOW = 3600

Snapshot = list[tuple[str, int, list[tuple[Any, ...]]]]


def _figures(per_cluster: list[Any]) -> list[tuple[Any, ...]]:
    return [(c.cluster_id, c.cluster_name, c.terminated, c.active, c.failures, c.resubmissions,
             c.durations.count, c.durations.mean_seconds, c.durations.stddev_seconds,
             c.jobs_per_hour) for c in per_cluster]


def _same(found: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> bool:
    # Sums of floats added and taken away in another order differ in the last bits, and SQLite's
    # julianday() durations by some microseconds.
    return len(found) == len(expected) and all(
        len(a) == len(b) and all(
            x == pytest.approx(y, rel=1e-6, abs=1e-3) if isinstance(y, float) else x == y
            for x, y in zip(a, b, strict=True))
        for a, b in zip(found, expected, strict=True))


def _check(conn: Connection, step: str, snapshot: Snapshot) -> None:
    """The figures /stats shows equal a recomputation from scratch, for every campaign."""
    for campaign_id in conn.execute(select(campaigns.c.id).order_by(campaigns.c.id)).scalars():
        shown = stats.campaign_cluster_stats(conn, campaign_id, now=NOW, window_seconds=WINDOW)
        recomputed = stats.recompute_campaign_cluster_stats(conn, campaign_id, now=NOW,
                                                            window_seconds=WINDOW)
        assert _same(_figures(shown), _figures(recomputed)), (step, campaign_id)
        six = queries.get_campaign_stats(conn, campaign_id, now=NOW, window_seconds=WINDOW)
        whole = shown[-1]
        assert six.average_jobs_duration == whole.durations.mean_seconds
        assert six.failures_rate == whole.failure_rate
        snapshot.append((step, campaign_id, _figures(shown)))


def _job(campaign: int, param: int | None, cluster: int | None, state: str,
         **times: datetime) -> dict[str, Any]:
    return {"campaign_id": campaign, "param_id": param, "cluster_id": cluster, "state": state,
            "start_time": times.get("start"), "stop_time": times.get("stop")}


def _story(engine: Engine, check: Callable[[Connection, str], None]) -> None:
    """Every way the jobs and events of two campaigns change, checked after each step."""
    ago = lambda minutes: NOW - timedelta(minutes=minutes)  # noqa: E731
    with engine.begin() as conn:
        a, b, c = (conn.execute(insert(clusters).values(name=name, api_url=f"http://{name}/"))
                   .inserted_primary_key[0] for name in ("a", "b", "c"))
        x, y = (conn.execute(insert(campaigns).values(grid_user="alice", state="in_treatment",
                                                      nb_jobs=10)).inserted_primary_key[0]
                for _ in range(2))
        px = [conn.execute(insert(parameters).values(campaign_id=x, name=f"p{i}", param=f"p{i}"))
              .inserted_primary_key[0] for i in range(10)]
        py = [conn.execute(insert(parameters).values(campaign_id=y, name=f"q{i}", param=f"q{i}"))
              .inserted_primary_key[0] for i in range(3)]
        conn.execute(insert(jobs), [_job(x, px[i], a if i < 5 else b, "to_launch")
                                    for i in range(8)]
                     + [_job(x, None, a, "running", start=ago(200)),  # prologue
                        _job(x, px[8], None, "to_launch")]  # no cluster yet
                     + [_job(y, p, a, "terminated", start=ago(30 + i), stop=ago(5 + i))
                        for i, p in enumerate(py)])
        record_event(conn, class_="job", code="EXIT_ERROR", campaign_id=y, cluster_id=a, now=NOW)
        check(conn, "insert")

        x_jobs = select(jobs.c.id).where(jobs.c.campaign_id == x, jobs.c.param_id.is_not(None))
        for state in ("launching", "submitted", "remote_waiting", "batch_waiting"):
            conn.execute(update(jobs).where(jobs.c.id.in_(x_jobs)).values(state=state))
        conn.execute(update(jobs).where(jobs.c.id.in_(x_jobs)).values(state="running",
                                                                       start_time=ago(100)))
        check(conn, "launch")

    def job_of(conn: Connection, param: int | None) -> int:
        where = jobs.c.param_id.is_(None) if param is None else jobs.c.param_id == param
        return int(conn.execute(select(func.max(jobs.c.id)).where(where, jobs.c.campaign_id == x))
                   .scalar_one())

    with engine.begin() as conn:
        # Stops 10 min, 60 min 20 s (in the window's first minute, before `now - 1 h`) and
        # 61 min ago; one without a start time (terminated, not timed); the prologue, no task.
        for param, stop in ((px[0], ago(10)), (px[1], NOW - timedelta(seconds=3620)),
                            (px[2], ago(61))):
            conn.execute(update(jobs).where(jobs.c.id == job_of(conn, param))
                         .values(state="terminated", stop_time=stop))
        conn.execute(update(jobs).where(jobs.c.id == job_of(conn, px[3]))
                     .values(state="terminated", start_time=None, stop_time=ago(1)))
        conn.execute(update(jobs).where(jobs.c.id == job_of(conn, None))
                     .values(state="terminated", stop_time=ago(2)))
        check(conn, "terminate")

        failed, fragged = job_of(conn, px[4]), job_of(conn, px[5])
        conn.execute(update(jobs).where(jobs.c.id.in_([failed, fragged])).values(state="event"))
        for code, job, cluster, class_ in (
                ("EXIT_ERROR", failed, a, "job"), ("RESUBMIT", failed, a, "job"),
                ("OAR_AUTO_RESUBMIT", fragged, b, "job"), ("REMOTE_WAITING_FRAG", fragged, b, "job"),
                ("WALLTIME", fragged, None, "job"), ("BLACKLIST", None, b, "cluster")):
            record_event(conn, class_=class_, code=code, job_id=job, campaign_id=x,
                         cluster_id=cluster, now=NOW, state="closed" if code == "RESUBMIT" else "open")
        check(conn, "fail")

        # The resubmission: a second job for the failed parameter, on another cluster.
        conn.execute(insert(jobs), [_job(x, px[4], c, "to_launch")])
        conn.execute(update(jobs).where(jobs.c.id == job_of(conn, px[4]))
                     .values(state="terminated", start_time=ago(8), stop_time=ago(3)))
        check(conn, "resubmit")

        # Edits nothing in cigri makes today, which the sums must follow all the same.
        conn.execute(update(jobs).where(jobs.c.id == job_of(conn, px[0]))
                     .values(stop_time=ago(9), cluster_id=b))
        conn.execute(update(jobs).where(jobs.c.id == job_of(conn, px[1])).values(state="event"))
        conn.execute(update(events).where(events.c.code == "RESUBMIT").values(code="EXIT_ERROR"))
        conn.execute(update(events).where(events.c.code == "WALLTIME").values(cluster_id=c))
        close_job_events(conn, now=NOW, campaign_id=x)
        conn.execute(update(jobs).where(jobs.c.campaign_id == x).values(updated_at=NOW))
        check(conn, "edit")

    with engine.begin() as conn:
        conn.execute(delete(jobs).where(jobs.c.id == failed))  # its events cascade
        conn.execute(delete(parameters).where(parameters.c.id == px[2]))  # its job cascades
        check(conn, "delete")
        conn.execute(delete(clusters).where(clusters.c.id == c))
        check(conn, "delete cluster")
        assert purge_campaigns(conn, [y]) == 1
        check(conn, "purge")


def _run(engine: Engine) -> Snapshot:
    snapshot: Snapshot = []
    _story(engine, lambda conn, step: _check(conn, step, snapshot))
    return snapshot


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_maintained_sums_match_a_recomputation_and_sqlite(pg_engine: Engine,
                                                          sqlite_engine: Engine) -> None:
    on_postgresql = _run(pg_engine)
    on_sqlite = _run(sqlite_engine)
    assert [(step, campaign) for step, campaign, _ in on_postgresql] == [
        (step, campaign) for step, campaign, _ in on_sqlite]
    for (step, campaign, found), (_, _, expected) in zip(on_postgresql, on_sqlite, strict=True):
        assert _same(found, expected), (step, campaign, found, expected)


def test_figures_after_the_story(pg_engine: Engine) -> None:
    """A few figures written out, so a mistake shared by both ways of counting shows."""
    snapshot = _run(pg_engine)
    terminate = {campaign: figures for step, campaign, figures in snapshot if step == "terminate"}
    without_cluster, on_a, on_b, whole = terminate[1]
    # a: p0 (100-10 = 90 min), p1 (100 min - 3620 s), p2 (39 min), p3 (no start): 4 terminated,
    # 3 timed; the prologue neither. In the window: p0, p1 (its first minute) and p3.
    assert on_a[:7] == (1, "a", 4, 1, 0, 0, 3)
    assert on_a[7] == pytest.approx((90 * 60 + 6000 - 3620 + 39 * 60) / 3)
    assert on_a[9] == pytest.approx(3)
    assert (on_b[0], on_b[2], on_b[3]) == (2, 0, 3)
    assert (without_cluster[0], without_cluster[3]) == (None, 1)
    assert (whole[2], whole[3], whole[9]) == (4, 5, pytest.approx(3))
    purged = [campaign for step, campaign, _ in snapshot if step == "purge"]
    assert purged == [1]


def test_purge_leaves_no_sums_rows(pg_engine: Engine) -> None:
    _run(pg_engine)
    with pg_engine.begin() as conn:
        left = {table.name: sorted(set(conn.execute(select(table.c.campaign_id)).scalars()))
                for table in (campaign_cluster_job_stats, campaign_cluster_throughput,
                              campaign_cluster_event_counts)}
    assert left == {"campaign_cluster_job_stats": [1], "campaign_cluster_throughput": [1],
                    "campaign_cluster_event_counts": [1]}


def test_failures_recorded_at_once_do_not_wait_for_each_other(pg_engine: Engine) -> None:
    """Each session counts events in its own row: a second transaction recording a failure of
    the same campaign and cluster goes through while the first is still open."""
    with pg_engine.begin() as conn:
        cluster = conn.execute(insert(clusters).values(name="a", api_url="http://a/")
                               ).inserted_primary_key[0]
        campaign = conn.execute(insert(campaigns).values(
            grid_user="alice", state="in_treatment", nb_jobs=1)).inserted_primary_key[0]
    with pg_engine.connect() as first, pg_engine.connect() as second, first.begin():
        record_event(first, class_="job", code="EXIT_ERROR", campaign_id=campaign,
                     cluster_id=cluster, now=NOW)
        with second.begin():
            # Waiting for the first transaction's row would fail here instead of hanging.
            second.execute(text("SET LOCAL lock_timeout = '5s'"))
            record_event(second, class_="job", code="RESUBMIT", campaign_id=campaign,
                         cluster_id=cluster, now=NOW)
    with pg_engine.begin() as conn:
        whole = stats.campaign_cluster_stats(conn, campaign, now=NOW, window_seconds=WINDOW)[-1]
    assert (whole.failures, whole.resubmissions) == (1, 1)


@pytest.fixture
def bare_pg_url(pg_server_url: str) -> Iterator[str]:
    """An empty PostgreSQL database, for migrating step by step."""
    name = f"cigri_stats_migration_{id(object())}"
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migration_fills_the_sums_from_existing_rows_and_downgrades(bare_pg_url: str) -> None:
    upgrade(bare_pg_url, "0001")
    engine = make_engine(bare_pg_url)
    try:
        # The story needs the 0002 triggers; a smaller history written before them will do.
        with engine.begin() as conn:
            cluster = conn.execute(insert(clusters).values(name="a", api_url="http://a/")
                                   ).inserted_primary_key[0]
            campaign = conn.execute(insert(campaigns).values(
                grid_user="alice", state="in_treatment", nb_jobs=3)).inserted_primary_key[0]
            params = [conn.execute(insert(parameters).values(
                campaign_id=campaign, name=f"p{i}", param=f"p{i}")).inserted_primary_key[0]
                for i in range(3)]
            conn.execute(insert(jobs), [
                _job(campaign, params[0], cluster, "terminated", start=NOW - timedelta(minutes=9),
                     stop=NOW - timedelta(minutes=2)),
                _job(campaign, params[1], cluster, "running", start=NOW),
                _job(campaign, params[2], None, "event")])
            record_event(conn, class_="job", code="EXIT_ERROR", campaign_id=campaign,
                         cluster_id=cluster, now=NOW)
        upgrade(bare_pg_url)
        with engine.begin() as conn:
            shown = stats.campaign_cluster_stats(conn, campaign, now=NOW, window_seconds=WINDOW)
            recomputed = stats.recompute_campaign_cluster_stats(conn, campaign, now=NOW,
                                                                window_seconds=WINDOW)
            rows = [conn.execute(select(func.count()).select_from(table)).scalar_one()
                    for table in (campaign_cluster_job_stats, campaign_cluster_throughput,
                                  campaign_cluster_event_counts)]
        assert _same(_figures(shown), _figures(recomputed))
        assert (shown[-1].terminated, shown[-1].failures, rows) == (1, 1, [1, 1, 1])

        command.downgrade(alembic_config(bare_pg_url), "0001")
        with engine.begin() as conn:
            tables = set(conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
            triggers = set(conn.execute(text(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars())
        assert "campaign_cluster_job_stats" not in tables
        assert not any("stats" in name for name in triggers)
        assert "jobs_count_update" in triggers
        upgrade(bare_pg_url)
    finally:
        engine.dispose()
