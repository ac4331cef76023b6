"""Daemon health and exclusivity: heartbeats (and when one is late) and role leases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

LATE_AFTER_INTERVALS: Final = 3


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    name: str  # role, or runner:<cluster>
    host: str
    pid: int
    started_at: datetime
    beat_at: datetime
    interval_seconds: float
    passes: int
    failures: int  # failed passes in a row at the last beat

    def lateness(self, now: datetime) -> timedelta:
        """How long since the last beat."""
        return now - self.beat_at

    def is_late(self, now: datetime) -> bool:
        """Late when no beat came for more than 3 intervals (at least 3 s, for fast test loops)."""
        allowed = max(LATE_AFTER_INTERVALS * self.interval_seconds, 3.0)
        return self.lateness(now) > timedelta(seconds=allowed)


@dataclass(frozen=True, kw_only=True)
class Lease:
    """Who holds a daemon role (one active instance per role) and until when."""

    role: str
    owner: str  # host:pid:random of the holder
    expires_at: datetime
