"""How the dashboard words and formats what storage returns: durations, ages, a job's end, the
answer to "is my campaign progressing, and if not why?". Pure functions of their arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cigri.domain.schedules import ScheduleSpec
from cigri.domain.stats import UsagePoint

# Why a job ended, from the events recorded on it (the first that says so wins).
_ENDINGS: Final = (
    ("USER_FRAG", "cancelled by its owner"),
    ("FRAG_RESUBMIT_BY_NIKITA", "killed to make room (best-effort), resubmitted"),
    ("OAR_AUTO_RESUBMIT", "killed by OAR (best-effort), resubmitted"),
    ("RESUBMIT", "killed (best-effort), resubmitted"),
    ("CIGRI_WALLTIME", "stopped at cigri's walltime"),
    ("WALLTIME", "reached its walltime"),
    ("EXIT_ERROR", "error (non-zero exit)"),
    ("REMOTE_WAITING_FRAG", "waited too long in the cluster's queue"),
    ("QUEUED_FOR_TOO_LONG", "waited too long in the cluster's queue"),
)


def duration(seconds: float | None) -> str:
    """3d4h, 2h05m, 4m07s, 12s; an em dash for nothing."""
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def stamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "—"


def percent(part: int, whole: int) -> float:
    return 0.0 if whole <= 0 else min(100.0, 100.0 * part / whole)


def schedule_kind(spec: ScheduleSpec) -> tuple[str, str]:
    """A schedule's kind (at, cron, every) and its expression, as the schedules page shows them."""
    start = spec.start_at.strftime("%Y-%m-%d %H:%M") if spec.start_at else ""
    if spec.cron:
        return "cron", spec.cron
    if spec.every:
        minutes = f"{spec.every.total_seconds() / 60:g} min"
        return "every", f"{minutes} from {start}" if start else minutes
    return "at", start


def job_ending(state: str, return_code: int | None, codes: Sequence[str]) -> str:
    """Why a job ended (or that it has not), for a task's history."""
    for code, words in _ENDINGS:
        if code in codes:
            return words
    if state == "terminated":
        return "done" if not return_code else f"done (exit {return_code})"
    if state == "event":
        return f"failed ({', '.join(codes)})" if codes else "failed"
    return "—"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    level: str  # ok, wait, warn, stop, done
    text: str


def verdict(*, state: str, total: int, finished: int, running: int, waiting: int, queued: int,
            open_events: Sequence[Mapping[str, Any]], blacklisted: Sequence[str],
            jobs_per_hour: float, eta_seconds: float | None) -> Verdict:
    """The first line of the campaign page: is it progressing, and if not, why (what the user
    must fix, and what only an admin can)."""
    if state == "terminated":
        return Verdict(level="done", text=f"Finished: {finished} of {total} tasks done.")
    if state == "cancelled":
        return Verdict(level="stop", text=f"Cancelled after {finished} of {total} tasks.")
    if state == "paused":
        return Verdict(level="stop", text="Paused: no new job is started until you resume it "
                       f"({running + waiting} still on the clusters).")
    if running:
        rate = f", {jobs_per_hour:.0f} tasks/h" if jobs_per_hour else ""
        eta = f", about {duration(eta_seconds)} left" if eta_seconds is not None else ""
        head, level = f"Progressing: {running} running, {waiting} waiting{rate}{eta}.", "ok"
    elif waiting:
        head, level = (f"Waiting: {waiting} jobs in the clusters' queues, none running yet.",
                       "wait")
    elif queued:
        head, level = f"Starting: {queued} tasks queued for the clusters.", "wait"
    elif finished >= total > 0:
        head, level = "All tasks done; finishing up.", "done"
    else:
        head, level = "Not running: no job on any cluster.", "wait"
    yours = [e for e in open_events if e.get("campaign_id") is not None]
    reasons = []
    if yours:
        first = next((e for e in yours if e["code"] != "BLACKLIST"), yours[0])
        where = f" on {first['cluster_name']}" if first.get("cluster_name") else ""
        said = f": {first['message']}" if first.get("message") else ""
        count = f"{len(yours)} open events need" if len(yours) > 1 else "An open event needs"
        reasons.append(f"{count} you ({first['code']}{where}{said}): fix them, with or without "
                       "resubmission, below.")
        level = "warn"
    unavailable = sorted(set(blacklisted) | {
        str(e["cluster_name"]) for e in open_events
        if e.get("campaign_id") is None and e.get("cluster_name")})
    if unavailable:
        codes = sorted({str(e["code"]) for e in open_events if e.get("campaign_id") is None
                        and e["code"] != "BLACKLIST"})
        why = f" ({', '.join(codes)})" if codes else ""
        reasons.append(f"Not used now: {', '.join(unavailable)}{why}; an admin must act, "
                       "nothing for you to do.")
        if not running:
            level = "warn"
    if not reasons and level == "wait" and not (waiting or queued):
        reasons.append("The meta-scheduler gives it clusters at its next pass.")
    return Verdict(level=level, text=" ".join([head, *reasons]))


def minute_series(counts: Mapping[datetime, int], start: datetime, minutes: int) -> list[int]:
    """`minutes` consecutive per-minute counts from `start` (a minute start), 0 where absent."""
    return [counts.get(start + timedelta(minutes=index), 0) for index in range(minutes)]


def bar_heights(values: Sequence[int], height: int = 36) -> list[int]:
    """Heights of a bar chart of `values` scaled to `height` (a non-zero value shows)."""
    peak = max(values, default=0)
    if peak <= 0:
        return [0 for _ in values]
    return [max(1, round(height * value / peak)) if value else 0 for value in values]


USAGE_BAR: Final = 3  # SVG units per period; the chart is scaled to its box
USAGE_HEIGHT: Final = 48


@dataclass(frozen=True, kw_only=True)
class UsageBar:
    x: float
    parts: tuple[tuple[str, float, float], ...]  # (CSS class, y, height), bottom up
    title: str


@dataclass(frozen=True, kw_only=True)
class UsageChart:
    """A cluster's usage over a window as an inline SVG's geometry, with its words."""
    width: int
    height: int
    bars: tuple[UsageBar, ...]
    latest: str  # the newest period's figures, the visible caption
    summary: str  # the chart's accessible name: latest, day means, cigri's peak
    axis: tuple[str, str, str]  # labels at the start, the middle and the end


def _usage_figures(point: UsagePoint) -> tuple[int, int, int, int, int]:
    """(cigri, others, unavailable, free, max) of a period, rounded."""
    cigri, used = round(point.used_by_cigri), round(point.used_resources)
    unavailable, whole = round(point.unavailable_resources), round(point.max_resources)
    return (cigri, max(0, used - cigri), unavailable, max(0, whole - used - unavailable), whole)


def _usage_words(figures: tuple[int, int, int, int, int]) -> str:
    cigri, others, unavailable, free, whole = figures
    return (f"{cigri} by cigri, {others} by others, {unavailable} unavailable, {free} free "
            f"of {whole}")


def usage_chart(name: str, points: Sequence[UsagePoint], *, start: datetime, end: datetime,
                period_seconds: int) -> UsageChart | None:
    """A stacked bar per period (cigri's jobs, other users', unavailable; the rest is free), in
    shares of the period's resources; None without a sample in the window."""
    first = int(start.timestamp()) // period_seconds * period_seconds
    slots = (int(end.timestamp()) - first) // period_seconds + 1
    bars = []
    for point in points:
        index = (int(point.start.timestamp()) - first) // period_seconds
        if not 0 <= index < slots or point.max_resources <= 0:
            continue
        figures = _usage_figures(point)
        parts, top = [], float(USAGE_HEIGHT)
        for css, value in zip(("u-cigri", "u-other", "u-unavailable"), figures[:3], strict=True):
            height = min(top, USAGE_HEIGHT * value / point.max_resources)
            if height > 0:
                top -= height
                parts.append((css, round(top, 2), round(height, 2)))
        until = point.start + timedelta(seconds=period_seconds)
        bars.append(UsageBar(x=index * USAGE_BAR, parts=tuple(parts), title=(
            f"{point.start:%H:%M}–{until:%H:%M} UTC: {_usage_words(figures)}")))
    shown = [p for p in points if p.max_resources > 0]
    if not bars:
        return None
    newest = _usage_figures(shown[-1])
    means = [round(sum(_usage_figures(p)[i] for p in shown) / len(shown)) for i in range(4)]
    peak = max(shown, key=lambda p: p.used_by_cigri)
    hours = (end - start).total_seconds() / 3600
    summary = (f"{name}, resources over the last {hours:g} hours ({len(shown)} periods of "
               f"{period_seconds / 60:g} min). Latest: {_usage_words(newest)}. Mean: "
               f"{means[0]} by cigri, {means[1]} by others, {means[2]} unavailable, "
               f"{means[3]} free. cigri's peak: {round(peak.used_by_cigri)} at "
               f"{peak.start:%H:%M} UTC.")
    middle = start + (end - start) / 2
    return UsageChart(width=slots * USAGE_BAR, height=USAGE_HEIGHT, bars=tuple(bars),
                      latest=(f"{shown[-1].start:%H:%M}: cigri {newest[0]} · others {newest[1]}"
                              f" · unavailable {newest[2]} · free {newest[3]} of {newest[4]}"),
                      summary=summary,
                      axis=(_clock(start), _clock(middle), _clock(end)))


def _clock(instant: datetime) -> str:
    return f"{instant.astimezone(UTC):%H:%M}"
