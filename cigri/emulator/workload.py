"""The simulate-mode workload model: how long a job runs and how it exits."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_SLEEP = re.compile(r"\bsleep\s+(\d+(?:\.\d+)?)")
_EXIT = re.compile(r"\bexit\s+(\d+)\s*;?\s*$")


@dataclass(frozen=True, kw_only=True)
class Workload:
    """Duration and exit status of simulated jobs.

    `duration` is `fixed:S`, `uniform:A:B` or `normal:MEAN:SD` (seconds, emulated). A command
    containing `sleep N` runs N seconds and one ending in `exit N` exits N, which lets tests pick
    per-job behaviour; otherwise a job fails with probability `failure_rate`, exiting `failure_status`.
    """

    duration: str = "fixed:60"
    failure_rate: float = 0.0
    failure_status: int = 1
    honour_command: bool = True

    def draw(self, command: str, rng: random.Random) -> tuple[float, int]:
        """(duration in seconds, exit status) for one run of `command`."""
        seconds: float | None = None
        status: int | None = None
        if self.honour_command:
            sleep = _SLEEP.search(command)
            if sleep:
                seconds = float(sleep.group(1))
            exit_ = _EXIT.search(command)
            if exit_:
                status = int(exit_.group(1))
        if seconds is None:
            seconds = self._draw_duration(rng)
        if status is None:
            status = self.failure_status if rng.random() < self.failure_rate else 0
        return max(0.0, seconds), status

    def _draw_duration(self, rng: random.Random) -> float:
        kind, _, rest = self.duration.partition(":")
        args = [float(x) for x in rest.split(":") if x]
        if kind == "fixed":
            return args[0] if args else 60.0
        if kind == "uniform":
            return rng.uniform(args[0], args[1])
        if kind == "normal":
            return max(0.0, rng.gauss(args[0], args[1]))
        raise ValueError(f"unknown duration model {self.duration!r}")
