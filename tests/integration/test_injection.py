"""Injection policies through the runner (PostgreSQL and SQLite, the OAR emulator over HTTP): a
campaign on a cluster with free cores has its first submissions out in one runner pass, as one
array job, then the waiting queue is kept at its reference; a cluster's own policy overrides the
grid default."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from cigri.daemons.maintenance import sample_grid_usage
from cigri.domain.clock import FakeClock
from cigri.emulator import Workload
from cigri.storage.clusters import set_cluster_fields
from cigri.storage.injection import count_cigri_jobs
from cigri.storage.tables import taps
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
    grid = start_grid(engine, clock, nodes=4, cores=4,  # 16 free cores
                      workload=Workload(duration="fixed:100"))
    try:
        yield grid
    finally:
        grid.emulator.stop()


def _sample(grid: Grid) -> None:
    """What almighty's maintenance does every GRID_USAGE_UPDATE_PERIOD: read the cluster's
    resources and running jobs from OAR into a grid-usage sample."""
    assert sample_grid_usage(grid.engine, grid.clients, now=grid.clock.now(), period_seconds=60,
                             force=True) == 1


def _submitted(grid: Grid, campaign: int) -> int:
    return sum(1 for row in job_rows(grid.engine, campaign) if row.remote_id is not None)


def _submissions(grid: Grid, campaign: int) -> int:
    """OAR submissions (array jobs, one POST each) of the campaign."""
    return len({row.submission_id for row in job_rows(grid.engine, campaign)})


def test_a_campaign_on_free_cores_has_all_its_first_submissions_out_in_one_pass(
        grid: Grid) -> None:
    settings = make_settings(RUNNER_INJECTION_POLICY="capacity", RUNNER_WAITING_REFERENCE=4)
    _sample(grid)
    campaign = new_campaign(grid, [f"t{i}" for i in range(12)])
    queue_tasks(grid, campaign)
    grid.runner(settings=settings).run(loops=1)
    assert _submitted(grid, campaign) == 12  # all of them: 16 cores are free (tap: 3)
    assert _submissions(grid, campaign) == 1
    grid.advance(1)
    grid.updater(settings=settings).run(loops=1)
    with grid.engine.begin() as conn:
        assert count_cigri_jobs(conn, cluster_id=grid.clusters[0].id) == (12, 0)


def test_capacity_fills_the_free_cores_plus_the_reference_then_keeps_the_reference(
        grid: Grid) -> None:
    settings = make_settings(RUNNER_INJECTION_POLICY="capacity", RUNNER_WAITING_REFERENCE=4)
    _sample(grid)
    campaign = new_campaign(grid, [f"t{i}" for i in range(100)])
    queue_tasks(grid, campaign)
    runner = grid.runner(settings=settings)
    runner.run(loops=1)
    assert _submitted(grid, campaign) == 16 + 4
    assert _submissions(grid, campaign) == 1
    with grid.engine.begin() as conn:  # the meta-scheduler queues up to 10 × this for it:
        # ten passes of consumption (the reference, 4, while no duration is known), at least the
        # 20 this pass wanted (`injection.queue_rate`; it was 20, so 200 queued)
        assert conn.execute(select(taps.c.rate)).scalar_one() == 4
    runner.run(loops=1)
    assert _submitted(grid, campaign) == 20  # nothing started or ended: nothing more
    grid.advance(1)
    grid.updater(settings=settings).run(loops=1)
    with grid.engine.begin() as conn:
        assert count_cigri_jobs(conn, cluster_id=grid.clusters[0].id) == (16, 4)
    grid.advance(100)  # the 16 running jobs (100 s each) end, the 4 waiting start
    grid.updater(settings=settings).run(loops=1)
    runner.run(loops=1)
    # 12 cores free again: filled, and 4 waiting again
    assert _submitted(grid, campaign) == 20 + 12 + 4


def test_pi_submits_the_controller_output(grid: Grid) -> None:
    settings = make_settings(RUNNER_INJECTION_POLICY="pi", RUNNER_WAITING_REFERENCE=4,
                             RUNNER_PI_KP=1.0, RUNNER_PI_KI=0.2)
    campaign = new_campaign(grid, [f"t{i}" for i in range(100)])
    queue_tasks(grid, campaign)
    runner = grid.runner(settings=settings)
    runner.run(loops=1)
    assert _submitted(grid, campaign) == 5  # 1.0 × 4 + 0.2 × 4
    grid.advance(1)
    grid.updater(settings=settings).run(loops=1)  # all 5 run: still 4 below the reference
    runner.run(loops=1)
    assert _submitted(grid, campaign) == 5 + 6  # 1.0 × 4 + 0.2 × 8


def test_a_cluster_policy_overrides_the_grid_default(grid: Grid) -> None:
    settings = make_settings(RUNNER_INJECTION_POLICY="capacity")
    _sample(grid)
    with grid.engine.begin() as conn:
        set_cluster_fields(conn, grid.clusters[0].id, injection_policy="tap")
    campaign = new_campaign(grid, [f"t{i}" for i in range(12)])
    queue_tasks(grid, campaign)
    grid.runner(settings=settings).run(loops=1)
    assert _submitted(grid, campaign) == 3  # the tap's initial rate


def test_a_pass_shares_the_free_cores_among_the_queued_campaigns(grid: Grid) -> None:
    settings = make_settings(RUNNER_INJECTION_POLICY="capacity", RUNNER_WAITING_REFERENCE=4)
    _sample(grid)
    first = new_campaign(grid, [f"a{i}" for i in range(30)])
    second = new_campaign(grid, [f"b{i}" for i in range(30)])
    queue_tasks(grid, first)
    queue_tasks(grid, second)
    grid.runner(settings=settings).run(loops=1)
    # 16 free cores + 4 waiting, half each (one array each): users still alternate
    assert (_submitted(grid, first), _submitted(grid, second)) == (10, 10)
    assert (_submissions(grid, first), _submissions(grid, second)) == (1, 1)


def test_a_campaign_with_few_tasks_leaves_its_share_to_the_next(grid: Grid) -> None:
    settings = make_settings(RUNNER_INJECTION_POLICY="capacity", RUNNER_WAITING_REFERENCE=4)
    _sample(grid)
    first = new_campaign(grid, ["a0", "a1"])
    second = new_campaign(grid, [f"b{i}" for i in range(30)])
    queue_tasks(grid, first)
    queue_tasks(grid, second)
    grid.runner(settings=settings).run(loops=1)
    assert (_submitted(grid, first), _submitted(grid, second)) == (2, 18)
