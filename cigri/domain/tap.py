"""The tap: per (cluster, campaign) flow control of submissions (v3 §3.1.3, behaviour 14).

A tap is open or closed and has a rate, the number of jobs the runner may submit for the campaign in
one pass. It closes while jobs of the campaign wait on OAR, loses a factor per pass once it has been
closed longer than the grace period (never below the initial rate), reopens in a pass with no waiting
job, and grows by the factor (capped) after a pass that used the whole rate. Pure: the runner loads
taps, calls these functions with `now`, and stores the result.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from cigri.domain.states import TapState


@dataclass(frozen=True, kw_only=True)
class TapSettings:
    initial: int = 2  # RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS
    factor: float = 1.5  # RUNNER_TAP_INCREASE_FACTOR
    maximum: int = 100  # RUNNER_TAP_INCREASE_MAX
    grace: timedelta = timedelta(seconds=60)  # RUNNER_TAP_GRACE_PERIOD


@dataclass(frozen=True, kw_only=True)
class Tap:
    cluster_id: int
    campaign_id: int
    state: TapState = TapState.OPEN
    rate: int = 2
    close_date: datetime | None = None  # last open -> closed transition; never cleared

    @property
    def is_open(self) -> bool:
        return self.state is TapState.OPEN


def new_tap(*, cluster_id: int, campaign_id: int, settings: TapSettings) -> Tap:
    return Tap(cluster_id=cluster_id, campaign_id=campaign_id, rate=settings.initial)


def close_tap(tap: Tap, now: datetime) -> Tap:
    """Close; the date is that of the first close, a repeated close keeps it."""
    if not tap.is_open:
        return tap
    return dataclasses.replace(tap, state=TapState.CLOSED, close_date=now)


def open_tap(tap: Tap) -> Tap:
    return tap if tap.is_open else dataclasses.replace(tap, state=TapState.OPEN)


def is_in_grace(tap: Tap, now: datetime, settings: TapSettings) -> bool:
    """Closed for less than the grace period: give the cluster time to start the waiting jobs."""
    return (not tap.is_open and tap.close_date is not None
            and now - tap.close_date < settings.grace)


def decrease_tap(tap: Tap, now: datetime, settings: TapSettings) -> Tap:
    """Divide the rate by the factor, unless the tap closed less than the grace period ago."""
    if tap.close_date is not None and now - tap.close_date < settings.grace:
        return tap
    if tap.rate <= settings.initial:
        return tap
    return dataclasses.replace(tap, rate=max(settings.initial, math.floor(tap.rate / settings.factor)))


def increase_tap(tap: Tap, settings: TapSettings) -> Tap:
    """Multiply the rate by the factor, capped (3, 4, 6, 9, 13, ... 100 with 3 and 1.5)."""
    if tap.rate >= settings.maximum:
        return tap
    grown = max(tap.rate + 1, math.floor(tap.rate * settings.factor))
    return dataclasses.replace(tap, rate=min(settings.maximum, grown))


def reset_tap(tap: Tap, now: datetime, settings: TapSettings) -> Tap:
    """Cluster blacklisted: back to the initial rate, closed."""
    return dataclasses.replace(close_tap(tap, now), rate=settings.initial)


def plan_tap(tap: Tap, *, has_waiting_jobs: bool, now: datetime, settings: TapSettings) -> Tap:
    """One runner pass over a tap: close while jobs wait (decreasing after the grace period),
    reopen otherwise."""
    if has_waiting_jobs:
        return decrease_tap(close_tap(tap, now), now, settings)
    return open_tap(tap)


def should_increase(tap: Tap, *, submitted: int, settings: TapSettings) -> bool:
    """v3: grow after a submission that used (almost) the whole rate."""
    return tap.is_open and submitted > 0 and tap.rate < submitted * settings.factor + 1
