"""Reacting at once (issue 15): the updater's pass that sees jobs start or end wakes the runner
(PostgreSQL NOTIFY), so the next submission does not wait for the runner's interval; a new
campaign wakes the meta-scheduler; and the updater looks again after UPDATER_WAITING_INTERVAL
when it saw jobs just submitted that had not started yet."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import Engine, func, select

from cigri.daemons.metascheduler import MetaScheduler
from cigri.daemons.runner import RunnerProcess
from cigri.domain.clock import FakeClock
from cigri.storage.tables import bag_of_tasks, jobs_to_launch
from tests.integration.engine_helpers import (
    Grid,
    make_settings,
    new_campaign,
    queue_tasks,
    start_grid,
)


def test_jobs_starting_on_oar_wake_the_runner_at_once(pg_engine: Engine,
                                                      clock: FakeClock) -> None:
    with start_grid(pg_engine, clock) as grid:
        campaign = new_campaign(grid, [f"t{i}" for i in range(20)])
        queue_tasks(grid, campaign)
        stop = threading.Event()
        process = RunnerProcess(grid.context(stop=stop), interval=timedelta(seconds=600),
                                discovery_interval=timedelta(seconds=600))
        thread = threading.Thread(target=process.run)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                    process.runners and all(r.passes >= 1 for r, _t, _s in process.runners.values())):
                time.sleep(0.05)
            (runner,) = [r for r, _t, _s in process.runners.values()]
            assert runner.passes == 1
            time.sleep(1.0)  # the listener is up (a notification before it is lost: a hint)
            grid.advance(1)  # the submitted jobs start on OAR
            grid.updater().run(loops=1)  # sees them start: wakes the runner
            while time.monotonic() < deadline and runner.passes < 2:
                time.sleep(0.05)
            assert runner.passes >= 2  # long before the 600 s interval
        finally:
            stop.set()
            thread.join(timeout=60)
        assert not thread.is_alive()


def test_the_updater_polls_again_soon_after_jobs_were_just_submitted(engine: Engine,
                                                                      clock: FakeClock) -> None:
    settings = make_settings(UPDATER_INTERVAL=30, UPDATER_WAITING_INTERVAL=1,
                             RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=12)
    with start_grid(engine, clock, nodes=4, cores=2, settings=settings) as grid:  # 8 cores
        campaign = new_campaign(grid, [f"t{i}" for i in range(12)])
        queue_tasks(grid, campaign)
        updater = grid.updater(interval=timedelta(seconds=settings.UPDATER_INTERVAL))
        updater.run(loops=1)
        assert updater.next_interval() == timedelta(seconds=30)  # nothing on OAR
        grid.runner().run(loops=1)  # 12 jobs for 8 cores
        updater.run(loops=1)  # sees them just submitted: will look again in 1 s
        assert updater.next_interval() == timedelta(seconds=1)
        grid.advance(1)
        updater.run(loops=1)  # 8 run, 4 wait in OAR's queue: OAR starts those, not cigri
        assert updater.next_interval() == timedelta(seconds=30)


def test_a_new_campaign_wakes_the_metascheduler_at_once(pg_engine: Engine,
                                                         clock: FakeClock) -> None:
    with start_grid(pg_engine, clock) as grid:
        stop = threading.Event()
        scheduler = MetaScheduler(engine=pg_engine, settings=grid.settings, clock=clock,
                                  stop=stop, interval=timedelta(seconds=600), owner="test-meta")
        thread = threading.Thread(target=scheduler.run)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and scheduler.passes < 1:
                time.sleep(0.05)
            time.sleep(1.0)  # the listener is up (a notification before it is lost: a hint)
            assert scheduler.passes == 1
            campaign = new_campaign(grid, ["a", "b"])  # what gridsub stores
            while time.monotonic() < deadline and not queued_tasks(grid, campaign):
                time.sleep(0.05)
            assert scheduler.passes >= 2  # long before the 600 s interval
            assert queued_tasks(grid, campaign) == 2
        finally:
            stop.set()
            thread.join(timeout=60)
        assert not thread.is_alive()


def queued_tasks(grid: Grid, campaign: int) -> int:
    """The campaign's tasks the meta-scheduler queued."""
    with grid.engine.begin() as conn:
        return int(conn.execute(
            select(func.count()).select_from(jobs_to_launch)
            .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
            .where(bag_of_tasks.c.campaign_id == campaign)).scalar_one())
