"""Almighty (`cigri-almighty`): the one-host supervisor. Starts every daemon as a child process,
restarts one that died or hung, and stops them all on SIGTERM/SIGINT.

Owns the child processes and the `log` events that trace them: `ALMIGHTY_STARTING`,
`ALMIGHTY_TERMINATING`, `RUNNER_FAILED` (the runner process died), `DAEMON_RESTARTED` (another
daemon died) and `CHILD_TIMEOUT` (a daemon stopped beating for `ALMIGHTY_CHILD_TIMEOUT` seconds
and was killed). A child that keeps dying soon after its start is restarted with a doubling delay
(up to 5 minutes) when it exits with an error status, so a crash loop does not flood the events
table; a child killed by a signal is restarted at the base delay. Does not own any scheduling
work: unlike v3's almighty it does not run the meta-scheduler, updater and nikita in sequence;
each is its own long-lived process, and what v3 got from running them in order is kept by
transactions, leases and state-guarded updates.

Children: `metascheduler`, `runner` (one process, one loop per enabled cluster), `updater`,
`nikita`, `collector`, `notifier` and `automations`. Each child is
`python -c "import cigri.daemons.<name> as m; m.main()"` with almighty's environment, so
`CIGRI_CONF` and `CIGRI_*` overrides reach every daemon. On Linux a child gets SIGTERM if
almighty dies (PR_SET_PDEATHSIG), so a killed almighty leaves no orphan. In this one-host mode
almighty also runs the periodic maintenance (`cigri.daemons.maintenance`: purge, grid usage,
vacuum) on an APScheduler background scheduler, the job cron or systemd timers do otherwise.

Time: almighty and its daemons use one clock, the injected `Clock` (`SystemClock` in
production): restart delays, crash-loop detection, the heartbeat cadence and the hung-child check
all read it, as the daemons' passes, heartbeats and leases do. Only waiting for a child to exit
on stop is real time.

A runner killed with SIGKILL is restarted after `ALMIGHTY_RESTART_DELAY`, and the new instance
takes the dead one's cluster leases at its first pass (the holder is on this host and its
process is gone, see `cigri.daemons.base`), so submissions resume within seconds.

Settings: `ALMIGHTY_RESTART_DELAY`, `ALMIGHTY_CHILD_TIMEOUT`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from cigri.config import Settings
from cigri.daemons.base import DaemonContext, daemon_context
from cigri.daemons.maintenance import schedule_maintenance
from cigri.domain.clock import Clock
from cigri.domain.event_codes import EventCode
from cigri.domain.states import EventClass, EventState
from cigri.storage.events import record_event
from cigri.storage.heartbeats import list_heartbeats, record_heartbeat

log = logging.getLogger(__name__)

DAEMONS: Final = ("metascheduler", "runner", "updater", "nikita", "collector", "notifier",
                  "automations")
STOP_GRACE_SECONDS: Final = 15.0
POLL_SECONDS: Final = 0.2
HEARTBEAT_SECONDS: Final = 5.0
_PR_SET_PDEATHSIG: Final = 1
QUICK_DEATH_SECONDS: Final = 30.0
MAX_RESTART_DELAY_SECONDS: Final = 300.0


def restart_delay(base: float, quick_deaths: int) -> float:
    """The delay before a restart: `base`, doubled for each death in a row that came soon after
    a start (a crash loop, e.g. a broken configuration), capped at 5 minutes."""
    if quick_deaths <= 1:
        return base
    return min(base * 2 ** (quick_deaths - 1), MAX_RESTART_DELAY_SECONDS)


@dataclass(frozen=True, kw_only=True)
class ChildSpec:
    """A daemon almighty keeps alive."""

    name: str
    argv: Sequence[str]


def daemon_specs(names: Sequence[str] = DAEMONS) -> list[ChildSpec]:
    """One child per daemon: `python -c "import cigri.daemons.<name> as m; m.main()"`."""
    return [ChildSpec(name=name, argv=[sys.executable, "-c", f"import cigri.daemons.{name} as m; m.main()"])
            for name in names]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGTERM us when almighty dies.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # when a scheduled restart is due, by the clock's monotonic
    restarts: int = 0
    quick_deaths: int = 0  # deaths in a row within QUICK_DEATH_SECONDS of a start


@dataclass
class Almighty:
    """Supervises `specs`; `run()` returns once `stop` is set and every child is gone."""

    engine: Engine
    settings: Settings
    clock: Clock
    stop: threading.Event
    specs: Sequence[ChildSpec]
    restart_delay: float | None = None
    child_timeout: float | None = None
    children: dict[str, _Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.restart_delay is None:
            self.restart_delay = self.settings.ALMIGHTY_RESTART_DELAY
        if self.child_timeout is None:
            self.child_timeout = self.settings.ALMIGHTY_CHILD_TIMEOUT
        self.started_at: datetime = self.clock.now()
        self._last_beat = 0.0
        self._passes = 0

    def run(self) -> None:
        self._event(EventCode.ALMIGHTY_STARTING, f"almighty starting on {socket.gethostname()} "
                                                 f"(pid {os.getpid()}): {', '.join(self.names)}")
        try:
            for spec in self.specs:
                self.children[spec.name] = _Child(spec=spec)
                self._start(self.children[spec.name])
            while not self.stop.is_set():
                self._supervise()
                self.stop.wait(POLL_SECONDS)
        finally:
            self._event(EventCode.ALMIGHTY_TERMINATING, "almighty stopping its daemons")
            self.terminate_all()

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def pid_of(self, name: str) -> int | None:
        child = self.children.get(name)
        if child is None or child.process is None or child.process.poll() is not None:
            return None
        return child.process.pid

    # --- steps -----------------------------------------------------------------------------

    def _supervise(self) -> None:
        now = self.clock.monotonic()
        for child in self.children.values():
            if child.process is not None and child.process.poll() is not None:
                self._on_death(child, now)
            elif child.process is None and child.restart_at is not None and now >= child.restart_at:
                self._start(child)
        if now - self._last_beat >= HEARTBEAT_SECONDS:
            self._last_beat = now
            self._check_hung()
            self._beat()

    def _start(self, child: _Child) -> None:
        child.process = subprocess.Popen(
            list(child.spec.argv), env=os.environ.copy(),
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        child.started_at = self.clock.monotonic()
        child.restart_at = None
        log.info("almighty: started %s (pid %d)", child.spec.name, child.process.pid,
                 extra={"daemon": child.spec.name, "action": "start"})

    def _on_death(self, child: _Child, now: float) -> None:
        assert child.process is not None
        code = child.process.returncode
        pid = child.process.pid
        child.process = None
        child.restarts += 1
        # A crash loop is an exit with an error soon after the start; a kill from outside
        # (SIGKILL, the OOM killer: negative status) restarts at the base delay.
        crashed_early = code is not None and code > 0 and now - child.started_at < QUICK_DEATH_SECONDS
        child.quick_deaths = child.quick_deaths + 1 if crashed_early else 0
        delay = restart_delay(self.restart_delay or 0.0, child.quick_deaths)
        child.restart_at = now + delay
        code_name = (EventCode.RUNNER_FAILED if child.spec.name == "runner"
                     else EventCode.DAEMON_RESTARTED)
        message = (f"{child.spec.name} (pid {pid}) exited with status {code}; restarting in "
                   f"{delay:g} s")
        log.warning("almighty: %s", message, extra={"daemon": child.spec.name,
                                                   "action": "restart"})
        self._event(code_name, message)

    def _check_hung(self) -> None:
        """Kill a child whose heartbeats (any name it writes) stopped for `child_timeout`."""
        try:
            with self.engine.begin() as conn:
                beats = list_heartbeats(conn)
        except Exception:
            log.warning("almighty: cannot read heartbeats", exc_info=True)
            return
        host = socket.gethostname()
        now = self.clock.now()
        for child in self.children.values():
            if child.process is None:
                continue
            own = [b for b in beats if b.pid == child.process.pid and b.host == host]
            if not own:
                continue  # never active (a standby, or still starting): nothing to judge
            silence = now - max(b.beat_at for b in own)
            if silence > timedelta(seconds=self.child_timeout or 0):
                self._event(EventCode.CHILD_TIMEOUT, f"{child.spec.name} (pid {child.process.pid}) "
                                                     f"silent for {silence}; killing it")
                self._terminate(child.process)

    def _beat(self) -> None:
        self._passes += 1
        try:
            with self.engine.begin() as conn:
                record_heartbeat(conn, name="almighty", host=socket.gethostname(),
                                 pid=os.getpid(), started_at=self.started_at,
                                 now=self.clock.now(), interval_seconds=HEARTBEAT_SECONDS,
                                 passes=self._passes, failures=0)
        except Exception:
            log.warning("almighty: cannot write its heartbeat", exc_info=True)

    def _event(self, code: EventCode, message: str) -> None:
        try:
            with self.engine.begin() as conn:
                record_event(conn, class_=EventClass.LOG, code=code, state=EventState.CLOSED,
                             message=message, now=self.clock.now())
        except Exception:
            log.warning("almighty: cannot record %s", code, exc_info=True)

    # --- stopping --------------------------------------------------------------------------

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()

    def terminate_all(self) -> None:
        """SIGTERM every child, wait up to STOP_GRACE_SECONDS, then SIGKILL the rest."""
        alive = [c.process for c in self.children.values()
                 if c.process is not None and c.process.poll() is None]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in alive:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("almighty: pid %d ignored SIGTERM; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        for child in self.children.values():
            child.process = None


def start_maintenance(context: DaemonContext) -> BackgroundScheduler:
    """One-host mode runs the periodic maintenance (purge, grid usage, vacuum) itself, on an
    APScheduler background scheduler (returned, started)."""
    scheduler = BackgroundScheduler(timezone="UTC")
    schedule_maintenance(scheduler, context.engine, context.settings, context.clock,
                         oar_factory=context.oar_factory)
    scheduler.start()
    log.info("almighty: maintenance scheduled (%d jobs)", len(scheduler.get_jobs()))
    return scheduler


def main() -> None:
    """`cigri-almighty`: every daemon of this host under one supervisor."""
    with daemon_context("almighty") as context:
        almighty = Almighty(engine=context.engine, settings=context.settings,
                            clock=context.clock, stop=context.stop, specs=daemon_specs())
        scheduler = start_maintenance(context)
        try:
            almighty.run()
        finally:
            scheduler.shutdown(wait=False)


if __name__ == "__main__":
    main()
