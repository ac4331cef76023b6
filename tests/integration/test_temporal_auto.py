"""`temporal_grouping: auto` through the runner and the updater (PostgreSQL and SQLite, the OAR
emulator over HTTP, where OAR takes 3 s to start a job): a campaign of 2-second tasks runs as far
fewer OAR jobs than tasks once its durations and the start cost are measured, every task done;
a campaign of 60-second tasks is not grouped; the site default makes the JDL's `false` auto."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from cigri.config import Settings
from cigri.daemons.maintenance import sample_grid_usage
from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.clock import FakeClock
from cigri.storage.tables import campaigns
from tests.integration.engine_helpers import Grid, job_rows, make_settings, new_campaign, start_grid

EMULATOR_START = 1_800_000_000.0  # the emulator's ManualClock starts there
START_COST = 3.0  # emulated seconds OAR spends launching a job


@pytest.fixture
def grid(engine: Engine) -> Iterator[Grid]:
    # cigri's clock and OAR's agree, as on a site: the start cost is measured across them
    clock = FakeClock(datetime.fromtimestamp(EMULATOR_START, UTC))
    grid = start_grid(engine, clock, nodes=4, cores=4, launch_delay=START_COST)  # 16 cores
    try:
        yield grid
    finally:
        grid.emulator.stop()


def _run(grid: Grid, campaign: int, settings: Settings, *, steps: int) -> None:
    """The daemons as deployed, every 5 s: grid usage every minute, then the updater, the
    meta-scheduler and the runner, until the campaign is over."""
    scheduler = MetaScheduler(engine=grid.engine, settings=settings, clock=grid.clock,
                              stop=grid.stop, interval=timedelta(0), owner="test-ms")
    runner = grid.runner(settings=settings)  # one runner: it keeps its start-cost measure
    updater = grid.updater(settings=settings)
    for step in range(steps):
        if step % 12 == 0:
            sample_grid_usage(grid.engine, grid.clients, now=grid.clock.now(),
                              period_seconds=60, force=True)
        updater.run(loops=1)
        if _state(grid, campaign) == "terminated":
            return
        scheduler.run(loops=1)
        runner.run(loops=1)
        grid.advance(5)


def _state(grid: Grid, campaign: int) -> str:
    with grid.engine.begin() as conn:
        return str(conn.execute(select(campaigns.c.state)
                                .where(campaigns.c.id == campaign)).scalar_one())


def _oar_jobs(grid: Grid, campaign: int) -> int:
    return len({row.remote_id for row in job_rows(grid.engine, campaign)})


def test_short_tasks_with_auto_grouping_run_as_few_batch_jobs(grid: Grid) -> None:
    settings = make_settings(RUNNER_INJECTION_POLICY="capacity")
    campaign = new_campaign(grid, [f"t{i} sleep 2" for i in range(300)], exec_file="run",
                            temporal_grouping="auto")
    _run(grid, campaign, settings, steps=80)
    rows = job_rows(grid.engine, campaign)
    assert sorted(row.state for row in rows) == ["terminated"] * 300  # every task, once
    first = min(row.submission_id for row in rows)
    ungrouped = [row for row in rows if row.submission_id == first]
    assert all(row.tag != "batch" for row in ungrouped)  # nothing measured yet: plain jobs
    batched = [row for row in rows if row.tag == "batch"]
    assert len(batched) >= 250  # once measured, grouped
    assert _oar_jobs(grid, campaign) < 300 / 4  # far fewer OAR jobs than tasks


def test_long_tasks_with_auto_grouping_are_not_grouped(grid: Grid) -> None:
    settings = make_settings(RUNNER_INJECTION_POLICY="capacity")
    campaign = new_campaign(grid, [f"t{i} sleep 60" for i in range(40)], exec_file="run",
                            temporal_grouping="auto")
    _run(grid, campaign, settings, steps=60)
    rows = job_rows(grid.engine, campaign)
    assert sorted(row.state for row in rows) == ["terminated"] * 40
    assert not any(row.tag == "batch" for row in rows)
    assert _oar_jobs(grid, campaign) == 40


def test_the_site_default_groups_campaigns_that_did_not_ask(grid: Grid) -> None:
    settings = make_settings(RUNNER_INJECTION_POLICY="capacity", DEFAULT_TEMPORAL_GROUPING="auto")
    campaign = new_campaign(grid, [f"t{i} sleep 2" for i in range(200)], exec_file="run",
                            temporal_grouping="false")
    _run(grid, campaign, settings, steps=80)
    rows = job_rows(grid.engine, campaign)
    assert sorted(row.state for row in rows) == ["terminated"] * 200
    assert _oar_jobs(grid, campaign) < 200 / 4

