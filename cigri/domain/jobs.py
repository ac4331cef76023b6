"""Jobs as the engine sees them: one execution attempt of one parameter on one cluster, and the
mapping of an OAR job's state onto it.

Owns the `Job` domain object, runner options, and `plan_job_update` (what an OAR answer means for a
cigri job). Does not own failure analysis (`cigri.domain.failures`) nor any I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Final, Literal

from cigri.domain.oar import OarJob, OarState
from cigri.domain.states import JobState

PROLOGUE: Final = "prologue"
EPILOGUE: Final = "epilogue"


@dataclass(frozen=True, kw_only=True)
class Job:
    id: int
    campaign_id: int
    cluster_id: int | None
    state: JobState
    param_id: int | None = None  # None for prologue/epilogue jobs
    remote_id: int | None = None  # OAR job id, once submitted
    tag: str | None = None
    submission_id: int | None = None
    array_index: int | None = None  # 1-based index in its OAR array submission
    attempt: int = 1
    return_code: int | None = None
    submission_time: datetime | None = None
    start_time: datetime | None = None

    @property
    def is_prologue_or_epilogue(self) -> bool:
        return self.tag in {PROLOGUE, EPILOGUE}


@dataclass(frozen=True, kw_only=True)
class RunnerOptions:
    """The JSON options a queue entry gives its job (v3 `runner_options`)."""

    besteffort: bool = False
    temporal_grouping: bool = False
    batch_id: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> RunnerOptions:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(raw, dict):
            return cls()

        def flag(value: object) -> bool:
            return value is True or str(value).lower() == "true"

        batch = raw.get("batch_id")
        return cls(besteffort=flag(raw.get("besteffort")),
                   temporal_grouping=flag(raw.get("temporal_grouping")),
                   batch_id=int(batch) if isinstance(batch, int | str) and str(batch).isdigit()
                   else None)

    def dump(self) -> str:
        data: dict[str, object] = {"besteffort": self.besteffort}
        if self.temporal_grouping:
            data["temporal_grouping"] = True
        if self.batch_id is not None:
            data["batch_id"] = self.batch_id
        return json.dumps(data)


class UpdateKind(StrEnum):
    NONE = "none"  # nothing to write
    WAITING = "waiting"  # -> remote_waiting
    RUNNING = "running"  # -> running, start_time
    TERMINATED = "terminated"  # -> terminated, stop_time, return_code
    FAILED = "failed"  # failure analysis needed (cigri.domain.failures)


@dataclass(frozen=True, kw_only=True)
class JobUpdate:
    """What the updater does with a job after reading its OAR record."""

    kind: UpdateKind
    state: JobState | None = None
    start_time: datetime | None = None
    stop_time: datetime | None = None
    return_code: int | None = None
    closes_tap: bool = False  # v3: Waiting and unknown OAR states close the campaign's tap

    def change(self, job_id: int) -> JobChange | None:
        """The row change this update writes (times only when OAR gave them; the return code of
        a terminated job always), or None when it writes nothing (NONE, FAILED)."""
        if self.kind in {UpdateKind.NONE, UpdateKind.FAILED} or self.state is None:
            return None
        return JobChange(
            job_id=job_id, state=self.state,
            start_time=KEEP if self.start_time is None else self.start_time,
            stop_time=KEEP if self.stop_time is None else self.stop_time,
            return_code=self.return_code if self.kind is UpdateKind.TERMINATED else KEEP)


class _Keep(Enum):
    KEEP = "keep"


# A `JobChange` field left as it is in the row (None writes NULL).
KEEP: Final = _Keep.KEEP
Keep = Literal[_Keep.KEEP]


@dataclass(frozen=True, kw_only=True)
class JobChange:
    """A state change of one job, for `cigri.storage.jobs.mark_job(s)`: the new state, and the
    fields it writes besides (KEEP: leave the column alone). Storage guards it with the states
    the job may move from, so a job moved meanwhile by someone else is left alone."""

    job_id: int
    state: JobState
    start_time: datetime | Keep | None = KEEP
    stop_time: datetime | Keep | None = KEEP
    return_code: int | Keep | None = KEEP
    remote_id: int | Keep | None = KEEP


_RUNNING_STATES: Final = frozenset({OarState.RUNNING, OarState.FINISHING, OarState.LAUNCHING})


def plan_job_update(job: Job, oar_job: OarJob) -> JobUpdate:
    """Map one OAR record onto its cigri job (v3 §3.1.4, behaviour 15).

    `Terminated` with exit status 0 (or no exit code) terminates the job; a non-zero exit code or
    OAR `Error` asks for failure analysis. Waiting → remote_waiting; Running/Finishing/Launching →
    running; any other state changes nothing but closes the tap.
    """
    state = oar_job.state
    if state is OarState.TERMINATED:
        if oar_job.exit_code is not None and oar_job.exit_code != 0:
            return JobUpdate(kind=UpdateKind.FAILED, stop_time=oar_job.stop_time,
                             return_code=oar_job.exit_code)
        return JobUpdate(kind=UpdateKind.TERMINATED, state=JobState.TERMINATED,
                         start_time=oar_job.start_time, stop_time=oar_job.stop_time,
                         return_code=oar_job.exit_code)
    if state in {OarState.ERROR, OarState.TO_ERROR}:
        return JobUpdate(kind=UpdateKind.FAILED, stop_time=oar_job.stop_time,
                         return_code=oar_job.exit_code)
    if state in _RUNNING_STATES:
        if job.state is JobState.RUNNING and job.start_time == oar_job.start_time:
            return JobUpdate(kind=UpdateKind.NONE)
        return JobUpdate(kind=UpdateKind.RUNNING, state=JobState.RUNNING,
                         start_time=oar_job.start_time)
    if state is OarState.WAITING:
        if job.state is JobState.REMOTE_WAITING:
            return JobUpdate(kind=UpdateKind.NONE, closes_tap=True)
        return JobUpdate(kind=UpdateKind.WAITING, state=JobState.REMOTE_WAITING, closes_tap=True)
    return JobUpdate(kind=UpdateKind.NONE, closes_tap=True)


@dataclass(frozen=True, kw_only=True)
class LaunchItem:
    """One job of a submission being prepared: what goes on its parameter line."""

    job_id: int
    campaign_id: int
    param_id: int | None
    param: str | None  # the parameter line; None for prologue/epilogue
    array_index: int  # 1-based position in the OAR array
    tag: str | None = None
    besteffort: bool = False


@dataclass(frozen=True, kw_only=True)
class LaunchContext:
    """What the runner needs of a campaign to submit its jobs on one cluster."""

    campaign_id: int
    grid_user: str
    cluster_login: str  # identity sent to OAR for this user on this cluster
    campaign_state: str
    properties: dict[str, str]  # campaign properties, cluster-specific over campaign-wide

    def prop(self, name: str, default: str = "") -> str:
        value = self.properties.get(name)
        return default if value is None or value == "" else value

    @property
    def is_test_mode(self) -> bool:
        return self.prop("test_mode").lower() == "true"

    @property
    def is_besteffort(self) -> bool:
        """v3 §3.1.7: test mode is never best-effort; `normal` is not; anything else is."""
        if self.is_test_mode:
            return False
        return self.prop("type", "best-effort").lower() != "normal"
