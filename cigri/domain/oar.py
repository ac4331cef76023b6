"""What cigri knows about OAR, as domain types: job records, submissions, resources, and the
`OarApi` seam that the OAR client (`cigri.oar.client`) implements and the daemons depend on.

No HTTP here: the client turns OAR's JSON into these objects, and raises `OarUnavailable` (transient:
connection, timeout, 5xx) or `OarRejected` (permanent: 4xx) for failures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, Protocol

from cigri.domain.errors import CigriError
from cigri.domain.event_codes import EventCode


class OarState(StrEnum):
    """Native OAR job states, as OAR spells them."""

    WAITING = "Waiting"
    HOLD = "Hold"
    TO_LAUNCH = "toLaunch"
    TO_ERROR = "toError"
    TO_ACK_RESERVATION = "toAckReservation"
    LAUNCHING = "Launching"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    RESUMING = "Resuming"
    FINISHING = "Finishing"
    TERMINATED = "Terminated"
    ERROR = "Error"
    UNKNOWN = "Unknown"  # anything OAR sends that we do not know


class OarEventType(StrEnum):
    """The OAR event types cigri's failure analysis reads, as OAR spells them."""

    BESTEFFORT_KILL = "BESTEFFORT_KILL"
    WALLTIME = "WALLTIME"
    FRAG_JOB_REQUEST = "FRAG_JOB_REQUEST"
    EXTERMINATE_JOB = "EXTERMINATE_JOB"
    WORKING_DIRECTORY = "WORKING_DIRECTORY"
    RESUBMIT_JOB_AUTOMATICALLY = "RESUBMIT_JOB_AUTOMATICALLY"
    SWITCH_INTO_ERROR_STATE = "SWITCH_INTO_ERROR_STATE"


FINAL_OAR_STATES: Final = frozenset({OarState.TERMINATED, OarState.ERROR})


@dataclass(frozen=True, kw_only=True)
class OarEvent:
    type: str  # an OarEventType when cigri reads it; OAR has others
    description: str = ""
    date: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class OarJob:
    """One OAR job as cigri needs it."""

    id: int
    state: OarState
    name: str | None = None
    owner: str | None = None
    array_id: int | None = None
    array_index: int | None = None
    exit_code: int | None = None  # raw wait status (exit status * 256 + signal), as OAR gives it
    start_time: datetime | None = None
    stop_time: datetime | None = None
    submission_time: datetime | None = None
    events: tuple[OarEvent, ...] = ()
    types: tuple[str, ...] = ()
    command: str | None = None
    launching_directory: str | None = None
    stdout_file: str | None = None
    stderr_file: str | None = None
    walltime_seconds: int | None = None
    resource_ids: tuple[int, ...] = ()

    @property
    def exit_status(self) -> int | None:
        """The shell exit status (wait status >> 8), or None if OAR gave no exit code."""
        return None if self.exit_code is None else (self.exit_code >> 8) & 0xFF

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_OAR_STATES

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(event.type for event in self.events)

    def path_of(self, name: str) -> str:
        """Where a file the job names lives: an absolute `name` as it is, a relative one in the
        job's launching directory (as it is when OAR did not say which directory)."""
        if name.startswith("/") or not self.launching_directory:
            return name
        return f"{self.launching_directory.rstrip('/')}/{name}"


@dataclass(frozen=True, kw_only=True)
class SubmitRequest:
    """One OAR submission: a single job, or an array job with one parameter line per job."""

    command: str
    resources: str  # e.g. "/nodes=1/core=1" (OAR `resource`), without walltime
    walltime: str | None = None  # HH:MM:SS
    params: Sequence[str] = ()  # one line per array element; empty = a single job
    name: str | None = None  # carries the cigri submission key
    directory: str | None = None
    types: Sequence[str] = ()  # e.g. ["besteffort"]
    properties: str | None = None  # OAR `property` SQL filter
    project: str | None = None
    queue: str | None = None
    stdout: str | None = None
    stderr: str | None = None


@dataclass(frozen=True, kw_only=True)
class Submission:
    """OAR's answer to a submission: every job id, in array order (index 1 first)."""

    array_id: int
    job_ids: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class OarResource:
    id: int
    state: str  # Alive, Absent, Suspected, Dead
    network_address: str | None = None
    available_upto: int | None = None
    properties: Mapping[str, object] = field(default_factory=dict)


class OarError(CigriError):
    """The OAR API call failed."""

    def __init__(self, message: str | None = None, *, status: int | None = None,
                 body: str | None = None, code: EventCode | None = None) -> None:
        super().__init__(message)
        self.status = status  # HTTP status, if there was an answer
        self.body = body  # OAR's error body, if any
        self.code = code  # cigri event code this failure maps to (TIMEOUT, CONNECTION_REFUSED...)


class OarUnavailable(OarError):
    """The OAR API is unreachable or failing (connection, timeout, 5xx, garbage); retry later."""


class OarRejected(OarError):
    """The OAR API refused the request (4xx); retrying the same request will not help."""


class OarNotFound(OarRejected):
    """OAR knows no such job or file."""


def split_media_path(path: str) -> tuple[str, str]:
    """(directory, name) of a file path on a cluster; the name is "" for `/`, `~`, `.`, `..`."""
    directory, _, name = path.rstrip("/").rpartition("/")
    if name in ("", ".", "..", "~"):
        return path, ""
    return directory or "/", name


class OarApi(Protocol):
    """The calls cigri makes to one OAR cluster, as `user` (the mapped cluster login)."""

    def probe(self) -> None:
        """GET the API root; raise OarUnavailable if it does not answer."""

    def submit(self, request: SubmitRequest, *, user: str) -> Submission: ...

    def get_job(self, job_id: int, *, user: str | None = None) -> OarJob: ...

    def get_jobs(self, job_ids: Sequence[int]) -> list[OarJob]:
        """Status of many jobs, one request per chunk of ids (cluster admin identity)."""

    def get_array_jobs(self, array_id: int) -> list[OarJob]: ...

    def get_running_jobs(self) -> list[OarJob]:
        """Every user's jobs holding resources (Launching, Running, Finishing) with their
        `resource_ids`, all pages, as the cluster admin (grid usage)."""

    def find_jobs_by_name(self, name: str, *, user: str,
                          since: datetime | None = None) -> list[OarJob]:
        """Jobs of `user` named `name`, in any state (crash reconciliation); `since` (e.g. when
        the submission was claimed) bounds the search to jobs active after it."""

    def delete_job(self, job_id: int, *, user: str) -> None: ...

    def delete_array(self, array_id: int, *, user: str) -> None: ...

    def read_file(self, path: str, *, user: str, tail: int | None = None) -> bytes: ...

    def file_sizes(self, directory: str, *, user: str) -> dict[str, int]:
        """Name -> size of the regular files of `directory` (one listing), read as `user`;
        empty if the directory does not exist."""

    def stat_file(self, path: str, *, user: str) -> int | None:
        """The size of the regular file `path` as OAR lists it, read as `user`; None if there
        is none."""

    def delete_file(self, path: str, *, user: str) -> None:
        """Remove the file `path` of the cluster as `user` (OAR's `DELETE media`); raises
        `OarNotFound` when there is none, `OarRejected` when `user` may not remove it."""

    def get_resources(self) -> list[OarResource]: ...

    def get_stress_factor(self) -> float: ...
