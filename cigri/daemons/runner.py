"""The runner process (`cigri-runner`): turns queued tasks into OAR jobs, one loop per enabled
cluster (v3 §3.1).

This module is the process: it runs a `ClusterRunner` thread per enabled cluster
(`cigri.daemons.cluster_runner`: the pass, the taps, the injection policy), each holding the lease
`runner:<cluster>`, so only one instance per cluster is active across hosts; clusters added or
enabled later are picked up without a restart, disabled ones are dropped. It holds one LISTEN
connection for all its loops. A failed cluster discovery (the database away for a moment) is
retried like a failed pass. Submission and reconciliation (crash-safe intents) are
`cigri.daemons.submission`'s; what is asked of OAR is built by `cigri.domain.launch_requests`.
Polling job states on OAR is the updater's job (the runner reads `remote_waiting` counts from the
database); killing is nikita's.

Settings: RUNNER_MIN_CYCLE_DURATION (pass interval), RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS,
RUNNER_TAP_INCREASE_FACTOR, RUNNER_TAP_INCREASE_MAX, RUNNER_TAP_GRACE_PERIOD, DEFAULT_JOB_RESOURCES,
DEFAULT_JOB_WALLTIME, LEASE_SECONDS, REST_QUERIES_TIMEOUT, RUNNER_MAX_TEMPORAL_GROUPED_JOBS,
RUNNER_TEMPORAL_GROUPING_DURATION, GRID_USAGE_UPDATE_PERIOD, RUNNER_INJECTION_POLICY,
RUNNER_WAITING_REFERENCE, RUNNER_MAX_JOBS_PER_PASS, RUNNER_PI_KP, RUNNER_PI_KI.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import timedelta

from cigri.daemons.base import (
    DaemonContext,
    daemon_context,
    first_line,
    is_database_outage,
    start_listener,
)
from cigri.daemons.cluster_runner import ClusterRunner
from cigri.storage.clusters import list_clusters

log = logging.getLogger(__name__)


class RunnerProcess:
    """One runner thread per enabled cluster; picks up new and re-enabled clusters, drops disabled
    ones. `run` returns when `stop` is set, and raises if a cluster thread died."""

    def __init__(self, context: DaemonContext, *, interval: timedelta | None = None,
                 discovery_interval: timedelta = timedelta(seconds=5)) -> None:
        self.context = context
        self.engine = context.engine
        self.stop = context.stop
        self.interval = interval
        self.discovery_interval = discovery_interval
        self.runners: dict[int, tuple[ClusterRunner, threading.Thread, threading.Event]] = {}
        self._awake: tuple[ClusterRunner, ...] = ()  # what a notification wakes (swapped whole)
        self.failed: list[str] = []
        self.discovery_failures = 0  # failed discoveries in a row
        self.listening = False  # this process's LISTEN thread runs (PostgreSQL)

    def discover(self) -> None:
        with self.engine.begin() as conn:
            enabled = {cluster.id: cluster for cluster in list_clusters(conn, enabled_only=True)}
        for cluster_id, (runner, _thread, own_stop) in list(self.runners.items()):
            if cluster_id not in enabled:
                log.info("%s: cluster disabled or removed, stopping its loop", runner.name)
                own_stop.set()
                del self.runners[cluster_id]
        for cluster_id, cluster in enabled.items():
            known = self.runners.get(cluster_id)
            if known is not None and known[1].is_alive():
                continue
            own_stop = threading.Event()
            runner = ClusterRunner(dataclasses.replace(self.context, stop=own_stop),
                                   cluster=cluster, interval=self.interval, listen=False)
            runner.listening = self.listening  # this process's listener wakes it (idle stretch)
            thread = threading.Thread(target=self._run_one, args=(runner,), daemon=True,
                                      name=runner.name)
            self.runners[cluster_id] = (runner, thread, own_stop)
            thread.start()
            log.info("%s: loop started", runner.name)
        self._awake = tuple(runner for runner, _thread, _stop in self.runners.values())

    def _discover_once(self) -> None:
        """A discovery that fails (the database away for a moment) is a failed pass: logged,
        retried at the next discovery; DAEMON_MAX_CONSECUTIVE_FAILURES in a row stop the process
        (exit status 1), as a cluster loop's failures do. The running loops go on meanwhile."""
        try:
            self.discover()
            self.discovery_failures = 0
        except Exception as error:
            self.discovery_failures += 1
            if is_database_outage(error):
                log.error("runner: cluster discovery failed (%d in a row): database error: %s",
                          self.discovery_failures, first_line(error))
            else:
                log.exception("runner: cluster discovery failed (%d in a row)",
                              self.discovery_failures)
            if self.discovery_failures >= self.context.settings.DAEMON_MAX_CONSECUTIVE_FAILURES:
                self.failed.append("cluster discovery")
                self.stop.set()

    def wake_all(self) -> None:
        """A `cigri_runner` notification: every cluster loop starts its next pass now."""
        for runner in self._awake:
            runner.wake()

    def _run_one(self, runner: ClusterRunner) -> None:
        try:
            runner.run()
        except Exception:
            log.critical("%s: too many failed passes", runner.name)
            self.failed.append(runner.name)
            self.stop.set()

    def run(self) -> None:
        # one LISTEN connection for the whole process, not one per cluster
        self.listening = start_listener(self.engine, [f"cigri_{ClusterRunner.role}"],
                                        stop=self.stop, on_notify=self.wake_all,
                                        name="runner") is not None
        try:
            while not self.stop.is_set():
                self._discover_once()
                self.stop.wait(self.discovery_interval.total_seconds())
        finally:
            for _runner, _thread, own_stop in self.runners.values():
                own_stop.set()
            for _runner, thread, _own_stop in self.runners.values():
                thread.join(timeout=30)
        if self.failed:
            raise RuntimeError(f"runner loops failed: {', '.join(self.failed)}")


def main() -> None:
    """`cigri-runner`: every enabled cluster's loop in one process."""
    import sys

    with daemon_context("runner") as context:
        try:
            RunnerProcess(context).run()
        except RuntimeError as error:
            log.critical("%s", error)
            sys.exit(1)
