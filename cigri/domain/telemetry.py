"""What a process counts between two flushes: counters and histograms that only the daemons (and
the OAR client layer) can know, accumulated in memory and drained as deltas.

Pure (no I/O). `RECORDER` is the process's one recorder: the OAR HTTP layer and the daemons add to
it, and the daemon frame drains it at the end of each pass into the database
(`cigri.storage.metrics.add_counters`, one statement), where every process's deltas add up, so
`/metrics` covers the whole grid whichever host each daemon runs on.

A series is a metric name plus sorted (label, value) pairs; label values must be bounded (a
cluster, a daemon, a state, a cause): never a job id, a user or a parameter. A histogram is kept
as Prometheus exposes it: one cumulative `<name>_bucket` series per bound (`le`), `<name>_sum` and
`<name>_count`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Final

Labels = tuple[tuple[str, str], ...]
Series = tuple[str, Labels]

# Names of the daemon-published metrics (see docs/metrics.md).
DAEMON_PASSES: Final = "cigri_daemon_passes_total"
DAEMON_FAILURES: Final = "cigri_daemon_pass_failures_total"
DAEMON_PASS_DURATION: Final = "cigri_daemon_pass_duration_seconds"
DAEMON_LEASE_CHANGES: Final = "cigri_daemon_lease_changes_total"
OAR_REQUESTS: Final = "cigri_oar_requests_total"
OAR_REQUEST_DURATION: Final = "cigri_oar_request_duration_seconds"
JOBS_SUBMITTED: Final = "cigri_jobs_submitted_total"
JOBS_RESUBMITTED: Final = "cigri_jobs_resubmitted_total"

# Bucket bounds in seconds (the +Inf bucket is implied).
PASS_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
OAR_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HISTOGRAMS: Final[Mapping[str, Sequence[float]]] = {
    DAEMON_PASS_DURATION: PASS_BUCKETS, OAR_REQUEST_DURATION: OAR_BUCKETS}


def labels_of(values: Mapping[str, str]) -> Labels:
    """The canonical (sorted) form of a label set."""
    return tuple(sorted((key, str(value)) for key, value in values.items()))


def format_bound(bound: float) -> str:
    """A bucket bound as Prometheus writes it (`0.5`, `1.0`, `+Inf`)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Recorder:
    """Counters and histograms of one process since its last `drain`, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deltas: dict[Series, float] = {}

    def inc(self, name: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
        """Add `amount` to the counter `name` with `labels`."""
        if amount:
            key = (name, labels_of(labels))
            with self._lock:
                self._deltas[key] = self._deltas.get(key, 0.0) + amount

    def observe(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """One observation of the histogram `name` (its buckets are `HISTOGRAMS[name]`)."""
        base = dict(labels)
        rows: list[Series] = [(f"{name}_count", labels_of(base))]
        for bound in (*HISTOGRAMS[name], float("inf")):
            if value <= bound:
                rows.append((f"{name}_bucket", labels_of({**base, "le": format_bound(bound)})))
        with self._lock:
            for key in rows:
                self._deltas[key] = self._deltas.get(key, 0.0) + 1.0
            total = (f"{name}_sum", labels_of(base))
            self._deltas[total] = self._deltas.get(total, 0.0) + value

    def drain(self) -> dict[Series, float]:
        """Everything counted since the last drain; the recorder starts again from zero."""
        with self._lock:
            deltas, self._deltas = self._deltas, {}
        return deltas

    def restore(self, deltas: Mapping[Series, float]) -> None:
        """Put back deltas a flush could not write, so they go with the next one."""
        with self._lock:
            for key, value in deltas.items():
                self._deltas[key] = self._deltas.get(key, 0.0) + value


RECORDER: Final = Recorder()
