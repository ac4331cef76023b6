"""Daemons ride out a database blip (issue 16.6): with the real PostgreSQL refusing connections
for a moment (every backend terminated, `ALLOW_CONNECTIONS false`, then back), the runner
process (its cluster discovery included) and a grid-wide daemon keep running, count the failed
passes, and resume their work once the database is back. The emulator over HTTP, the injectable
clock for the daemons' decisions."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cigri.daemons.runner import RunnerProcess
from tests.integration.engine_helpers import (
    Grid,
    make_settings,
    new_campaign,
    queue_tasks,
    states,
    wait_for,
)

pytestmark = pytest.mark.grid(nodes=8, settings=make_settings(
    RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=10, DAEMON_MAX_CONSECUTIVE_FAILURES=10))


class Blip:
    """Make the test database refuse every connection, and let it back."""

    def __init__(self, pg_url: str) -> None:
        url = make_url(pg_url)
        self.database = url.database
        self.admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")

    def down(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :name AND pid <> pg_backend_pid()"),
                         {"name": self.database})

    def up(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true'))

    def close(self) -> None:
        self.up()
        self.admin.dispose()




def test_the_runner_process_and_the_updater_ride_out_a_database_blip(
        grid: Grid, pg_url: str) -> None:
    stop = threading.Event()
    context = grid.context(stop=stop)
    process = RunnerProcess(context, interval=timedelta(seconds=0.5),
                            discovery_interval=timedelta(seconds=0.3))
    updater = grid.updater(interval=timedelta(seconds=0.5))
    updater.stop = stop
    outcomes: dict[str, BaseException | None] = {}

    def run(name: str, target: Any) -> None:
        try:
            target()
            outcomes[name] = None
        except BaseException as error:  # what would have ended the process
            outcomes[name] = error

    threads = [threading.Thread(target=run, args=("runner", process.run)),
               threading.Thread(target=run, args=("updater", updater.run))]
    campaign = new_campaign(grid, [f"p{i}" for i in range(8)])
    queue_tasks(grid, campaign, limit=4)
    blip = Blip(pg_url)
    for thread in threads:
        thread.start()
    try:
        # submitted, or already seen running: the submission wakes an idle updater at once
        wait_for(lambda: states(grid.engine, campaign).get("submitted", 0)
                 + states(grid.engine, campaign).get("running", 0) == 4, 20, "submissions")
        blip.down()
        time.sleep(2.0)  # several discoveries and passes of each daemon fail meanwhile
        assert not outcomes, f"a daemon stopped during the blip: {outcomes}"
        assert process.discovery_failures > 0 or updater.failures > 0
        blip.up()
        # both resume: the other tasks are submitted, and the updater follows the jobs again
        queue_tasks(grid, campaign, limit=4)
        wait_for(lambda: states(grid.engine, campaign).get("submitted", 0)
              + states(grid.engine, campaign).get("running", 0) == 8, 20, "the runner resumes")
        grid.advance(5)  # the jobs start on OAR
        wait_for(lambda: states(grid.engine, campaign) == {"running": 8}, 20,
              "the updater resumes")
        assert not outcomes and all(thread.is_alive() for thread in threads)
        assert process.discovery_failures == 0 and updater.failures == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        blip.close()
    assert outcomes == {"runner": None, "updater": None}
