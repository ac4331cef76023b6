"""The daemon frame: passes, heartbeats, one active instance per role, exit after failures."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from cigri.config import build_settings
from cigri.daemons.base import Daemon
from cigri.domain.clock import FakeClock
from cigri.storage.heartbeats import find_heartbeat, list_heartbeats
from cigri.storage.leases import acquire_lease, find_lease


class CountingDaemon(Daemon):
    role = "counter"

    def __init__(self, *, fail: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fail = fail
        self.calls = 0

    def run_once(self) -> None:
        self.calls += 1
        if self.fail:
            raise RuntimeError("boom")


def _daemon(engine: Engine, clock: FakeClock, **kwargs: object) -> CountingDaemon:
    settings = build_settings({"DAEMON_MAX_CONSECUTIVE_FAILURES": 3, "LEASE_SECONDS": 60})
    return CountingDaemon(engine=engine, settings=settings, clock=clock, stop=threading.Event(),
                          interval=timedelta(seconds=0), **kwargs)


def test_pass_writes_a_heartbeat_with_pid_host_and_passes(engine: Engine,
                                                          clock: FakeClock) -> None:
    daemon = _daemon(engine, clock)
    daemon.run(loops=2)
    assert daemon.calls == 2
    with engine.connect() as conn:
        beat = find_heartbeat(conn, "counter")
    assert beat is not None
    assert beat.pid == os.getpid() and beat.passes == 2 and beat.failures == 0
    assert beat.beat_at == clock.now()
    clock.advance(timedelta(seconds=4))
    assert beat.is_late(clock.now())


def test_second_instance_waits_while_the_first_holds_the_lease(engine: Engine,
                                                               clock: FakeClock) -> None:
    first, second = _daemon(engine, clock), _daemon(engine, clock)
    first.run(loops=1)
    second.run(loops=1)
    assert (first.calls, second.calls) == (1, 0)
    assert not second.has_lease
    with engine.connect() as conn:
        assert [b.pid for b in list_heartbeats(conn)] == [os.getpid()]


def test_expired_lease_is_reclaimed(engine: Engine, clock: FakeClock) -> None:
    killed, standby = _daemon(engine, clock), _daemon(engine, clock)
    killed.run(loops=1)  # then "SIGKILL": it never releases its lease
    standby.run(loops=1)
    assert standby.calls == 0
    clock.advance(timedelta(seconds=61))
    standby.run(loops=1)
    assert standby.calls == 1
    with engine.connect() as conn:
        lease = find_lease(conn, "counter")
    assert lease is not None and lease.owner == standby.owner


def test_clean_stop_releases_the_lease_at_once(engine: Engine, clock: FakeClock) -> None:
    first, second = _daemon(engine, clock), _daemon(engine, clock)
    first.run(loops=1)
    first.stop.set()
    first.run()
    second.run(loops=1)
    assert second.calls == 1


def test_daemon_exits_after_max_consecutive_failures(engine: Engine, clock: FakeClock) -> None:
    daemon = _daemon(engine, clock, fail=True)
    daemon.run(loops=2)  # two failures are tolerated
    assert daemon.failures == 2
    with pytest.raises(RuntimeError):
        daemon.run(loops=5)
    assert daemon.calls == 3


def test_lease_race_has_a_single_winner(pg_engine: Engine, clock: FakeClock) -> None:
    owners = [f"owner-{i}" for i in range(8)]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(len(owners))

    def contend(owner: str) -> None:
        barrier.wait()
        with pg_engine.begin() as conn:
            results[owner] = acquire_lease(conn, role="race", owner=owner, now=clock.now(),
                                           duration=timedelta(seconds=30))

    threads = [threading.Thread(target=contend, args=(o,)) for o in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results.values()) == 1


def _notify_until_a_second_pass(daemon: CountingDaemon, engine: Engine, deadline: float) -> None:
    """NOTIFY the daemon's channel until it starts a second pass (or the deadline passes);
    repeated, since a notification sent before the listener is up is lost (a hint)."""
    import time

    from cigri.storage.heartbeats import notify_daemons

    while daemon.calls < 2 and time.monotonic() < deadline:
        with engine.begin() as conn:
            notify_daemons(conn, "counter")
        time.sleep(0.5)


def test_a_notification_starts_the_next_pass_early(pg_engine: Engine) -> None:
    import time

    from cigri.domain.clock import SystemClock

    settings = build_settings({})
    daemon = CountingDaemon(engine=pg_engine, settings=settings, clock=SystemClock(),
                            stop=threading.Event(), interval=timedelta(seconds=60))
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while daemon.calls < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.calls == 1
        _notify_until_a_second_pass(daemon, pg_engine, deadline)
        assert daemon.calls >= 2  # long before the 60 s interval
    finally:
        daemon.stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


class IdleDaemon(CountingDaemon):
    """Finds nothing to do until `busy` is set."""

    busy = False

    def run_once(self) -> bool:  # type: ignore[override]
        super().run_once()
        return self.busy


def test_an_idle_pass_stretches_the_wait_only_while_notifications_can_wake_it(
        engine: Engine, clock: FakeClock) -> None:
    settings = build_settings({"LEASE_SECONDS": 60, "DAEMON_IDLE_FACTOR": 4})
    daemon = IdleDaemon(engine=engine, settings=settings, clock=clock, stop=threading.Event(),
                        interval=timedelta(seconds=5))
    daemon.run(loops=1)
    assert daemon.idle and daemon.pause() == timedelta(seconds=5)  # no listener: no stretch
    daemon.listening = True
    assert daemon.pause() == timedelta(seconds=20)
    daemon.run(loops=1)
    with engine.begin() as conn:
        beat = find_heartbeat(conn, "counter")
    assert beat is not None and beat.interval_seconds == 20  # `cigri status` expects the stretch
    daemon.busy = True
    daemon.run(loops=1)
    assert not daemon.idle and daemon.pause() == timedelta(seconds=5)
    # Capped at half the lease: a standby never sees an idle holder's lease run out.
    daemon.busy, daemon.interval = False, timedelta(seconds=10)
    daemon.run(loops=1)
    assert daemon.pause() == timedelta(seconds=30)
    off = IdleDaemon(engine=engine, settings=build_settings({"DAEMON_IDLE_FACTOR": 1}),
                     clock=clock, stop=threading.Event(), interval=timedelta(seconds=5),
                     name="counter-off")
    off.listening = True
    off.run(loops=1)
    assert off.idle and off.pause() == timedelta(seconds=5)


def test_an_idle_daemon_is_still_woken_at_once_by_a_notification(pg_engine: Engine) -> None:
    import time

    from cigri.domain.clock import SystemClock

    daemon = IdleDaemon(engine=pg_engine, settings=build_settings({}), clock=SystemClock(),
                        stop=threading.Event(), interval=timedelta(seconds=30))
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while daemon.calls < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.calls == 1 and daemon.idle
        while not daemon.listening and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.pause() > timedelta(seconds=30)  # stretched: it would sleep minutes
        _notify_until_a_second_pass(daemon, pg_engine, deadline)
        assert daemon.calls >= 2
    finally:
        daemon.stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
