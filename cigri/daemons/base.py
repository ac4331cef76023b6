"""The daemon frame every cigri daemon is built on: a pass (`run_once`) every `interval` until a
stop event is set, one active instance per role, a heartbeat per pass, exit after repeated failures.

Owns the loop, the role lease (`daemon_leases`, through `cigri.storage.leases`), the heartbeat
(`daemon_heartbeats`) and process start-up (`main`: settings, logging, engine, OAR-client
factory, signal handlers).
Does not own any work: subclasses write `run_once` as a short list of named steps.

On PostgreSQL a daemon also LISTENs on `cigri_<role>`: a producer that calls
`cigri.storage.heartbeats.notify_daemons(conn, role)` in its transaction starts that daemon's next
pass early. A hint only; every daemon still polls. A pass whose `run_once` returns False found
nothing to do (no campaign running, no job on OAR): while the listener runs, the next pass then
waits up to `DAEMON_IDLE_FACTOR` intervals (at most half the lease), so an idle engine costs little
(`bench/idle.py`); a notification still starts it at once, and any pass with work puts the daemon
back on its interval.

Each pass costs the lease one transaction, shared with the heartbeat: the lease is renewed together
with the heartbeat at the end of a pass, and taken at the start of one only when this instance does
not hold it or holds it for less than half its length (a first pass, a failed or very slow pass).
A long pass calls `keep_lease()` between units of work (a poll page, a submission, a kill, a file):
free while more than half the lease is left, else one renewal; a pass whose lease was taken
meanwhile gets `LeaseLost` there, writes nothing more and steps down (not a failed pass). A holder
that is gone (same host, its process not running: killed with SIGKILL) is taken over at once by
the next pass of another instance, instead of after its lease runs out.

A database error anywhere in a pass (the server restarted, a connection terminated, the
database refusing connections for a while) makes that pass a failed pass like any other: the
engine's `pool_pre_ping` replaces dead connections, and the next pass starts afresh.

Settings: `DAEMON_MAX_CONSECUTIVE_FAILURES` (failed passes in a row before the process exits, so
almighty or systemd restarts it) and `LEASE_SECONDS` (how long a killed instance blocks its role).
"""

from __future__ import annotations

import abc
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import ClassVar

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from cigri import app
from cigri.config import Settings
from cigri.domain.clock import Clock, SystemClock
from cigri.domain.errors import ConfigError
from cigri.domain.telemetry import (
    DAEMON_FAILURES,
    DAEMON_LEASE_CHANGES,
    DAEMON_PASS_DURATION,
    DAEMON_PASSES,
    RECORDER,
    Series,
)
from cigri.storage.heartbeats import record_heartbeat
from cigri.storage.leases import acquire_lease, release_lease
from cigri.storage.metrics import add_counters

log = logging.getLogger(__name__)

WAIT_SLICE_SECONDS = 0.5  # how often a waiting daemon looks at its wake-up flag
# How long the listener waits for a notification before looking at `stop`: each wait costs CPU
# (psycopg's notifies() sets up a wait every time; at 1 s this was ~0.0004 CPU-s/s per daemon,
# a third of an idle engine, bench/idle.py). The thread is a daemon thread: it never delays an exit.
LISTEN_SLICE_SECONDS = 5.0


def instance_owner() -> str:
    """A name for this daemon instance that no other instance (here or on another host) shares:
    `host:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_gone(owner: str, host: str | None = None) -> bool:
    """True when the lease holder `owner` (`host:pid:random`) ran on this host and its process is
    not running any more (no such process, or a zombie waiting for its parent to reap it). A
    holder on another host, or whose name says nothing, is never judged gone: its lease expires.
    A PID reused by another process makes the holder look alive: the lease then just expires."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    held_on, pid = parts[0], int(parts[1])
    if held_on != (host or socket.gethostname()) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's live process
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def is_database_outage(error: BaseException) -> bool:
    """A database error that says the database is unreachable or went away (restart, blip,
    terminated connection), as opposed to a bug in a statement."""
    return isinstance(error, (OperationalError, InterfaceError))


def first_line(error: BaseException) -> str:
    """The driver's message of `error`, first line only (for one-line logs)."""
    origin = getattr(error, "orig", None) or error
    lines = str(origin).strip().splitlines()
    return lines[0] if lines else type(origin).__name__


class LeaseLost(Exception):
    """Raised by `Daemon.keep_lease` in a pass whose lease another instance took: the pass stops
    writing there and this instance steps down."""


@dataclass(frozen=True, kw_only=True)
class DaemonContext:
    """What the daemons of a process share and are built from: `main` builds it once per
    process (`for_process`); tests build it with their clock, stop event and OAR clients."""

    settings: Settings
    engine: Engine
    clock: Clock
    stop: threading.Event
    oar_factory: app.OarFactory  # cluster -> its OAR client

    @classmethod
    def for_process(cls, settings: Settings, engine: Engine, *, clock: Clock | None = None,
                    stop: threading.Event | None = None) -> DaemonContext:
        """A process's context: the system clock, a new stop event and the composition root's
        OAR clients (`cigri.app.build_oar_factory`, identities from `users_mapping`)."""
        return cls(settings=settings, engine=engine, clock=clock or SystemClock(),
                   stop=stop if stop is not None else threading.Event(),
                   oar_factory=app.build_oar_factory(settings, engine))


class Daemon(abc.ABC):
    """Runs `run_once` every `interval` until `stop` is set.

    Before each pass the instance takes (or renews) the lease on its `name`; while another live
    instance holds it, this one only waits. After each successful pass it writes its heartbeat.
    """

    role: ClassVar[str] = "daemon"  # default name, e.g. "metascheduler"

    def __init__(self, *, engine: Engine, settings: Settings, clock: Clock,
                 stop: threading.Event, interval: timedelta | None = None,
                 name: str | None = None, max_consecutive_failures: int | None = None,
                 lease: timedelta | None = None, owner: str | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.stop = stop
        self.name = name or self.role
        self.interval = interval if interval is not None else self.default_interval(settings)
        self.max_consecutive_failures = (
            max_consecutive_failures if max_consecutive_failures is not None
            else settings.DAEMON_MAX_CONSECUTIVE_FAILURES)
        # A lease must outlive a few passes, or a slow pass would hand the role to a standby.
        self.lease = lease if lease is not None else max(
            settings.lease_length, 3 * self.interval)
        self.owner = owner or instance_owner()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at: datetime = clock.now()
        self.passes = 0  # passes done while holding the lease
        self.failures = 0  # failed passes in a row
        self.has_lease = False
        self._lease_until: datetime | None = None  # when our lease runs out, by `clock`
        self._wake = threading.Event()
        self.idle = False  # the last pass found nothing to do (run_once returned False)
        self.listening = False  # NOTIFY wake-ups reach this daemon (PostgreSQL listener running)

    @classmethod
    def default_interval(cls, settings: Settings) -> timedelta:
        """The interval when none is given; subclasses read their own setting."""
        return timedelta(seconds=5)

    @abc.abstractmethod
    def run_once(self) -> bool | None:
        """One pass. Safe to repeat; may stop between transactions. Returns False when it found
        nothing to do (the idle stretch applies), True or None otherwise."""

    def next_interval(self) -> timedelta:
        """How long after this pass's start the next one starts: `interval`, unless the
        daemon has a reason to look again sooner (the updater while jobs wait to start)."""
        return self.interval

    def pause(self) -> timedelta:
        """The wait from this pass's start to the next: `next_interval()`, stretched to
        `DAEMON_IDLE_FACTOR` intervals (at most half the lease, so the lease is never at risk)
        after an idle pass while notifications can wake this daemon."""
        wait = self.next_interval()
        if not (self.idle and self.listening):
            return wait
        return max(wait, min(self.interval * self.settings.DAEMON_IDLE_FACTOR, self.lease / 2))

    def wake_channels(self) -> Sequence[str]:
        """PostgreSQL channels whose notifications start the next pass early (a hint only: the
        daemon still polls on its interval, so a lost notification costs only latency)."""
        return (f"cigri_{self.role}",)

    def wake(self) -> None:
        """Start the next pass now instead of at the end of the interval."""
        self._wake.set()

    def run(self, loops: int | None = None) -> None:
        """Loop until `stop` is set, or for `loops` iterations (tests). Raises after
        `max_consecutive_failures` failed passes in a row."""
        iterations = 0
        if loops is None:
            self._start_listener()
        try:
            while not self.stop.is_set():
                started = self.clock.monotonic()
                self._one_iteration()
                elapsed = self.clock.monotonic() - started
                if elapsed > self.interval.total_seconds():
                    log.warning("%s pass took %.1fs, interval is %s", self.name, elapsed,
                                self.interval)
                iterations += 1
                if loops is not None and iterations >= loops:
                    return
                self._sleep(max(0.0, self.pause().total_seconds() - elapsed))
        finally:
            if self.stop.is_set():
                self._release()

    def _sleep(self, seconds: float) -> None:
        """Wait for the next pass: until `seconds` pass, `stop` is set or a wake-up comes."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._wake.wait(min(left, WAIT_SLICE_SECONDS)):
                self._wake.clear()
                return

    def _start_listener(self) -> None:
        thread = start_listener(self.engine, list(self.wake_channels()), stop=self.stop,
                                on_notify=self.wake, name=self.name)
        # a loop whose process listens for it (the runner's clusters) was told so beforehand
        self.listening = self.listening or thread is not None

    def _one_iteration(self) -> None:
        started = self.clock.monotonic()
        try:
            self.idle = False
            if not self._take_lease():
                return
            self.idle = self.run_once() is False
            self.failures = 0
            self.passes += 1
            record_pass(self.name, self.clock.monotonic() - started, failed=False)
            self._beat()
        except LeaseLost:
            log.warning("%s: another instance took the lease during this pass; this instance "
                        "stopped writing and steps down", self.name,
                        extra={"daemon": self.name, "action": "lease_lost"})
        except Exception as error:
            self.failures += 1
            if is_database_outage(error):
                # one line, not a traceback: the database went away (restart, blip); the pool
                # pre-pings and replaces dead connections at the next pass
                log.error("%s pass failed (%d in a row): database error: %s", self.name,
                          self.failures, first_line(error),
                          extra={"daemon": self.name, "action": "pass_failed"})
            else:
                log.exception("%s pass failed (%d in a row)", self.name, self.failures,
                              extra={"daemon": self.name, "action": "pass_failed"})
            record_pass(self.name, self.clock.monotonic() - started, failed=True)
            flush_metrics(self.engine)
            if self.failures >= self.max_consecutive_failures:
                raise

    def keep_lease(self) -> None:
        """Call between units of work of a pass (a poll page, a submission, a kill, a file):
        renews the lease once less than half of it is left (no database access before that), so
        a pass longer than the lease keeps it; raises `LeaseLost` if another instance holds it
        now, so the pass writes nothing more."""
        if self._holds_lease():
            return
        now = self.clock.now()
        with self.engine.begin() as conn:
            held = acquire_lease(conn, role=self.name, owner=self.owner, now=now,
                                 duration=self.lease)
        self._note_lease(held, now)
        if not held:
            raise LeaseLost(self.name)

    def _holds_lease(self) -> bool:
        """True while the lease this instance renewed lately has at least half its length left:
        the pass can start without a lease transaction (no one else can take it before then)."""
        return (self.has_lease and self._lease_until is not None
                and self._lease_until - self.clock.now() >= self.lease / 2)

    def _take_lease(self) -> bool:
        if self._holds_lease():
            return True
        now = self.clock.now()
        with self.engine.begin() as conn:
            held = acquire_lease(conn, role=self.name, owner=self.owner, now=now,
                                 duration=self.lease, holder_gone=self._holder_gone)
        self._note_lease(held, now)
        return held

    def _holder_gone(self, holder: str) -> bool:
        gone = holder != self.owner and holder_is_gone(holder, self.host)
        if gone:
            log.info("%s: the holder of the lease (%s) is gone; taking over", self.name, holder)
        return gone

    def _note_lease(self, held: bool, now: datetime) -> None:
        self._lease_until = now + self.lease if held else None
        if held != self.has_lease:
            RECORDER.inc(DAEMON_LEASE_CHANGES,
                         {"daemon": self.name, "change": "acquired" if held else "lost"})
            if held:
                log.info("%s: this instance (%s) is now active", self.name, self.owner)
            else:
                log.info("%s: another instance is active; waiting", self.name)
        self.has_lease = held

    def _beat(self) -> None:
        """The heartbeat of a pass, and the lease renewed in the same transaction."""
        now = self.clock.now()
        pending = RECORDER.drain()  # the pass's counts go with its heartbeat: one more statement
        with restore_on_error(pending), self.engine.begin() as conn:
            add_counters(conn, pending)
            held = acquire_lease(conn, role=self.name, owner=self.owner, now=now,
                                 duration=self.lease)
            if held:  # a lost lease: the new holder's beats are the role's
                record_heartbeat(conn, name=self.name, host=self.host, pid=self.pid,
                                 started_at=self.started_at, now=now,
                                 interval_seconds=self.pause().total_seconds(),
                                 passes=self.passes, failures=self.failures)
        self._note_lease(held, now)

    def _release(self) -> None:
        if not self.has_lease:
            return
        try:
            with self.engine.begin() as conn:
                release_lease(conn, role=self.name, owner=self.owner)
            self.has_lease = False
            self._lease_until = None
        except Exception:
            log.warning("%s: could not release its lease; it will expire", self.name,
                        exc_info=True)


class OarDaemon(Daemon):
    """A grid-wide daemon that calls the clusters' OAR APIs (the updater, nikita, the collector),
    built from the process's `DaemonContext`; `self.oar(cluster)` is that cluster's client, from
    the process's one client cache (`cigri.app.OarClients`). Call it with the cluster row read in
    the current pass: an edited cluster (URL, auth, chunk size, timeout) gets a new client."""

    def __init__(self, context: DaemonContext, *, interval: timedelta | None = None,
                 lease: timedelta | None = None, owner: str | None = None) -> None:
        super().__init__(engine=context.engine, settings=context.settings, clock=context.clock,
                         stop=context.stop, interval=interval, lease=lease, owner=owner)
        self.oar: app.OarFactory = context.oar_factory


def record_pass(name: str, seconds: float, *, failed: bool) -> None:
    """Count one pass of daemon `name` (published at the next flush)."""
    labels = {"daemon": name}
    RECORDER.inc(DAEMON_FAILURES if failed else DAEMON_PASSES, labels)
    RECORDER.observe(DAEMON_PASS_DURATION, labels, max(0.0, seconds))


@contextmanager
def restore_on_error(pending: dict[Series, float]) -> Iterator[None]:
    """Give drained counts back to the recorder when the transaction writing them fails."""
    try:
        yield
    except BaseException:
        RECORDER.restore(pending)
        raise


def flush_metrics(engine: Engine) -> None:
    """Write the process's pending counts in a transaction of their own (after a failed pass,
    which writes no heartbeat); kept for the next flush when the database is out of reach."""
    pending = RECORDER.drain()
    try:
        with restore_on_error(pending), engine.begin() as conn:
            add_counters(conn, pending)
    except Exception:
        log.debug("could not write the metrics; kept for the next pass", exc_info=True)


def start_listener(engine: Engine, channels: Sequence[str], *, stop: threading.Event,
                   on_notify: Callable[[], None], name: str) -> threading.Thread | None:
    """On PostgreSQL, a thread that LISTENs on `channels` and calls `on_notify` for each
    notification until `stop` is set (None on SQLite or without channels). One thread and one
    connection serve every daemon of a process that shares the channels (the runner's clusters)."""
    if not channels or engine.dialect.name != "postgresql":
        return None
    thread = threading.Thread(target=_listen, args=(engine, list(channels), stop, on_notify, name),
                              daemon=True, name=f"{name}-listen")
    thread.start()
    return thread


def _listen(engine: Engine, channels: list[str], stop: threading.Event,
            on_notify: Callable[[], None], name: str) -> None:
    """LISTEN on a dedicated autocommit connection; wait in LISTEN_SLICE_SECONDS slices so `stop`
    is seen."""
    import psycopg

    url = make_url(engine.url.render_as_string(hide_password=False))
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for channel in channels:
                    conn.execute(f'LISTEN "{channel}"')
                while not stop.is_set():
                    for _notice in conn.notifies(timeout=LISTEN_SLICE_SECONDS, stop_after=1):
                        on_notify()
        except Exception:
            log.debug("%s: listener lost its connection; polling only for now", name,
                      exc_info=True)
            stop.wait(5.0)


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`; the loop ends between units of work."""

    def _handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping after the current unit of work",
                 signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


@contextmanager
def daemon_context(name: str) -> Iterator[DaemonContext]:
    """Load settings, set up logging, build the engine and the OAR-client factory, install
    signal handlers; dispose of the engine at the end. For daemon mains that need more than one
    `Daemon` (the runner)."""
    try:
        settings = app.load()
    except ConfigError as error:
        sys.exit(f"{name}: {error.message}")
    app.setup_logging(settings, name=name)
    engine = app.build_engine(settings)
    context = DaemonContext.for_process(settings, engine)
    install_signal_handlers(context.stop)
    try:
        yield context
    finally:
        engine.dispose()


def main(factory: Callable[[DaemonContext], Daemon], *, name: str) -> None:
    """Run one daemon as a process: exit 0 on SIGTERM/SIGINT, 1 after too many failures."""
    with daemon_context(name) as context:
        daemon = factory(context)
        log.info("%s starting (pid %d, interval %s)", daemon.name, daemon.pid, daemon.interval)
        try:
            daemon.run()
        except Exception:
            log.critical("%s exits after %d failed passes in a row", daemon.name,
                         daemon.failures)
            sys.exit(1)
        log.info("%s stopped", daemon.name)
