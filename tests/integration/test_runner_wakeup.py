"""The runner process listens once for all its cluster loops: a `cigri_runner` notification starts
the next pass of every loop at once, long before its interval, over one connection."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import Engine

from cigri.daemons.runner import RunnerProcess
from cigri.domain.clock import FakeClock
from cigri.storage.heartbeats import notify_daemons
from tests.integration.engine_helpers import start_grid


def _listeners() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-listen") and t.is_alive()]


def test_one_notification_wakes_every_cluster_loop_through_one_listener(
        pg_engine: Engine, clock: FakeClock) -> None:
    with start_grid(pg_engine, clock, clusters=2) as grid:
        stop = threading.Event()
        process = RunnerProcess(grid.context(stop=stop), interval=timedelta(seconds=600),
                                discovery_interval=timedelta(seconds=600))
        before = set(_listeners())
        thread = threading.Thread(target=process.run)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                    len(process.runners) == 2
                    and all(r.passes >= 1 for r, _t, _s in process.runners.values())):
                time.sleep(0.05)
            runners = [r for r, _t, _s in process.runners.values()]
            assert len(runners) == 2 and all(r.passes == 1 for r in runners)
            assert [n for n in _listeners() if n not in before] == ["runner-listen"]
            while time.monotonic() < deadline and not all(r.passes >= 2 for r in runners):
                # repeated: a notification sent before the listener is up is lost (a hint)
                with pg_engine.begin() as conn:
                    notify_daemons(conn, "runner")
                time.sleep(0.5)
            assert all(r.passes >= 2 for r in runners)  # long before the 600 s interval
        finally:
            stop.set()
            thread.join(timeout=60)
        assert not thread.is_alive()
