"""Statistics (v3 spritz) on both databases: per-cluster and whole-campaign durations, throughput,
failure and resubmission rates, ETA; and grid-usage samples from the OAR emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from cigri.domain.clock import FakeClock
from cigri.storage import stats
from cigri.storage.events import record_event
from cigri.storage.tables import campaigns, clusters, jobs, parameters
from tests.integration.engine_helpers import new_campaign, queue_tasks, start_grid

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def _setup(engine: Engine) -> tuple[int, int, int]:
    with engine.begin() as conn:
        a = conn.execute(insert(clusters).values(name="a", api_url="http://x/")).inserted_primary_key[0]
        b = conn.execute(insert(clusters).values(name="b", api_url="http://y/")).inserted_primary_key[0]
        campaign = conn.execute(insert(campaigns).values(
            grid_user="alice", state="in_treatment", nb_jobs=10)).inserted_primary_key[0]
        params = [conn.execute(insert(parameters).values(
            campaign_id=campaign, name=f"p{i}", param=f"p{i}")).inserted_primary_key[0]
            for i in range(10)]
        # cluster a: 3 jobs of 100, 200, 300 s, stopped 10, 20 and 90 minutes ago
        for param, duration, ago in zip(params[:3], (100, 200, 300), (10, 20, 90), strict=True):
            stop = NOW - timedelta(minutes=ago)
            conn.execute(insert(jobs).values(
                campaign_id=campaign, param_id=param, cluster_id=a, state="terminated",
                start_time=stop - timedelta(seconds=duration), stop_time=stop))
        # cluster b: 1 job of 50 s, one running, one failed with an EXIT_ERROR and a RESUBMIT
        stop = NOW - timedelta(minutes=5)
        conn.execute(insert(jobs).values(
            campaign_id=campaign, param_id=params[3], cluster_id=b, state="terminated",
            start_time=stop - timedelta(seconds=50), stop_time=stop))
        conn.execute(insert(jobs).values(campaign_id=campaign, param_id=params[4], cluster_id=b,
                                         state="running", start_time=NOW))
        failed = conn.execute(insert(jobs).values(
            campaign_id=campaign, param_id=params[5], cluster_id=b, state="event")
        ).inserted_primary_key[0]
        record_event(conn, class_="job", code="EXIT_ERROR", job_id=failed, campaign_id=campaign,
                     cluster_id=b, now=NOW)
        record_event(conn, class_="job", code="RESUBMIT", job_id=failed, campaign_id=campaign,
                     cluster_id=b, state="closed", now=NOW)
    return int(campaign), int(a), int(b)


def test_per_cluster_and_campaign_figures(engine: Engine) -> None:
    campaign, a, b = _setup(engine)
    with engine.begin() as conn:
        per_cluster = stats.campaign_cluster_stats(conn, campaign, now=NOW, window_seconds=3600)
        forecast = stats.campaign_forecast(conn, campaign, now=NOW, window_seconds=3600)
    on_a, on_b, whole = per_cluster
    assert (on_a.cluster_id, on_a.cluster_name, on_a.terminated, on_a.active) == (a, "a", 3, 0)
    assert on_a.durations.mean_seconds == pytest.approx(200)
    assert on_a.durations.stddev_seconds == pytest.approx(81.6497, rel=1e-4)
    assert on_a.jobs_per_hour == pytest.approx(2)  # two stopped within the hour
    assert on_a.failure_rate == 0
    assert (on_b.cluster_id, on_b.terminated, on_b.active) == (b, 1, 1)
    assert (on_b.failures, on_b.resubmissions) == (1, 1)
    assert on_b.failure_rate == pytest.approx(0.5) and on_b.resubmit_rate == pytest.approx(0.5)
    assert whole.cluster_id is None and whole.terminated == 4
    assert whole.durations.mean_seconds == pytest.approx(162.5)
    assert whole.jobs_per_hour == pytest.approx(3)
    assert (forecast.total_tasks, forecast.finished_tasks) == (10, 4)
    assert forecast.eta_seconds == pytest.approx(6 * 3600 / 3)
    assert forecast.progress == pytest.approx(0.4)


def test_no_throughput_means_no_eta(engine: Engine) -> None:
    campaign, _a, _b = _setup(engine)
    with engine.begin() as conn:
        later = stats.campaign_forecast(conn, campaign, now=NOW + timedelta(days=1),
                                        window_seconds=3600)
    assert later.jobs_per_hour == 0 and later.eta_seconds is None


def test_grid_usage_sample_from_the_emulator(pg_engine: Engine, clock: FakeClock) -> None:
    from cigri.daemons.maintenance import sample_grid_usage

    grid = start_grid(pg_engine, clock, clusters=2, nodes=2, cores=2)
    try:
        campaign = new_campaign(grid, ["100", "100.0", "100.00"])
        queue_tasks(grid, campaign)
        grid.runner().run(loops=1)
        grid.advance(1)
        grid.updater().run(loops=1)
        written = sample_grid_usage(pg_engine, grid.factory, now=clock.now(), period_seconds=60)
        again = sample_grid_usage(pg_engine, grid.factory, now=clock.now() + timedelta(seconds=30),
                                  period_seconds=60)
        with pg_engine.begin() as conn:
            samples = stats.latest_grid_usage(conn)
    finally:
        grid.emulator.stop()
    assert (written, again) == (2, 0)
    first, second = samples
    assert (first.max_resources, first.unavailable_resources) == (4, 0)
    assert first.used_by_cigri == first.used_resources == 3
    assert (second.max_resources, second.used_by_cigri) == (4, 0)
