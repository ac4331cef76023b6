"""Each engine daemon says when a pass found nothing to do (`run_once` returns False), which is
what lets the daemon frame stretch its wait on an idle grid (DAEMON_IDLE_FACTOR, bench/idle.py),
and only then: work in sight makes the pass busy again. The runner's submissions wake the updater
when it idles, and not while it is busy (a stream of submissions is not a stream of polls)."""

from __future__ import annotations

from sqlalchemy import Engine

from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.clock import FakeClock
from cigri.storage.campaigns import get_campaign
from tests.integration.engine_helpers import new_campaign, queue_tasks, start_grid


def test_runner_updater_and_metascheduler_are_idle_only_with_nothing_to_do(
        engine: Engine, clock: FakeClock) -> None:
    with start_grid(engine, clock) as grid:
        runner, updater = grid.runner(), grid.updater()
        metascheduler = MetaScheduler(engine=engine, settings=grid.settings, clock=clock,
                                      stop=grid.stop)
        assert (runner.run_once(), updater.run_once(), metascheduler.run_once()) == (
            False, False, False)
        campaign = new_campaign(grid, [f"p{i} 5" for i in range(4)])
        assert metascheduler.run_once() is True
        queue_tasks(grid, campaign)
        assert runner.run_once() is True  # queued tasks: submitted
        assert updater.run_once() is True  # jobs on the cluster to follow
        for _ in range(30):  # until every task ran (the policy may submit them in steps)
            grid.advance(15)
            busy = [runner.run_once(), updater.run_once()]
            if busy == [False, False]:
                break
        assert busy == [False, False]
        with engine.begin() as conn:
            assert get_campaign(conn, campaign).state == "terminated"


def test_a_submission_wakes_the_updater_only_while_it_idles(engine: Engine,
                                                             clock: FakeClock) -> None:
    with start_grid(engine, clock) as grid:
        updater = grid.updater()
        updater._one_iteration()
        assert updater.idle
        updater.wake()
        assert updater._wake.is_set()  # an idle updater starts its next pass now
        updater._wake.clear()
        campaign = new_campaign(grid, ["a 5"])
        queue_tasks(grid, campaign)
        grid.runner().run_once()
        updater._one_iteration()
        assert not updater.idle
        updater.wake()
        assert not updater._wake.is_set()  # a busy one keeps its cadence
