"""The night window of a cluster, and what each campaign type submits at a given time.

v3 documents two campaign types that depend on the time of day (`cigri-v3-user.md` §1.2):
`semi-best-effort` runs best-effort jobs by day and normal jobs at night; `nightly` runs normal
jobs only at night (its tasks wait in the bag by day). The night is a per-cluster window in the
cluster's time zone (a grid-wide default otherwise), for example `20:00-07:00 weekends`: every
evening from 20:00 to 07:00 the next morning, and all of Saturday and Sunday (local time).

Pure: `now` is always passed in (the daemons' injected clock), time zones come from zoneinfo.
A normal job started at night runs to its end; only new submissions follow the window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cigri.domain.clusters import Cluster
from cigri.domain.errors import CigriError

NIGHTLY: Final = "nightly"
SEMI_BEST_EFFORT: Final = "semi-best-effort"
NORMAL: Final = "normal"
# Campaign types that can submit normal (non-preemptible) OAR jobs: each one passes the same
# admission rule as `normal`, whatever the time of day.
NORMAL_JOB_TYPES: Final = frozenset({NORMAL, NIGHTLY, SEMI_BEST_EFFORT})
DEFAULT_WINDOW: Final = "20:00-07:00 weekends"
DEFAULT_TIME_ZONE: Final = "UTC"

_SPEC_RE: Final = re.compile(
    r"^\s*(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*(?P<weekends>,?\s*weekends?)?\s*$",
    re.IGNORECASE)
_WEEKEND: Final = frozenset({5, 6})  # Saturday, Sunday


class NightWindowError(CigriError):
    """A night window or time zone that cannot be read."""


class JobMode(StrEnum):
    """What a campaign submits on a cluster right now."""

    BESTEFFORT = "best-effort"
    NORMAL = "normal"
    WAIT = "wait"  # nothing: its tasks stay in the bag


def _clock_time(text: str, spec: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours > 23 or minutes > 59:
        raise NightWindowError(f"night window {spec!r}: {text} is not a time of day (00:00-23:59)")
    return time(hours, minutes)


def zone_of(name: str) -> ZoneInfo:
    """The IANA time zone `name`; raises NightWindowError naming it."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise NightWindowError(f"unknown time zone {name!r} (an IANA name such as "
                               f"Europe/Paris or UTC)") from error


@dataclass(frozen=True, kw_only=True)
class NightWindow:
    """Every day from `start` to `end` local time (crossing midnight when end <= start), and all
    of Saturday and Sunday when `weekends`. `start == end` means no nightly hours (only weekends,
    if set)."""

    start: time
    end: time
    weekends: bool
    zone: str

    @classmethod
    def parse(cls, spec: str, zone: str = DEFAULT_TIME_ZONE) -> NightWindow:
        """Read `HH:MM-HH:MM` optionally followed by `weekends`, in time zone `zone`."""
        match = _SPEC_RE.match(spec or "")
        if match is None:
            raise NightWindowError(f"night window {spec!r}: expected HH:MM-HH:MM, optionally "
                                   f"followed by 'weekends' (e.g. {DEFAULT_WINDOW!r})")
        zone_of(zone)
        return cls(start=_clock_time(match["start"], spec), end=_clock_time(match["end"], spec),
                   weekends=bool(match["weekends"]), zone=zone.strip())

    @classmethod
    def for_cluster(cls, cluster: Cluster, *, default_window: str,
                    default_zone: str) -> NightWindow:
        """A cluster's window: its own `night_window` and `time_zone`, each falling back on the
        grid-wide default (NIGHT_WINDOW, NIGHT_TIME_ZONE; also when a stored value does not read,
        which `cigri cluster set` prevents)."""
        try:
            return cls.parse(cluster.night_window or default_window,
                             cluster.time_zone or default_zone)
        except NightWindowError:
            return cls.parse(default_window, default_zone)

    @property
    def text(self) -> str:
        hours = f"{self.start:%H:%M}-{self.end:%H:%M}"
        return f"{hours} weekends" if self.weekends else hours

    def describe(self) -> str:
        """e.g. `20:00-07:00 and weekends (Europe/Paris)`."""
        hours = f"{self.start:%H:%M}-{self.end:%H:%M}"
        if self.start == self.end:
            hours = "weekends only" if self.weekends else "never"
        elif self.weekends:
            hours += " and weekends"
        return f"{hours} ({self.zone})"

    def local(self, now: datetime) -> datetime:
        return now.astimezone(zone_of(self.zone))

    def is_night(self, now: datetime) -> bool:
        """Whether `now` (an aware datetime) falls in the window."""
        local = self.local(now)
        if self.weekends and local.weekday() in _WEEKEND:
            return True
        clock = local.time().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end

    def next_change(self, now: datetime) -> datetime | None:
        """The first instant after `now` where `is_night` flips (UTC), or None if it never does.
        Candidates are the local start, end and midnight of the coming days; the state is
        constant between two consecutive candidates."""
        zone = zone_of(self.zone)
        local = now.astimezone(zone)
        current = self.is_night(now)
        candidates = []
        for offset in range(-1, 9):
            day = local.date() + timedelta(days=offset)
            for moment in (self.start, self.end, time(0)):
                candidates.append(datetime.combine(day, moment, tzinfo=zone).astimezone(UTC))
        for candidate in sorted(set(candidates)):
            if candidate > now and self.is_night(candidate) != current:
                return candidate
        return None


def job_mode(campaign_type: str, *, is_test: bool, is_night: bool) -> JobMode:
    """What a campaign of this type submits now: test mode and `normal` submit normal jobs;
    `semi-best-effort` best-effort by day and normal at night; `nightly` normal at night and
    nothing by day; anything else (`best-effort`) best-effort."""
    kind = (campaign_type or "").strip().lower()
    if is_test or kind == NORMAL:
        return JobMode.NORMAL
    if kind == SEMI_BEST_EFFORT:
        return JobMode.NORMAL if is_night else JobMode.BESTEFFORT
    if kind == NIGHTLY:
        return JobMode.NORMAL if is_night else JobMode.WAIT
    return JobMode.BESTEFFORT


def may_submit_normal_jobs(campaign_type: str, *, is_test: bool) -> bool:
    """Whether the campaign can ever submit a normal job outside test mode (admission rules apply
    to it; test mode is exempt, v3 `cigri-v3-user.md` §1.8)."""
    return not is_test and (campaign_type or "").strip().lower() in NORMAL_JOB_TYPES


_NOW: Final = {JobMode.BESTEFFORT: "best-effort jobs now", JobMode.NORMAL: "normal jobs now",
               JobMode.WAIT: "waiting for the night (nothing submitted by day)"}
_NEXT: Final = {JobMode.BESTEFFORT: "best-effort jobs from {at}",
                JobMode.NORMAL: "normal jobs from {at}",
                JobMode.WAIT: "nothing new from {at} (jobs started keep running)"}


def describe_plan(campaign_type: str, *, is_test: bool, window: NightWindow,
                  now: datetime) -> str:
    """What the campaign does now and next on a cluster, e.g. `best-effort jobs now; normal jobs
    from Thu 20:00 Europe/Paris`."""
    if is_test:
        return "test mode: normal jobs, one at a time"
    kind = (campaign_type or "").strip().lower()
    night = window.is_night(now)
    mode = job_mode(kind, is_test=False, is_night=night)
    if kind not in {NIGHTLY, SEMI_BEST_EFFORT}:
        return "normal jobs, day and night" if mode is JobMode.NORMAL \
            else "best-effort jobs, day and night"
    change = window.next_change(now)
    if change is None:
        return f"{_NOW[mode]} (night window {window.describe()})"
    later = job_mode(kind, is_test=False, is_night=not night)
    at = f"{change.astimezone(zone_of(window.zone)):%a %H:%M} {window.zone}"
    return f"{_NOW[mode]}; {_NEXT[later].format(at=at)}"
