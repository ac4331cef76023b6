"""Periodic maintenance (`cigri maintenance`, cron, systemd timer, or almighty's APScheduler in
one-host mode): purge or archive finished campaigns older than `PURGE_AFTER_DAYS`, sample grid
usage (`grid_usage`, v3 updator §3.3.4), drop old outbox messages and usage samples, fold the
per-session failure and resubmission counts (`campaign_cluster_event_counts`), vacuum.

Each step is its own short transaction; OAR is read before the usage transaction opens. A step that
fails is logged and the others still run. Settings: PURGE_AFTER_DAYS, GRID_USAGE_UPDATE_PERIOD.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine

from cigri.config import Settings
from cigri.domain.clock import Clock
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi, OarError
from cigri.domain.stats import UsageSample, compute_usage
from cigri.storage import maintenance as store
from cigri.storage import metrics as metrics_store
from cigri.storage import outbox
from cigri.storage import stats as stats_store
from cigri.storage.clusters import list_clusters
from cigri.storage.events import list_blacklisted_clusters

log = logging.getLogger(__name__)

OarFactory = Callable[[Cluster], OarApi]
OUTBOX_RETENTION: Final = timedelta(days=30)
USAGE_RETENTION: Final = timedelta(days=365)


@dataclass
class MaintenanceReport:
    purged: list[int] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    usage_samples: int = 0
    outbox_deleted: int = 0
    event_counts_folded: int = 0
    bag_counts_folded: int = 0
    vacuumed: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"purged": self.purged, "archived": self.archived,
                "usage_samples": self.usage_samples, "outbox_deleted": self.outbox_deleted,
                "event_counts_folded": self.event_counts_folded,
                "bag_counts_folded": self.bag_counts_folded, "vacuumed": self.vacuumed,
                "errors": self.errors}


def purge_old_campaigns(engine: Engine, *, now: datetime, days: int,
                        archive_directory: Path | None = None, dry_run: bool = False,
                        grid_user: str | None = None) -> tuple[list[int], list[str]]:
    """Delete the finished campaigns whose end is more than `days` days before `now` (0: none),
    after writing each to `<archive_directory>/campaign-<id>.json` when asked. One transaction per
    campaign, so a large purge never holds long locks."""
    if days <= 0:
        return [], []
    with engine.begin() as conn:
        candidates = store.list_purgeable_campaigns(
            conn, finished_before=now - timedelta(days=days), grid_user=grid_user)
    if dry_run:
        return candidates, []
    purged, archived = [], []
    for campaign_id in candidates:
        with engine.begin() as conn:
            if archive_directory is not None:
                archive_directory.mkdir(parents=True, exist_ok=True)
                path = archive_directory / f"campaign-{campaign_id}.json"
                path.write_text(json.dumps(store.export_campaign(conn, campaign_id), indent=1))
                archived.append(str(path))
            purged += [campaign_id] if store.purge_campaigns(conn, [campaign_id]) else []
    if purged:
        log.info("maintenance: purged %d campaigns older than %d days", len(purged), days,
                 extra={"action": "purge"})
    return purged, archived


def sample_grid_usage(engine: Engine, oar_factory: OarFactory, *, now: datetime,
                      period_seconds: int, force: bool = False) -> int:
    """One `grid_usage` row per enabled, non-blacklisted cluster, unless the newest sample is
    younger than `period_seconds` (0 disables sampling). Returns how many rows were written.

    Per cluster, two OAR reads (resources, and every user's jobs holding resources) outside any
    transaction: `used_resources` counts the units busy with any running job (v3 §3.3.4),
    `used_by_cigri` those busy with the jobs cigri knows as running there."""
    if period_seconds <= 0 and not force:
        return 0
    with engine.begin() as conn:
        last = stats_store.last_grid_usage_date(conn)
        if not force and last is not None and now - last < timedelta(seconds=period_seconds):
            return 0
        blacklisted = list_blacklisted_clusters(conn)
        clusters = [c for c in list_clusters(conn, enabled_only=True) if c.id not in blacklisted]
        running = {c.id: set(stats_store.list_running_remote_ids(conn, c.id)) for c in clusters}
    samples: list[UsageSample] = []
    for cluster in clusters:
        try:
            oar = oar_factory(cluster)
            resources = oar.get_resources()
            busy_jobs = oar.get_running_jobs()
        except OarError as error:
            log.warning("maintenance: no usage from %s: %s", cluster.name, error)
            continue
        busy = {rid for job in busy_jobs for rid in job.resource_ids}
        by_cigri = {rid for job in busy_jobs if job.id in running[cluster.id]
                    for rid in job.resource_ids}
        samples.append(compute_usage(cluster.id, resources, busy_resource_ids=busy,
                                     cigri_resource_ids=by_cigri,
                                     unit=cluster.resource_unit, now_epoch=now.timestamp()))
    with engine.begin() as conn:
        stats_store.record_grid_usage(conn, samples, now=now)
    if samples:
        log.info("maintenance: grid usage sampled on %d clusters", len(samples),
                 extra={"action": "sample_grid_usage"})
    return len(samples)


def run_maintenance(engine: Engine, settings: Settings, clock: Clock, *,
                    oar_factory: OarFactory | None = None, purge: bool = True,
                    archive_directory: Path | None = None, sample_usage: bool = True,
                    vacuum: bool = False, dry_run: bool = False) -> MaintenanceReport:
    """Every maintenance step in order; the report says what was done and what failed."""
    report = MaintenanceReport()
    now = clock.now()
    if purge:
        try:
            report.purged, report.archived = purge_old_campaigns(
                engine, now=now, days=settings.PURGE_AFTER_DAYS,
                archive_directory=archive_directory, dry_run=dry_run)
        except Exception as error:  # one failing step must not stop the others
            log.exception("maintenance: purge failed")
            report.errors.append(f"purge: {error}")
    if sample_usage and oar_factory is not None and not dry_run:
        try:
            report.usage_samples = sample_grid_usage(
                engine, oar_factory, now=now, period_seconds=settings.GRID_USAGE_UPDATE_PERIOD)
        except Exception as error:
            log.exception("maintenance: grid usage failed")
            report.errors.append(f"grid usage: {error}")
    if not dry_run:
        with engine.begin() as conn:
            report.outbox_deleted = outbox.purge_sent_messages(conn, before=now - OUTBOX_RETENTION)
            stats_store.purge_grid_usage(conn, before=now - USAGE_RETENTION)
        try:
            with engine.begin() as conn:
                report.event_counts_folded = stats_store.compact_event_counts(conn)
            if report.event_counts_folded:
                log.info("maintenance: folded %d event count rows", report.event_counts_folded,
                         extra={"action": "fold_event_counts"})
        except Exception as error:
            log.exception("maintenance: folding the event counts failed")
            report.errors.append(f"event counts: {error}")
        try:
            with engine.begin() as conn:
                report.bag_counts_folded = metrics_store.compact_bag_counts(conn)
        except Exception as error:
            log.exception("maintenance: folding the bag counts failed")
            report.errors.append(f"bag counts: {error}")
    if vacuum and not dry_run:
        try:
            store.vacuum(engine)
            report.vacuumed = True
            log.info("maintenance: database vacuumed", extra={"action": "vacuum"})
        except Exception as error:
            log.exception("maintenance: vacuum failed")
            report.errors.append(f"vacuum: {error}")
    return report


def schedule_maintenance(scheduler: Any, engine: Engine, settings: Settings, clock: Clock, *,
                         oar_factory: OarFactory | None = None) -> None:
    """Add the maintenance jobs to an APScheduler 3 `BaseScheduler` (almighty in one-host mode):
    grid usage at start then every GRID_USAGE_UPDATE_PERIOD seconds, the purge hourly, a vacuum nightly at
    03:30 — the same schedule as `etc/cron.d/cigri`."""
    if settings.GRID_USAGE_UPDATE_PERIOD > 0 and oar_factory is not None:
        factory = oar_factory
        scheduler.add_job(
            lambda: sample_grid_usage(engine, factory, now=clock.now(),
                                      period_seconds=settings.GRID_USAGE_UPDATE_PERIOD),
            "interval", seconds=settings.GRID_USAGE_UPDATE_PERIOD, id="cigri-grid-usage",
            replace_existing=True, coalesce=True, max_instances=1,
            # a sample at once: the capacity injection policy reads the free resources from it
            next_run_time=datetime.now(UTC))
    scheduler.add_job(
        lambda: run_maintenance(engine, settings, clock, sample_usage=False),
        "interval", hours=1, id="cigri-purge", replace_existing=True, coalesce=True,
        max_instances=1)
    scheduler.add_job(
        lambda: run_maintenance(engine, settings, clock, purge=False, sample_usage=False,
                                vacuum=True),
        "cron", hour=3, minute=30, id="cigri-vacuum", replace_existing=True, coalesce=True,
        max_instances=1)
