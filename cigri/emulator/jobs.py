"""What an emulated OAR cluster is made of: its configuration, its jobs and their events, the
answers it gives as errors, and the constants of OAR's vocabulary (job states, queues, job types,
oarsub's options and messages) that submission, scheduling and the API share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from cigri.emulator.resources import DEFAULT_WALLTIME, ResourceRequest
from cigri.emulator.workload import Workload

Mode = Literal["execute", "simulate"]
CURRENT_STATES = frozenset(
    {
        "Finishing",
        "Running",
        "Resuming",
        "Suspended",
        "Launching",
        "toLaunch",
        "Waiting",
        "toAckReservation",
        "Hold",
    }
)
FINAL_STATES = frozenset({"Terminated", "Error"})
QUEUES = ("admin", "default", "besteffort")
KNOWN_TYPE = re.compile(
    r"^(container(=\w+)?|deploy(=standby)?|desktop_computing|besteffort|cosystem(=standby)?|idempotent"
    r"|placeholder=\w+|allowed=\w+|inner=\w+|timesharing=(\*|user),(\*|name)|token:\w+=\d+"
    r"|noop(=standby)?|(postpone|deadline|expire)=.+|state=permissive)$"
)
OARSUB_OPTIONS = (
    "resource",
    "name",
    "project",
    "queue",
    "property",
    "type",
    "array",
    "array-param-file",
    "reservation",
    "checkpoint",
    "signal",
    "notify",
    "anterior",
    "resubmit",
    "stdout",
    "stderr",
    "hold",
    "scanscript",
    "use-job-key",
    "import-job-key-from-file",
    "import-job-key-inline",
    "export-job-key-to-file",
    "directory",
    "connect",
)
ADMISSION_CHATTER = "[ADMISSION RULE] Modify resource description with type constraints\n"
NO_SUBJOB = (
    "[ERROR] An array job must have a positive number of sub-jobs.\n"
    "Usage: /usr/lib/oar/oarsub [options] [-I|-C|<script>]\nSubmit a job the OAR batch scheduler\n"
)
NORMAL_USER = "normaluser"
BAD_OUTPUT_NAME = re.compile(r"[^A-Za-z0-9_./%\\ -]")  # oarsub allows letters, digits, _ . / - % \ space


class ApiError(Exception):
    """An answer OAR gives as `{code, title, message}`."""

    def __init__(self, code: int, title: str, message: str) -> None:
        super().__init__(f"{code} {title}: {message}")
        self.code = code
        self.title = title
        self.message = message


@dataclass(kw_only=True)
class Event:
    event_id: int
    type: str
    job_id: int
    date: int
    description: str
    to_check: str = "NO"


@dataclass(kw_only=True)
class Job:
    id: int
    array_id: int
    array_index: int
    name: str | None
    owner: str
    queue: str
    types: list[str]
    command: str
    param: str | None
    launching_directory: str
    stdout_tpl: str
    stderr_tpl: str
    project: str
    properties: str
    initial_request: str
    request: ResourceRequest
    message: str
    submission_time: int
    state: str = "Waiting"
    start_time: int = 0
    stop_time: int = 0
    scheduled_start: int | None = None
    walltime: int | None = None
    exit_code: int | None = None
    resources: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    fragged: bool = False
    kill_reason: str | None = None
    token: int = 0  # bumped at each start so stale heap entries are ignored
    sim_duration: float | None = None  # forced duration (normal-user jobs), even in execute mode
    pending_exit: int = 0  # simulate mode: the raw status the job will end with
    # simulate mode, a cigri temporal-grouping batch: (cigri job id, seconds, exit status) of its
    # tasks in turn, and the state file they append to
    sim_batch: tuple[tuple[int, float, int], ...] = ()
    sim_batch_state: str = ""
    resubmit_job_id: int = 0  # the job this one replaces (OAR's automatic resubmission)

    @property
    def stdout_file(self) -> str:
        return self.stdout_tpl.replace("%jobid%", str(self.id))

    @property
    def stderr_file(self) -> str:
        return self.stderr_tpl.replace("%jobid%", str(self.id))

    @property
    def wanted_walltime(self) -> int:
        return self.request.walltime if self.request.walltime is not None else DEFAULT_WALLTIME

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "array_id": self.array_id,
            "array_index": self.array_index,
            "name": self.name,
            "owner": self.owner,
            "queue": self.queue,
            "types": list(self.types),
            "command": self.command,
            "param": self.param,
            "state": self.state,
            "submission_time": self.submission_time,
            "start_time": self.start_time,
            "stop_time": self.stop_time,
            "exit_code": self.exit_code,
            "events": [e.type for e in self.events],
            "resources": list(self.resources),
        }


@dataclass(frozen=True, kw_only=True)
class Submitted:
    ids: list[int]
    cmd_output: str


@dataclass(kw_only=True)
class ClusterConfig:
    name: str = "c1"
    nodes: int = 4
    cores: int = 2
    node_prefix: str = "node"
    mode: Mode = "execute"
    workdir: str = "."
    workload: Workload = field(default_factory=Workload)
    oar_version: str = "2.5.9"
    users: dict[str, str] | None = None  # login -> home; None accepts any login
    seed: int = 0
    kill_grace: float = 2.0  # real seconds between SIGTERM and SIGKILL (execute mode)
    simulate_outputs: bool = False  # simulate mode: write small stdout/stderr files at job end
    launch_delay: float = 0.0  # emulated seconds a scheduled job spends in Launching
    # who jobs and /media act as: "self" the emulator's own Unix user, "login" the Unix user named
    # by the login (the default when started as root; see userfs and docs/emulator.md)
    run_as: Literal["self", "login"] = "self"



def login_of(identity: str | None) -> str | None:
    """OAR's login normalisation: the first `[A-Za-z0-9_]+` run; empty/unknown/(null) is anonymous."""
    if identity is None or identity in ("", "unknown", "(null)"):
        return None
    match = re.search(r"\w+", identity, re.ASCII)
    return match.group(0) if match else None

