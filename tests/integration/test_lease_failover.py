"""Role leases (issue 9.5): a holder that is gone from this host is taken over at the next pass,
a live holder keeps its lease, a pass longer than the lease keeps it by renewing between units
of work, and a pass that lost it stops writing and steps down. Real databases, the injectable
clock; the updater case drives the real updater against the emulator over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from cigri.config import build_settings
from cigri.daemons.base import Daemon, holder_is_gone
from cigri.domain.clock import FakeClock
from cigri.domain.oar import OarApi, OarJob
from cigri.storage.heartbeats import find_heartbeat
from cigri.storage.leases import find_lease
from cigri.storage.tables import daemon_leases, submissions
from tests.integration.engine_helpers import (
    Grid,
    make_settings,
    new_campaign,
    queue_tasks,
    states,
    wait_for,
)

pytestmark = pytest.mark.grid(nodes=8, settings=make_settings(
    RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=20, STRESS_FACTOR=0))

LEASE = timedelta(seconds=60)


class UnitDaemon(Daemon):
    """A pass of `units` units of work, each taking `unit` of clock time, calling `keep_lease`
    between them; `between` runs after each unit (another instance contending meanwhile)."""

    role = "units"

    def __init__(self, *, units: int = 0, unit: timedelta = timedelta(0),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.unit = unit
        self.done = 0  # units written
        self.calls = 0
        self.between: list[Any] = []

    def run_once(self) -> None:
        self.calls += 1
        for _ in range(self.units):
            self.keep_lease()
            self.done += 1  # "writes" its unit
            assert isinstance(self.clock, FakeClock)
            self.clock.advance(self.unit)
            for contend in self.between:
                contend()


def _daemon(engine: Engine, clock: FakeClock, **kwargs: Any) -> UnitDaemon:
    settings = build_settings({"DAEMON_MAX_CONSECUTIVE_FAILURES": 3,
                               "LEASE_SECONDS": LEASE.total_seconds()})
    return UnitDaemon(engine=engine, settings=settings, clock=clock, stop=threading.Event(),
                      interval=timedelta(seconds=0), **kwargs)


def _dead_pid() -> int:
    """A PID that no process has any more."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _hold(engine: Engine, clock: FakeClock, owner: str) -> None:
    """`owner` holds the lease for a long time yet (as a killed instance left it)."""
    with engine.begin() as conn:
        conn.execute(insert(daemon_leases).values(role="units", owner=owner,
                                                  expires_at=clock.now() + timedelta(hours=1)))


def test_a_holder_gone_from_this_host_is_taken_over_at_the_next_pass(
        engine: Engine, clock: FakeClock) -> None:
    dead = f"{socket.gethostname()}:{_dead_pid()}:abcd1234"
    _hold(engine, clock, dead)
    daemon = _daemon(engine, clock)
    daemon.run(loops=1)
    assert daemon.calls == 1 and daemon.has_lease
    with engine.connect() as conn:
        lease = find_lease(conn, "units")
    assert lease is not None and lease.owner == daemon.owner


def test_a_zombie_holder_is_gone() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        assert holder_is_gone(f"{socket.gethostname()}:{process.pid}:x")
    finally:
        process.wait()


@pytest.mark.parametrize("holder", ["elsewhere", "alive here", "unnamed"])
def test_a_live_holder_or_one_elsewhere_keeps_the_lease(engine: Engine, clock: FakeClock,
                                                        holder: str) -> None:
    owner = {"elsewhere": f"another-host.example:{_dead_pid()}:abcd1234",
             "alive here": f"{socket.gethostname()}:{os.getppid()}:abcd1234",
             "unnamed": "some-standby"}[holder]
    _hold(engine, clock, owner)
    daemon = _daemon(engine, clock)
    daemon.run(loops=1)
    assert daemon.calls == 0 and not daemon.has_lease
    clock.advance(timedelta(hours=1))  # it still expires
    daemon.run(loops=1)
    assert daemon.calls == 1


def test_a_pass_longer_than_the_lease_keeps_it(engine: Engine, clock: FakeClock) -> None:
    active = _daemon(engine, clock, units=8, unit=LEASE / 4)  # a pass of two leases
    standby = _daemon(engine, clock)
    active.between.append(lambda: standby.run(loops=1))
    active.run(loops=1)
    assert active.done == 8 and active.has_lease and active.passes == 1
    assert standby.calls == 0  # it never got the lease during the pass
    with engine.connect() as conn:
        lease = find_lease(conn, "units")
        beat = find_heartbeat(conn, "units")
    assert lease is not None and lease.owner == active.owner and lease.expires_at > clock.now()
    assert beat is not None and beat.beat_at == clock.now()


def test_a_pass_that_lost_its_lease_stops_writing_and_steps_down(engine: Engine,
                                                                 clock: FakeClock) -> None:
    # one unit longer than the lease (e.g. a stalled OAR call): a standby takes over meanwhile
    active = _daemon(engine, clock, units=3, unit=LEASE + timedelta(seconds=1))
    standby = _daemon(engine, clock)
    active.between.append(lambda: standby.run(loops=1))
    active.run(loops=1)
    assert active.done == 1  # nothing written after the lease was lost
    assert not active.has_lease and active.failures == 0 and active.passes == 0
    assert standby.calls == 1
    with engine.connect() as conn:
        lease = find_lease(conn, "units")
        beat = find_heartbeat(conn, "units")
    assert lease is not None and lease.owner == standby.owner
    assert beat is not None and beat.passes == standby.passes  # the old one wrote no beat
    active.run(loops=1)  # next pass: it waits as a standby
    assert active.done == 1 and active.calls == 1


# --- the real updater: a long poll (many pages, a slow OAR) keeps its lease ------------------


class SlowOar:
    """The real OAR client, whose every bulk read takes `seconds` of clock time, during which
    `meanwhile` runs (a standby on another host trying to take the role)."""

    def __init__(self, real: OarApi, clock: FakeClock, seconds: float,
                 meanwhile: list[Any]) -> None:
        self.real, self.clock, self.seconds, self.meanwhile = real, clock, seconds, meanwhile

    def get_jobs(self, ids: list[int]) -> list[OarJob]:
        self.clock.advance(self.seconds)
        for contend in self.meanwhile:
            contend()
        return self.real.get_jobs(ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_long_updater_pass_keeps_its_lease_against_a_standby(grid: Grid) -> None:
    from cigri.storage.clusters import set_cluster_fields

    campaign = new_campaign(grid, [f"p{i}" for i in range(12)])
    queue_tasks(grid, campaign)
    grid.runner().run(loops=1)
    assert states(grid.engine, campaign) == {"submitted": 12}
    with grid.engine.begin() as conn:  # one job per OAR request: 12 pages
        set_cluster_fields(conn, grid.clusters[0].id, api_chunk_size=1)
    meanwhile: list[Any] = []
    active = grid.updater(owner="updater-a", lease=LEASE)
    standby = grid.updater(owner="updater-b", lease=LEASE)
    active.oar = lambda cluster: SlowOar(grid.clients(cluster), grid.clock, 20.0,  # type: ignore[assignment,misc]
                                         meanwhile)
    meanwhile.append(lambda: standby.run(loops=1))
    started = grid.clock.now()
    grid.advance(5)  # the emulated jobs start running
    active.run(loops=1)
    assert grid.clock.now() - started > 3 * LEASE  # the pass was much longer than the lease
    assert states(grid.engine, campaign) == {"running": 12}  # every page polled and written
    assert not standby.has_lease and standby.passes == 0
    assert active.has_lease and active.passes == 1


# --- the kill-a-runner test: almighty, every daemon, PostgreSQL, the emulator over HTTP -------




def test_a_runner_killed_with_sigkill_submits_again_within_seconds(
        pg_url: str, pg_engine: Engine, clock: FakeClock, tmp_path: Any) -> None:
    from cigri.emulator import Workload, run_in_thread
    from cigri.storage.campaigns import create_campaign
    from cigri.storage.clusters import add_cluster

    emulator = run_in_thread(allow_root_jobs=True, clusters=1, nodes=50, cores=8, mode="simulate",
                             workdir=str(tmp_path), workload=Workload(duration="fixed:3600"))
    with pg_engine.begin() as conn:
        cluster = add_cluster(conn, name="c1", api_url=emulator.urls[0], now=clock.now())
        create_campaign(conn, grid_user="testuser", name="many", jobs_type="normal", jdl={},
                        properties={cluster.id: {"exec_file": "sleep", "type": "best-effort",
                                                 "resources": "/resource_id=1",
                                                 "walltime": "02:00:00"}},
                        params=[str(i) for i in range(3000)], now=clock.now())
    # RUNNER_MIN_CYCLE_DURATION, LEASE_SECONDS and ALMIGHTY_RESTART_DELAY at their defaults;
    # the updater stays out of the way (jobs waiting on OAR would close the tap for a minute).
    # The v3 tap submits at every pass while tasks are left, so a new submission marks the new
    # runner's first working pass; `capacity` (the default) stops once OAR's queue holds its
    # reference, which the updater, kept away here, would never see drain.
    env = {**os.environ, "CIGRI_DATABASE_URL": pg_url, "CIGRI_METASCHEDULER_INTERVAL": "1",
           "CIGRI_UPDATER_INTERVAL": "600", "CIGRI_LOG_LEVEL": "WARNING",
           "CIGRI_RUNNER_INJECTION_POLICY": "tap"}
    almighty = subprocess.Popen([sys.executable, "-c",
                                 "import cigri.daemons.almighty as m; m.main()"], env=env)
    try:
        def newest_submission() -> int:
            with pg_engine.begin() as conn:
                return int(conn.execute(select(func.max(submissions.c.id))).scalar() or 0)

        def runner_pid() -> int | None:
            with pg_engine.begin() as conn:
                beat = find_heartbeat(conn, "runner:c1")
            return beat.pid if beat is not None else None

        wait_for(lambda: newest_submission() >= 2, 60, "first submissions")
        killed = runner_pid()
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        before = newest_submission()
        killed_at = time.monotonic()
        wait_for(lambda: newest_submission() > before, 30, "a submission after the kill")
        elapsed = time.monotonic() - killed_at
        # the new instance, holding the lease (it beats at the end of its pass)
        wait_for(lambda: runner_pid() not in (None, killed), 10, "the new runner's heartbeat")
        assert elapsed < 10, f"the new runner submitted {elapsed:.1f} s after the kill"
        print(f"new runner submitted {elapsed:.1f} s after the kill")
    finally:
        almighty.send_signal(signal.SIGTERM)
        try:
            almighty.wait(timeout=30)
        except subprocess.TimeoutExpired:
            almighty.kill()
            almighty.wait()
        emulator.stop()
