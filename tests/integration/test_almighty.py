"""Almighty supervises real child processes: restart of a dead or hung daemon with its event
(v3 behaviour 2, adapted: every daemon is supervised, not only runners; behaviour 1's
CHILD_TIMEOUT becomes a heartbeat timeout), and a clean stop of every child on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from cigri.config import build_settings
from cigri.daemons.almighty import Almighty, ChildSpec
from cigri.domain.clock import FakeClock
from cigri.storage.heartbeats import list_heartbeats, record_heartbeat
from cigri.storage.tables import events

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _wait_for(condition: Callable[[], object], timeout: float = 20.0,
              clock: FakeClock | None = None) -> None:
    """Wait (real time) for `condition`; with `clock`, almighty's clock moves 0.1 s per look
    (almighty times restarts by the injected clock, as the daemons do)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
        if clock is not None:
            clock.advance(0.1)
    raise AssertionError("condition not met before the deadline")


def _codes(engine: Engine) -> list[str]:
    with engine.begin() as conn:
        return list(conn.execute(select(events.c.code).order_by(events.c.id)).scalars())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def almighty(pg_engine: Engine, clock: FakeClock) -> Iterator[Almighty]:
    supervisor = Almighty(engine=pg_engine, settings=build_settings({}), clock=clock,
                          stop=threading.Event(), restart_delay=0.2, child_timeout=300,
                          specs=[ChildSpec(name="runner", argv=SLEEPER),
                                 ChildSpec(name="nikita", argv=SLEEPER)])
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        _wait_for(lambda: supervisor.pid_of("runner") and supervisor.pid_of("nikita"))
        yield supervisor
    finally:
        supervisor.stop.set()
        thread.join(timeout=30)


def test_a_dead_daemon_is_restarted_and_leaves_an_event(almighty: Almighty,
                                                        pg_engine: Engine,
                                                        clock: FakeClock) -> None:
    runner, nikita = almighty.pid_of("runner"), almighty.pid_of("nikita")
    assert runner and nikita
    os.kill(runner, signal.SIGKILL)
    _wait_for(lambda: almighty.pid_of("runner") not in (None, runner), clock=clock)
    os.kill(nikita, signal.SIGKILL)
    _wait_for(lambda: almighty.pid_of("nikita") not in (None, nikita), clock=clock)
    codes = _codes(pg_engine)
    assert codes[0] == "ALMIGHTY_STARTING"
    assert "RUNNER_FAILED" in codes and "DAEMON_RESTARTED" in codes


def test_a_hung_daemon_is_killed_with_a_child_timeout_event(almighty: Almighty,
                                                            pg_engine: Engine,
                                                            clock: FakeClock) -> None:
    hung = almighty.pid_of("nikita")
    assert hung
    with pg_engine.begin() as conn:
        record_heartbeat(conn, name="nikita", host=socket.gethostname(), pid=hung,
                         started_at=clock.now(), now=clock.now(), interval_seconds=10,
                         passes=1, failures=0)
    clock.advance(timedelta(seconds=301))
    _wait_for(lambda: almighty.pid_of("nikita") not in (None, hung), clock=clock)
    assert "CHILD_TIMEOUT" in _codes(pg_engine)


def test_stop_terminates_every_child(almighty: Almighty, pg_engine: Engine) -> None:
    pids = [almighty.pid_of("runner"), almighty.pid_of("nikita")]
    almighty.stop.set()
    _wait_for(lambda: not any(p and _alive(p) for p in pids))
    _wait_for(lambda: "ALMIGHTY_TERMINATING" in _codes(pg_engine))


def test_cigri_almighty_runs_every_daemon_and_stops_them_on_sigterm(
        pg_url: str, pg_engine: Engine) -> None:
    env = {**os.environ, "CIGRI_DATABASE_URL": pg_url, "CIGRI_METASCHEDULER_INTERVAL": "0.5",
           "CIGRI_NIKITA_INTERVAL": "0.5", "CIGRI_UPDATER_INTERVAL": "0.5",
           "CIGRI_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-c",
                                "import cigri.daemons.almighty as m; m.main()"], env=env)
    try:
        def beating() -> bool:
            with pg_engine.begin() as conn:
                names = {b.name for b in list_heartbeats(conn)}
            return {"metascheduler", "nikita", "almighty"} <= names

        _wait_for(beating, timeout=60)
        with pg_engine.begin() as conn:
            pids = {b.pid for b in list_heartbeats(conn)} - {process.pid}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not [p for p in pids if _alive(p)]
        assert "ALMIGHTY_TERMINATING" in _codes(pg_engine)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_crash_loop_backs_off() -> None:
    from cigri.daemons.almighty import restart_delay

    assert [restart_delay(5.0, n) for n in range(6)] == [5.0, 5.0, 10.0, 20.0, 40.0, 80.0]
    assert restart_delay(5.0, 20) == 300.0


def test_a_daemon_exiting_with_an_error_soon_after_start_is_restarted_ever_later(
        pg_engine: Engine, clock: FakeClock) -> None:
    crasher = ChildSpec(name="updater", argv=[sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = Almighty(engine=pg_engine, settings=build_settings({}), clock=clock,
                          stop=threading.Event(), restart_delay=0.1, specs=[crasher])
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        _wait_for(lambda: supervisor.children.get("updater") is not None
                  and supervisor.children["updater"].quick_deaths >= 3, clock=clock)
        child = supervisor.children["updater"]
        assert child.restart_at is None or child.restart_at - clock.monotonic() <= 0.4
    finally:
        supervisor.stop.set()
        thread.join(timeout=30)
    assert _codes(pg_engine).count("DAEMON_RESTARTED") >= 3


def test_one_host_mode_schedules_the_maintenance(engine: Engine, clock: FakeClock) -> None:
    from cigri.daemons.almighty import start_maintenance
    from cigri.daemons.base import DaemonContext

    settings = build_settings({"GRID_USAGE_UPDATE_PERIOD": 60})
    scheduler = start_maintenance(DaemonContext.for_process(settings, engine, clock=clock))
    try:
        assert scheduler is not None
        jobs = {job.id for job in scheduler.get_jobs()}
        assert {"cigri-grid-usage", "cigri-purge", "cigri-vacuum"} <= jobs
    finally:
        # the first grid-usage sample runs at start: let it end before the engine is checked
        scheduler.shutdown(wait=True)
