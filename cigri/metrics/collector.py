"""The `/metrics` collector: at each scrape, one short read-only transaction turns the grid's
state (`cigri.storage.metrics.read_grid_figures`) and the daemons' counters (`daemon_counters`)
into Prometheus metric families. Nothing is cached between scrapes, so every API process (and
`cigri metrics serve`) gives the same answer, whichever host each daemon runs on.

Before reading, the scraping process adds its own pending counts (its OAR requests) to
`daemon_counters`, in the same transaction.

Conventions: one `cigri_` prefix, seconds, `_total` only on counters, labels with bounded values
(cluster, daemon, state, event class, campaign state, cause, HTTP method and status). Per-campaign
and per-user series only with `METRICS_PER_CAMPAIGN` / `METRICS_PER_USER`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine

from cigri.config import Settings
from cigri.domain import telemetry
from cigri.domain.clock import Clock
from cigri.domain.states import CampaignState, EventClass, JobState
from cigri.domain.telemetry import Labels, Recorder, Series
from cigri.storage.metrics import GridFigures, add_counters, read_counters, read_grid_figures

log = logging.getLogger(__name__)

# Daemon-published counters: metric name (without `_total`) -> (help, label names).
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cigri_daemon_passes": ("Passes a daemon completed as the active instance.", ("daemon",)),
    "cigri_daemon_pass_failures": ("Passes that raised an error.", ("daemon",)),
    "cigri_daemon_lease_changes": (
        "Times a daemon instance became active (acquired) or stopped being active (lost).",
        ("daemon", "change")),
    "cigri_oar_requests": (
        "HTTP requests to the OAR APIs, by cluster, method and status (HTTP code, or timeout / "
        "connection_error).", ("cluster", "method", "status")),
    "cigri_jobs_submitted": ("Jobs the runner submitted to OAR.", ("cluster",)),
    "cigri_jobs_resubmitted": ("Jobs the updater put back in the bag after a failure, by cause.",
                               ("cluster", "cause")),
}
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    telemetry.DAEMON_PASS_DURATION: ("Duration of a daemon's passes.", ("daemon",)),
    telemetry.OAR_REQUEST_DURATION: ("Latency of the OAR API requests (answers and failures).",
                                     ("cluster", "method")),
}


class GridCollector(Collector):
    """Every cigri metric, read from the database at each `collect` (one scrape)."""

    def __init__(self, engine: Engine, settings: Settings, clock: Clock, *,
                 recorder: Recorder = telemetry.RECORDER) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.recorder = recorder

    def describe(self) -> list[Metric]:
        return []  # no fixed description: the families are built from the database

    def collect(self) -> Iterator[Metric]:
        pending = self.recorder.drain()
        try:
            with self.engine.begin() as conn:
                add_counters(conn, pending)
                figures = read_grid_figures(conn,
                                            per_campaign=self.settings.METRICS_PER_CAMPAIGN,
                                            per_user=self.settings.METRICS_PER_USER)
                counters = read_counters(conn)
        except Exception as error:  # a scrape must answer: say the database is out of reach
            self.recorder.restore(pending)
            log.warning("metrics: cannot read the database: %s", error)
            yield _gauge("cigri_database_up", "1 when the scrape could read the database.", [],
                         [((), 0.0)])
            return
        yield _gauge("cigri_database_up", "1 when the scrape could read the database.", [],
                     [((), 1.0)])
        yield from self._grid(figures)
        yield from _counters(counters)

    def _grid(self, figures: GridFigures) -> Iterator[Metric]:
        now = self.clock.now()
        clusters = figures.clusters
        # Every state, class and campaign state has a series, 0 included, so that dashboards and
        # alerts never meet an absent series (the label values are a fixed list).
        yield _gauge("cigri_jobs", "cigri jobs by cluster and state (terminated: task jobs only).",
                     ["cluster", "state"],
                     [((c.name, state.value), c.jobs.get(state.value, 0))
                      for c in clusters for state in JobState])
        yield _gauge("cigri_tasks_queued", "Tasks queued for a cluster's runner (jobs_to_launch).",
                     ["cluster"], [((c.name,), c.queued) for c in clusters])
        yield _gauge("cigri_tap_rate", "Sum of the open taps' rates on a cluster (jobs a runner "
                     "pass may submit).", ["cluster"], [((c.name,), c.tap_rate) for c in clusters])
        yield _gauge("cigri_cluster_enabled", "1 when the cluster is enabled.", ["cluster"],
                     [((c.name,), float(c.enabled)) for c in clusters])
        yield _gauge("cigri_cluster_blacklisted", "1 while a whole-cluster BLACKLIST is open.",
                     ["cluster"],
                     [((c.name,), float(c.blacklisted_since is not None)) for c in clusters])
        yield _gauge("cigri_cluster_blacklisted_seconds",
                     "Age of the cluster's oldest open whole-cluster BLACKLIST (0 when none).",
                     ["cluster"],
                     [((c.name,), max(0.0, (now - c.blacklisted_since).total_seconds())
                       if c.blacklisted_since is not None else 0.0) for c in clusters])
        yield _gauge("cigri_cluster_stress_factor", "The cluster's stress factor (updater).",
                     ["cluster"], [((c.name,), c.stress_factor) for c in clusters])
        yield _gauge("cigri_cluster_under_stress",
                     "1 when the stress factor is at or above STRESS_FACTOR (nothing queued).",
                     ["cluster"],
                     [((c.name,), float(c.stress_factor >= self.settings.STRESS_FACTOR))
                      for c in clusters])
        yield _gauge("cigri_tasks_waiting", "Tasks in the bag: not yet taken into a job.", [],
                     [((), figures.tasks_in_bag)])
        yield _gauge("cigri_campaigns", "Campaigns by state.", ["state"],
                     [((state.value,), figures.campaigns.get(state.value, 0))
                      for state in CampaignState])
        yield _gauge("cigri_events_open", "Open events by class.", ["class"],
                     [((class_.value,), figures.open_events.get(class_.value, 0))
                      for class_ in EventClass])
        beats = figures.heartbeats
        yield _gauge("cigri_daemon_heartbeat_age_seconds", "Seconds since the daemon's last "
                     "heartbeat.", ["daemon"],
                     [((b.name,), max(0.0, b.lateness(now).total_seconds())) for b in beats])
        yield _gauge("cigri_daemon_heartbeat_timestamp_seconds", "Unix time of the daemon's "
                     "last heartbeat.", ["daemon"], [((b.name,), b.beat_at.timestamp())
                                                     for b in beats])
        yield _gauge("cigri_daemon_interval_seconds", "The daemon's pass interval.", ["daemon"],
                     [((b.name,), b.interval_seconds) for b in beats])
        yield _gauge("cigri_daemon_late", "1 when the daemon has not beaten for 3 intervals "
                     "(as `cigri status`).", ["daemon"],
                     [((b.name,), float(b.is_late(now))) for b in beats])
        yield _gauge("cigri_daemon_consecutive_failures", "Failed passes in a row at the last "
                     "heartbeat.", ["daemon"], [((b.name,), b.failures) for b in beats])
        if figures.campaign_tasks is not None:
            yield _gauge("cigri_campaign_tasks_waiting", "Tasks in the bag per campaign "
                         "(METRICS_PER_CAMPAIGN).", ["campaign"],
                         [((str(c),), n) for c, n in sorted(figures.campaign_tasks.items())])
        if figures.user_campaigns is not None:
            yield _gauge("cigri_user_campaigns", "Campaigns by user and state "
                         "(METRICS_PER_USER).", ["user", "state"],
                         [(key, n) for key, n in sorted(figures.user_campaigns.items())])


def _gauge(name: str, documentation: str, labels: list[str],
           samples: list[tuple[tuple[str, ...], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), float(value))
    return family


def _counters(counters: dict[Series, float]) -> Iterator[Metric]:
    """The daemons' counters and histograms, from `daemon_counters` rows."""
    by_name: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
    for (name, labels), value in counters.items():
        by_name[name].append((labels, value))
    for name, (documentation, label_names) in COUNTERS.items():
        family = CounterMetricFamily(name, documentation, labels=list(label_names))
        for labels, value in sorted(by_name.get(f"{name}_total", [])):
            values = dict(labels)
            family.add_metric([values.get(label, "") for label in label_names], value)
        yield family
    for name, (documentation, label_names) in HISTOGRAMS.items():
        yield _histogram(name, documentation, label_names, by_name)


def _histogram(name: str, documentation: str, label_names: tuple[str, ...],
               by_name: dict[str, list[tuple[Labels, float]]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=list(label_names))
    buckets: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    sums: dict[tuple[str, ...], float] = {}
    counts: dict[tuple[str, ...], float] = {}
    for labels, value in by_name.get(f"{name}_bucket", []):
        values = dict(labels)
        key = tuple(values.get(label, "") for label in label_names)
        buckets[key][values["le"]] = value
    for labels, value in by_name.get(f"{name}_sum", []):
        sums[tuple(dict(labels).get(label, "") for label in label_names)] = value
    for labels, value in by_name.get(f"{name}_count", []):
        counts[tuple(dict(labels).get(label, "") for label in label_names)] = value
    bounds = [*(telemetry.format_bound(b) for b in telemetry.HISTOGRAMS[name]), "+Inf"]
    for key in sorted(counts):
        # Every bound, cumulative: a bound no observation reached holds the one below it.
        series, running = [], 0.0
        for bound in bounds:
            running = max(running, buckets[key].get(bound, 0.0))
            series.append((bound, running))
        series[-1] = ("+Inf", counts[key])
        family.add_metric(list(key), series, sums.get(key, 0.0))
    return family


def grid_registry(engine: Engine, settings: Settings, clock: Clock) -> CollectorRegistry:
    """A registry holding only cigri's metrics (no process or Python runtime series)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GridCollector(engine, settings, clock))
    return registry
