"""Temporal grouping: how one runner pass sizes its batches (PostgreSQL and SQLite, the OAR
emulator over HTTP): RUNNER_TEMPORAL_GROUPING_DURATION ÷ the campaign's recent task duration on the
cluster, capped, small while no duration is known, spread over the free cores of the cluster's
newest grid-usage sample."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select

from cigri.domain.clock import FakeClock
from cigri.domain.stats import UsageSample
from cigri.storage import batches as batch_store
from cigri.storage.stats import record_grid_usage
from cigri.storage.tables import jobs, parameters, taps
from tests.integration.engine_helpers import (
    Grid,
    job_rows,
    make_settings,
    new_campaign,
    queue_tasks,
    start_grid,
)


@pytest.fixture
def grid(engine: Engine, clock: FakeClock) -> Iterator[Grid]:
    grid = start_grid(engine, clock, nodes=4, cores=4)
    try:
        yield grid
    finally:
        grid.emulator.stop()


def _finished(grid: Grid, campaign: int, *, count: int, seconds: int) -> None:
    """`count` tasks of the campaign (its last parameters) terminated on the cluster, each having
    run `seconds` seconds."""
    now = grid.clock.now()
    with grid.engine.begin() as conn:
        params = list(conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == campaign).order_by(parameters.c.id.desc())
            .limit(count)).scalars())
        conn.execute(insert(jobs), [{
            "campaign_id": campaign, "param_id": param, "cluster_id": grid.clusters[0].id,
            "state": "terminated", "return_code": 0, "remote_id": 900_000 + param,
            "start_time": now - timedelta(seconds=seconds + 60),
            "stop_time": now - timedelta(seconds=60)} for param in params])


def _batch_sizes(grid: Grid, campaign: int) -> list[int]:
    sizes = Counter(row.remote_id for row in job_rows(grid.engine, campaign)
                    if row.tag == "batch")
    return sorted(sizes.values(), reverse=True)


def _grouped(grid: Grid, tasks: int) -> int:
    campaign = new_campaign(grid, [f"t{i}" for i in range(tasks + 4)], temporal_grouping="true")
    queue_tasks(grid, campaign, limit=tasks)
    return campaign


def test_with_no_finished_task_batches_start_at_the_initial_tap_rate(grid: Grid) -> None:
    settings = make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=3)
    campaign = _grouped(grid, 12)
    with grid.engine.begin() as conn:  # the tap has grown to 12 tasks a pass
        conn.execute(insert(taps).values(cluster_id=grid.clusters[0].id, campaign_id=campaign,
                                         state="open", rate=12))
    grid.runner(settings=settings).run(loops=1)
    assert _batch_sizes(grid, campaign) == [3, 3, 3, 3]  # not one batch of 12 unknown tasks


def test_a_batch_holds_the_target_duration_divided_by_the_average_task(grid: Grid) -> None:
    settings = make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=9,
                             RUNNER_TEMPORAL_GROUPING_DURATION=300,
                             RUNNER_MAX_TEMPORAL_GROUPED_JOBS=50)
    campaign = _grouped(grid, 9)
    _finished(grid, campaign, count=4, seconds=100)  # 300 s ÷ 100 s: three tasks a batch
    grid.runner(settings=settings).run(loops=1)
    assert _batch_sizes(grid, campaign) == [3, 3, 3]
    oar = grid.factory(grid.clusters[0])
    for remote_id in {row.remote_id for row in job_rows(grid.engine, campaign)
                      if row.tag == "batch"}:  # one task's walltime (1 h) x three
        assert oar.get_job(remote_id, user="testuser").walltime_seconds == 3 * 3600


def test_short_tasks_fill_batches_up_to_the_max(grid: Grid) -> None:
    settings = make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=9,
                             RUNNER_TEMPORAL_GROUPING_DURATION=900,
                             RUNNER_MAX_TEMPORAL_GROUPED_JOBS=4)
    campaign = _grouped(grid, 9)
    _finished(grid, campaign, count=3, seconds=2)
    grid.runner(settings=settings).run(loops=1)
    assert _batch_sizes(grid, campaign) == [3, 3, 3]  # at most 4 a batch, evened out


def test_a_pass_spreads_its_tasks_over_the_free_cores(grid: Grid) -> None:
    settings = make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=12,
                             RUNNER_TEMPORAL_GROUPING_DURATION=900,
                             RUNNER_MAX_TEMPORAL_GROUPED_JOBS=50, GRID_USAGE_UPDATE_PERIOD=60)
    campaign = _grouped(grid, 12)
    _finished(grid, campaign, count=4, seconds=10)  # 90 tasks would fit in one batch
    cluster = grid.clusters[0].id
    with grid.engine.begin() as conn:  # an old sample (ignored) says 12 free, the newest 4
        record_grid_usage(conn, [UsageSample(cluster_id=cluster, max_resources=16,
                                             used_resources=4, unavailable_resources=0,
                                             used_by_cigri=0)],
                          now=grid.clock.now() - timedelta(hours=1))
        record_grid_usage(conn, [UsageSample(cluster_id=cluster, max_resources=16,
                                             used_resources=10, unavailable_resources=2,
                                             used_by_cigri=0)],
                          now=grid.clock.now() - timedelta(minutes=1))
    grid.runner(settings=settings).run(loops=1)
    assert _batch_sizes(grid, campaign) == [3, 3, 3, 3]  # 4 free cores: four batches, not one


def test_a_stale_usage_sample_does_not_spread(grid: Grid) -> None:
    settings = make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=6,
                             RUNNER_TEMPORAL_GROUPING_DURATION=900, GRID_USAGE_UPDATE_PERIOD=60)
    campaign = _grouped(grid, 6)
    _finished(grid, campaign, count=2, seconds=10)
    with grid.engine.begin() as conn:
        record_grid_usage(conn, [UsageSample(cluster_id=grid.clusters[0].id, max_resources=16,
                                             used_resources=0, unavailable_resources=0,
                                             used_by_cigri=0)],
                          now=grid.clock.now() - timedelta(hours=1))
    grid.runner(settings=settings).run(loops=1)
    assert _batch_sizes(grid, campaign) == [6]


def test_durations_are_read_among_the_newest_jobs_only(grid: Grid) -> None:
    campaign = _grouped(grid, 2)
    _finished(grid, campaign, count=3, seconds=50)
    cluster = grid.clusters[0].id
    with grid.engine.begin() as conn:
        spans = batch_store.list_recent_durations(conn, campaign_id=campaign, cluster_id=cluster)
        assert [(stop - start).total_seconds() for start, stop in spans if start and stop] \
            == [50.0] * 3
        assert batch_store.list_recent_durations(conn, campaign_id=campaign, cluster_id=cluster,
                                                 window=0) == []
        assert batch_store.count_queued_tasks(conn, campaign_id=campaign, cluster_id=cluster,
                                              limit=1) == 1
        assert batch_store.count_queued_tasks(conn, campaign_id=campaign, cluster_id=cluster,
                                              limit=10) == 2
