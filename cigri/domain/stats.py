"""Campaign statistics (v3's spritz, server §2.4 and §3.9): mean and spread of job duration,
throughput, failure and resubmission rates, remaining time (ETA), per campaign and per cluster;
and the grid-usage sample of one cluster (`grid_usage`, §3.3.4).

Pure: takes counts, durations and OAR resources, returns figures. The SQL that gathers them is
`cigri.storage.stats`; the API and gridstat show them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cigri.domain.oar import OarResource


@dataclass(frozen=True, kw_only=True)
class DurationStats:
    count: int
    mean_seconds: float | None
    stddev_seconds: float | None


def duration_stats(durations: Iterable[float]) -> DurationStats:
    """Mean and population standard deviation (v3's definition) of job durations in seconds."""
    values = [d for d in durations if d >= 0]
    if not values:
        return DurationStats(count=0, mean_seconds=None, stddev_seconds=None)
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / len(values)
    return DurationStats(count=len(values), mean_seconds=mean, stddev_seconds=math.sqrt(variance))


def duration_stats_from_sums(count: int, total: float | None, total_squares: float | None
                             ) -> DurationStats:
    """The same figures from SQL aggregates (count, sum, sum of squares)."""
    if count <= 0 or total is None or total_squares is None:
        return DurationStats(count=0, mean_seconds=None, stddev_seconds=None)
    mean = total / count
    variance = max(total_squares / count - mean * mean, 0.0)  # rounding can dip below zero
    return DurationStats(count=count, mean_seconds=mean, stddev_seconds=math.sqrt(variance))


def rate(part: int, rest: int) -> float:
    """part / (part + rest), 0 when both are 0 (v3's failure and resubmit rates)."""
    return part / (part + rest) if part + rest else 0.0


def throughput_per_hour(finished_in_window: int, window_seconds: float) -> float:
    """Jobs finished per hour over the window."""
    return finished_in_window * 3600.0 / window_seconds if window_seconds > 0 else 0.0


def eta_seconds(remaining_jobs: int, jobs_per_hour: float) -> float | None:
    """Seconds until the remaining jobs are done at the current throughput; None when nothing
    finishes (v3 divided by 1e-16 and printed absurd times)."""
    if remaining_jobs <= 0:
        return 0.0
    if jobs_per_hour <= 0:
        return None
    return remaining_jobs * 3600.0 / jobs_per_hour


@dataclass(frozen=True, kw_only=True)
class ClusterStats:
    """A campaign's figures on one cluster (or on the whole grid when `cluster_id` is None)."""

    campaign_id: int
    cluster_id: int | None
    cluster_name: str | None
    terminated: int
    active: int
    failures: int
    resubmissions: int
    durations: DurationStats
    jobs_per_hour: float

    @property
    def failure_rate(self) -> float:
        return rate(self.failures, self.terminated)

    @property
    def resubmit_rate(self) -> float:
        return rate(self.resubmissions, self.terminated)


@dataclass(frozen=True, kw_only=True)
class CampaignForecast:
    campaign_id: int
    total_tasks: int
    finished_tasks: int
    jobs_per_hour: float
    eta_seconds: float | None

    @property
    def progress(self) -> float:
        return self.finished_tasks / self.total_tasks if self.total_tasks else 1.0


def forecast(campaign_id: int, *, total_tasks: int, finished_tasks: int,
             jobs_per_hour: float) -> CampaignForecast:
    return CampaignForecast(
        campaign_id=campaign_id, total_tasks=total_tasks, finished_tasks=finished_tasks,
        jobs_per_hour=jobs_per_hour,
        eta_seconds=eta_seconds(max(total_tasks - finished_tasks, 0), jobs_per_hour))


@dataclass(frozen=True, kw_only=True)
class UsageSample:
    cluster_id: int
    max_resources: int
    used_resources: int
    unavailable_resources: int
    used_by_cigri: int


@dataclass(frozen=True, kw_only=True)
class UsagePoint:
    """One cluster's usage samples of one period, averaged (`grid_usage_series`)."""
    start: datetime  # the period's start, a multiple of its length since the epoch
    samples: int
    max_resources: float
    used_resources: float  # cigri's jobs included
    used_by_cigri: float
    unavailable_resources: float


def compute_usage(cluster_id: int, resources: Sequence[OarResource], *,
                  busy_resource_ids: Collection[int], cigri_resource_ids: Collection[int],
                  unit: str | None = None, now_epoch: float = 0.0) -> UsageSample:
    """§3.3.4 counted in units (the value of the `unit` resource property, e.g. a core or a host;
    the resource id when unset): unavailable = not Alive, except Absent resources that can be woken
    up (`available_upto` in the future); used = units with a busy resource."""
    def unit_of(resource: OarResource) -> object:
        if unit and unit != "resource_id":
            return resource.properties.get(unit, resource.id)
        return resource.id

    units = {unit_of(r) for r in resources}
    unavailable = {unit_of(r) for r in resources
                   if r.state != "Alive"
                   and not (r.state == "Absent" and (r.available_upto or 0) > now_epoch)}
    busy = set(busy_resource_ids) | set(cigri_resource_ids)
    used = {unit_of(r) for r in resources if r.id in busy}
    by_cigri = {unit_of(r) for r in resources if r.id in set(cigri_resource_ids)}
    return UsageSample(cluster_id=cluster_id, max_resources=len(units),
                       used_resources=len(used), unavailable_resources=len(unavailable),
                       used_by_cigri=len(by_cigri))
