"""Campaign schedules (issue 13): a JDL submitted later (`start_at`) or every period (a cron
expression or an interval, in the schedule's own time zone), with `{DATE}`-style macros, optionally
skipping a period while the previous campaign still runs.

The calendar arithmetic is APScheduler's (`CronTrigger`, `IntervalTrigger`, `DateTrigger`), not
ours. Pure: no I/O; `cigri.storage.schedules` keeps the rows and the automations daemon submits.

Macros, replaced in every string of the JDL at each run, in the schedule's time zone: `{DATE}`
(2026-01-31), `{DATETIME}` (2026-01-31T02:00), `{TIMESTAMP}` (epoch seconds). Other `{...}` (the
JDL's own macros, e.g. `{TASK}` in `output_file`) are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from cigri.domain.automations import DefinitionError

MAX_EVERY_MINUTES: Final = 366 * 24 * 60


class ScheduleError(DefinitionError):
    what = "schedule"


@dataclass(frozen=True, kw_only=True)
class ScheduleSpec:
    jdl: Mapping[str, Any]
    time_zone: str = "UTC"
    cron: str | None = None
    every: timedelta | None = None
    start_at: datetime | None = None
    skip_if_running: bool = False

    @property
    def recurring(self) -> bool:
        return self.cron is not None or self.every is not None

    def describe(self) -> str:
        if self.cron:
            when = f"cron '{self.cron}'"
        elif self.every:
            when = f"every {self.every.total_seconds() / 60:g} min"
        else:
            when = "once"
        if self.start_at:
            when += f" from {self.start_at.isoformat()}"
        return when + f" ({self.time_zone})" + (", skip while running"
                                                 if self.skip_if_running else "")

    def trigger(self) -> BaseTrigger:
        zone = ZoneInfo(self.time_zone)
        if self.cron:
            return CronTrigger.from_crontab(self.cron, timezone=zone)
        if self.every:
            return IntervalTrigger(seconds=int(self.every.total_seconds()),
                                   start_date=self.start_at, timezone=zone)
        return DateTrigger(run_date=self.start_at, timezone=zone)

    def first_run(self, now: datetime) -> datetime | None:
        """The first run at or after `now` (and `start_at`)."""
        start = max(now, self.start_at) if self.start_at else now
        if self.every and self.start_at is None:
            return now  # an interval without a start runs at once, then every period
        return _next(self.trigger(), None, start)

    def next_run(self, previous: datetime, now: datetime) -> datetime | None:
        """The run after `previous` that is not in the past (missed periods are not caught up:
        one run per wake-up); None when the schedule is over (a one-shot)."""
        if not self.recurring:
            return None
        return _next(self.trigger(), previous, max(now, previous + timedelta(seconds=1)))


def _next(trigger: BaseTrigger, previous: datetime | None, now: datetime) -> datetime | None:
    found = trigger.get_next_fire_time(previous, now)
    return None if found is None else found.astimezone(ZoneInfo("UTC"))


def parse_schedule(data: Any) -> ScheduleSpec:
    """Validate `{"jdl": {...}, "cron": "0 2 * * *" | "every_minutes": N | "start_at": ISO,
    "time_zone": "Europe/Paris", "skip_if_running": true}`; every problem in one error."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise ScheduleError(["a schedule is an object with jdl and cron, every_minutes or "
                             "start_at"])
    unknown = sorted(set(data) - {"jdl", "cron", "every_minutes", "start_at", "time_zone",
                                  "skip_if_running"})
    if unknown:
        problems.append(f"unknown keys: {', '.join(unknown)}")
    jdl = data.get("jdl")
    if not isinstance(jdl, Mapping) or not jdl:
        problems.append("jdl: the campaign's JDL (an object)")
        jdl = {}
    zone = data.get("time_zone", "UTC")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        problems.append(f"time_zone: an IANA time zone such as Europe/Paris, not {zone!r}")
        zone = "UTC"
    cron, every, start = data.get("cron"), data.get("every_minutes"), data.get("start_at")
    if cron is not None and every is not None:
        problems.append("cron and every_minutes: one or the other")
    if cron is not None:
        try:
            CronTrigger.from_crontab(str(cron), timezone=ZoneInfo(str(zone)))
        except ValueError as error:
            problems.append(f"cron: a crontab expression (minute hour day month weekday): {error}")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int | float)
                              or not 1 <= every <= MAX_EVERY_MINUTES):
        problems.append(f"every_minutes: a number of minutes, 1 to {MAX_EVERY_MINUTES}")
        every = None
    start_at = None
    if start is not None:
        try:
            start_at = datetime.fromisoformat(str(start))
            if start_at.tzinfo is None:
                start_at = start_at.replace(tzinfo=ZoneInfo(str(zone)))
        except ValueError:
            problems.append(f"start_at: an ISO date and time, not {start!r}")
    if cron is None and every is None and start is None:
        problems.append("when: cron, every_minutes or start_at")
    skip = data.get("skip_if_running", False)
    if not isinstance(skip, bool):
        problems.append("skip_if_running: true or false")
    if problems:
        raise ScheduleError(problems)
    return ScheduleSpec(jdl=dict(jdl), time_zone=str(zone), cron=None if cron is None else str(cron),
                        every=None if every is None else timedelta(minutes=float(every)),
                        start_at=start_at, skip_if_running=bool(skip))


def expand_macros(jdl: Mapping[str, Any], at: datetime, time_zone: str) -> dict[str, Any]:
    """The JDL with `{DATE}`, `{DATETIME}` and `{TIMESTAMP}` replaced in every string."""
    local = at.astimezone(ZoneInfo(time_zone))
    values = {"{DATE}": local.strftime("%Y-%m-%d"), "{DATETIME}": local.strftime("%Y-%m-%dT%H:%M"),
              "{TIMESTAMP}": str(int(at.timestamp()))}

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            for macro, text in values.items():
                value = value.replace(macro, text)
            return value
        if isinstance(value, Mapping):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return dict(walk(json.loads(json.dumps(jdl))))
