"""Emulated time for the OAR emulator: epoch seconds that run at `time_scale` times the real rate,
or that move only when a test advances them."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class EmuClock(Protocol):
    """Emulated epoch seconds, and how many emulated seconds pass per real second."""

    @property
    def scale(self) -> float: ...

    def time(self) -> float: ...


class ScaledClock:
    """Epoch time that starts at the real time and runs `time_scale` times faster."""

    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._scale = float(time_scale)
        self._start = time.time() if start is None else float(start)
        self._mono0 = time.monotonic()

    @property
    def scale(self) -> float:
        return self._scale

    def time(self) -> float:
        return self._start + (time.monotonic() - self._mono0) * self._scale


class ManualClock:
    """Epoch time that moves only on `advance` (deterministic tests of simulate mode)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    @property
    def scale(self) -> float:
        return 0.0  # real time does not move it

    def time(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += float(seconds)
