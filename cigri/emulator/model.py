"""The state of one emulated OAR cluster: resources, jobs, events, the FIFO scheduler with
best-effort preemption and walltime kills, and the two ways of running a job (a real subprocess,
or a simulated duration and exit status). Event-driven: due events sit in a heap, so a pass costs
what it starts or ends, not the size of the queue. Every public method takes the cluster lock."""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import logging
import os
import random
import re
import signal
import subprocess
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from cigri.emulator.clock import EmuClock
from cigri.emulator.resources import (
    DEFAULT_WALLTIME,
    ResourceRequest,
    ResourceSyntaxError,
    UnknownProperty,
    format_walltime,
    group_shape,
    parse_resource,
)
from cigri.emulator.userfs import UnixUser, unix_user
from cigri.emulator.workload import Workload

log = logging.getLogger(__name__)

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
DEAD_PID = 4_194_399  # above the largest pid_max Linux allows (2**22)
SPECIAL_PARAMETERS = {"0": "bash", "#": "0", "?": "0", "-": "hBc"}  # others ("$1", "$@", ...) are empty


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


def expand_shell(text: str, env: dict[str, str]) -> str:
    """One level of bash double-quote evaluation, as oarsub's shell does at submission:
    `\\$`, `\\\\`, `\\"` and `` \\` `` lose their backslash, `$VAR`/`${VAR}` expand (unknown ones to
    ""), `$0` is `bash` and `$1`... are empty, `$$` becomes a dead pid, and command substitutions
    `$(...)` and backquotes are left as they are."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in '$`"\\':
            out.append(text[i + 1])
            i += 2
        elif ch == "$" and i + 1 < n and text[i + 1] == "$":
            # the pid of oarsub's shell, long gone when the job runs: a pid that cannot exist, so
            # a job's `kill $$` fails as on the real OAR and never hits the emulator
            out.append(str(DEAD_PID))
            i += 2
        elif ch == "$" and i + 1 < n and (text[i + 1].isdigit() or text[i + 1] in "#?@*!-"):
            # positional and special parameters of oarsub's `bash -c` (no arguments)
            out.append(SPECIAL_PARAMETERS.get(text[i + 1], ""))
            i += 2
        elif ch == "$" and i + 1 < n and text[i + 1] == "{":
            end = text.find("}", i + 2)
            if end < 0:
                out.append(ch)
                i += 1
            else:
                out.append(env.get(text[i + 2 : end], ""))
                i = end + 1
        elif ch == "$" and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "_"):
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            out.append(env.get(text[i + 1 : j], ""))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def read_param_lines(content: str) -> list[str]:
    """oarsub's parameter-file reading: `#` comments removed, blank lines skipped."""
    lines = []
    for raw in content.split("\n"):
        line = raw.split("#", 1)[0]
        if line.strip():
            lines.append(line)
    return lines


def login_of(identity: str | None) -> str | None:
    """OAR's login normalisation: the first `[A-Za-z0-9_]+` run; empty/unknown/(null) is anonymous."""
    if identity is None or identity in ("", "unknown", "(null)"):
        return None
    match = re.search(r"\w+", identity, re.ASCII)
    return match.group(0) if match else None


class Cluster:
    """One emulated OAR cluster."""

    def __init__(self, config: ClusterConfig, clock: EmuClock) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rng = random.Random(config.seed)
        self.jobs: dict[int, Job] = {}
        self.arrays: dict[int, list[int]] = {}
        self.active: set[int] = set()
        self.queues: dict[str, deque[int]] = {q: deque() for q in QUEUES}
        self.next_job_id = 1
        self.next_event_id = 1
        self.heap: list[tuple[float, int, str, int, int]] = []
        self._seq = 0
        self.node_names = [f"{config.node_prefix}{i + 1}" for i in range(config.nodes)]
        total = config.nodes * config.cores
        self.free: set[int] = set(range(1, total + 1))
        self._free_heap: list[int] = list(range(1, total + 1))
        self.node_free: list[set[int]] = [
            set(range(i * config.cores + 1, (i + 1) * config.cores + 1)) for i in range(config.nodes)
        ]
        self.last_job_date: dict[int, int] = {}
        self.node_state: list[str] = ["Alive"] * config.nodes  # Alive, Absent, Suspected or Dead
        self.running_besteffort: set[int] = set()
        self.releasing = 0  # cores of jobs being killed, soon free
        self.completions: Counter[tuple[int, int]] = Counter()
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.stress = "0"
        self.version_string = (
            "2.5.10 (Liberty hope)" if config.oar_version == "2.5.10" else "2.5.9 (Canicule)"
        )
        self.dirty = False  # state changed since the state file was written
        self.normal_users: list[tuple[int, float, float | None]] = []  # (cores, duration, period)
        self.launch_failures = 0  # next jobs that OAR switches into Error as they start
        os.makedirs(self.files_dir, exist_ok=True)

    # ---- basics ----------------------------------------------------------------------------

    @property
    def total_cores(self) -> int:
        return self.config.nodes * self.config.cores

    @property
    def files_dir(self) -> str:
        return os.path.join(os.path.abspath(self.config.workdir), f"oar-{self.config.name}")

    def now(self) -> int:
        return int(self.clock.time())

    def home_of(self, login: str) -> str | None:
        """The login's home (its jobs' `$HOME`, `~` in `/media`); None for an unknown login."""
        if self.config.run_as == "login":
            user = unix_user(login)
            if user is None or user.uid == 0:  # no such user, or root by another name
                return None
            return user.home if self.config.users is None else self.config.users.get(login)
        if self.config.users is not None:
            return self.config.users.get(login)
        home = os.path.join(os.path.abspath(self.config.workdir), "home", login)
        os.makedirs(home, exist_ok=True)
        return home

    def unix_user_of(self, login: str) -> UnixUser | None:
        """The Unix user a login's jobs and files act as; None: the emulator's own user."""
        return unix_user(login) if self.config.run_as == "login" else None

    def node_of(self, rid: int) -> int:
        return (rid - 1) // self.config.cores

    def _push(self, when: float, kind: str, job_id: int, token: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (when, self._seq, kind, job_id, token))

    def _event(self, job: Job, type_: str, description: str, when: int | None = None) -> None:
        job.events.append(
            Event(
                event_id=self.next_event_id,
                type=type_,
                job_id=job.id,
                date=self.now() if when is None else when,
                description=description,
            )
        )
        self.next_event_id += 1

    def next_due(self) -> float | None:
        with self.lock:
            return self.heap[0][0] if self.heap else None

    # ---- submission --------------------------------------------------------------------------

    def submit(self, login: str, body: dict[str, Any]) -> Submitted:
        """Validate like oarsub and the default admission rules; create the job(s)."""
        with self.lock:
            self.pump()
            result = self._submit(login, body)
            self.dirty = True
            self._schedule(self.clock.time())
            self.changed.notify_all()
            return result

    def _fail(self, status: int, output: str, cmdline: str) -> ApiError:
        """oarsub's exit status mapped to HTTP, with the version's message format."""
        v259 = self.config.oar_version != "2.5.10"
        bad_query = {4, 5, 6, 7, 8, 10, 16, 17} | (set() if v259 else {18, 254})
        if not output.endswith("\n"):
            output += "\n"
        message = f"Oarsub command exited with status {status}: {output}\nCmd:\n{cmdline}" if v259 else output
        if status in bad_query:
            return ApiError(400, "Bad query", message)
        if status == 52:
            return ApiError(401, "Permission denied", f"Oardodo error: 52: {output}")
        return ApiError(500, "Oar server error", message)

    def _submit(self, login: str, body: dict[str, Any]) -> Submitted:
        home = self.home_of(login)
        body = {k: v for k, v in body.items() if v not in ("", None)}
        for key in ("dumper", "xml", "yaml", "json", "help", "version"):
            body.pop(key, None)
        if "resources" in body and "resource" not in body:
            body["resource"] = body["resources"]
        body.pop("resources", None)
        if "workdir" in body and "directory" not in body:
            body["directory"] = body["workdir"]
        body.pop("workdir", None)
        if "types" in body and "type" not in body:  # OAR 3 payload
            body["type"] = body["types"]
        body.pop("types", None)
        command = body.pop("command", None) or body.pop("script_path", None) or body.pop("script", None)
        if not command and "reservation" not in body:
            raise ApiError(
                400,
                "Missing Required Field",
                "A job must have a script, a command (script_path) or must be a reservation!",
            )
        if "interactive" in body:
            raise ApiError(
                400, "The API cannot manage interactive jobs", "The API cannot manage interactive jobs"
            )
        param_file = body.pop("param_file", None)
        initial = " ".join(["oarsub", *(f"--{k}={v}" for k, v in body.items())])
        cmdline = "oarsub " + "".join(f' --{k}=\\"{v}\\"' for k, v in body.items()) + f' \\"{command}\\"'
        if param_file is not None:
            cmdline += " --array-param-file=/tmp/oarapi.paramfile.XXXXX"
        if login in ("oar", "root"):  # Unix users everywhere; refused by admission rule 2
            raise self._fail(
                254, "[ADMISSION RULE] root and oar users are not allowed to submit jobs.\n", cmdline
            )
        if home is None:
            raise ApiError(
                401,
                "Permission denied",
                "Oardodo error: 52: [OARDODO] ERROR: Cannot get information regarding the target user "
                "(Success)\n\n",
            )
        for key in body:
            matches = [o for o in OARSUB_OPTIONS if o == key] or [
                o for o in OARSUB_OPTIONS if o.startswith(key)
            ]
            if len(matches) != 1:
                raise self._fail(1, f"Unknown option: {key}", cmdline)
        env = {"HOME": home, "USER": login, "LOGNAME": login}
        command = expand_shell(str(command), env)
        directory = expand_shell(str(body.get("directory", home)), env)
        if not os.path.isabs(directory):
            directory = os.path.join(home, directory)
        if self.config.oar_version == "2.5.10" and not os.path.isdir(directory):
            raise self._fail(1, f"bash: line 1: cd: {directory}: No such file or directory", cmdline)
        types_value = body.get("type", [])
        types = [types_value] if isinstance(types_value, str) else [str(t) for t in types_value]
        queue = str(body.get("queue", "default"))
        output = ""
        if "besteffort" in types or queue == "besteffort":
            queue = "besteffort"
            if "besteffort" not in types:
                types.append("besteffort")
            output += (
                "[ADMISSION RULE] Automatically redirect in the besteffort queue\n"
                "[ADMISSION RULE] Automatically add the besteffort constraint on the resources\n"
            )
        resource_value = body.get("resource")
        if isinstance(resource_value, list):  # moldable (OAR 3 style): the first alternative
            resource_value = resource_value[0] if resource_value else None
        try:
            request = parse_resource(None if resource_value is None else str(resource_value))
            unknown_property = None
        except ResourceSyntaxError as error:
            raise self._fail(
                18 if self.config.oar_version == "2.5.10" else 255, str(error), cmdline
            ) from None
        except UnknownProperty as error:
            unknown_property = str(error)
            request = parse_resource(None)
            if "walltime=" in str(resource_value):  # only the walltime chatter depends on it
                request = dataclasses.replace(request, walltime=0)
        if request.walltime is None:
            output += "[ADMISSION RULE] Set default walltime to 7200.\n"
        for type_ in types:
            if not KNOWN_TYPE.match(type_):
                raise self._fail(
                    254, output + f"[ADMISSION RULE] Error: unknown job type: {type_}\n", cmdline
                )
        if queue not in QUEUES:
            raise self._fail(
                248, output + ADMISSION_CHATTER + f"ERROR : The queue {queue} does not exist", cmdline
            )
        if unknown_property is not None:
            raise self._fail(
                8,
                output
                + ADMISSION_CHATTER
                + f'Bad resource request (ERROR:  column "{unknown_property}" does not exist\n'
                f"LINE 1: SELECT  {unknown_property}, resource_id\n                )\nOAR_JOB_ID=-5\n"
                "[ERROR] Oarsub failed, please verify your request syntax.\n",
                cmdline,
            )
        if self._request_cores(request, check_shape=True) is None:
            raise self._fail(
                8,
                output + ADMISSION_CHATTER + "There are not enough resources for your request\n"
                "OAR_JOB_ID=-5\n[ERROR] Oarsub failed, please verify your request syntax.\n",
                cmdline,
            )
        output += ADMISSION_CHATTER
        if param_file is not None:
            params: list[str | None] = list(read_param_lines(str(param_file)))
            if not params:
                raise self._fail(6, NO_SUBJOB, cmdline)
        elif "array" in body:
            count = int(str(body["array"])) if str(body["array"]).isdigit() else 0
            if count <= 0:
                raise self._fail(6, NO_SUBJOB, cmdline)
            params = [None] * count
        else:
            params = [None]
        name = expand_shell(str(body["name"]), env) if "name" in body else None
        default_out = f"OAR.{name}.%jobid%" if name else "OAR.%jobid%"
        stdout = expand_shell(str(body.get("stdout", default_out + ".stdout")), env)
        stderr = expand_shell(str(body.get("stderr", default_out + ".stderr")), env)
        if name:
            stdout, stderr = stdout.replace("%jobname%", name), stderr.replace("%jobname%", name)
        for value, status, what in ((stdout, 244, "stdout"), (stderr, 243, "stderr")):
            if BAD_OUTPUT_NAME.search(value):  # add_micheline_job: -12 / -13
                raise self._fail(status, output + f"[ERROR] Bad characters in the {what} file name", cmdline)
        project = str(body.get("project", "default"))
        props = "desktop_computing = 'NO'"
        if "property" in body:
            props = f"({body['property']}) AND {props}"
        if queue == "besteffort":
            props = f"(besteffort = 'YES') AND {props}"
        props = f"({props}) AND drain='NO'"
        cores = self._request_cores(request) or 1
        message = f"R={cores},W={format_walltime(request.walltime or DEFAULT_WALLTIME)},J=B"
        if name:
            message += f",N={name}"
        if project != "default":
            message += f",P={project}"
        if types:
            message += f",T={'|'.join(types)}"
        if len(params) > 1:
            output += "Simple array job submission is used\n"
        initial_request = f"{initial} {command}"
        if param_file is not None:
            initial_request += " --array-param-file=/tmp/oarapi.paramfile.XXXXX"
        now = self.now()
        ids: list[int] = []
        array_id = self.next_job_id
        for index, param in enumerate(params, start=1):
            job = Job(
                id=self.next_job_id,
                array_id=array_id,
                array_index=index,
                name=name,
                owner=login,
                queue=queue,
                types=list(types),
                command=command if param is None else f"{command} {param}",
                param=param,
                launching_directory=directory,
                stdout_tpl=stdout,
                stderr_tpl=stderr,
                project=project,
                properties=props,
                initial_request=initial_request,
                request=request,
                message=message,
                submission_time=now,
                state="Hold" if str(body.get("hold", "0")) not in ("0", "false", "False") else "Waiting",
            )
            self.next_job_id += 1
            self.jobs[job.id] = job
            self.active.add(job.id)
            if job.state == "Waiting":
                self.queues[queue].append(job.id)
            ids.append(job.id)
            output += f"OAR_JOB_ID={job.id}\n"
        self.arrays[array_id] = list(ids)
        if len(params) > 1:
            output += f"OAR_ARRAY_ID={array_id}\n"
        return Submitted(ids=ids, cmd_output=output)

    def _request_cores(self, request: ResourceRequest, check_shape: bool = False) -> int | None:
        """Total cores a request needs, or None if the cluster can never satisfy it."""
        total = 0
        for group in request.groups:
            node_count, per = group_shape(group, nodes=self.config.nodes, cores=self.config.cores)
            if node_count is not None:
                if node_count > self.config.nodes or per > self.config.cores or node_count <= 0 or per <= 0:
                    return None
                total += node_count * per
            else:
                if per <= 0:
                    return None
                total += per
        return total if total <= self.total_cores else None

    # ---- scheduling --------------------------------------------------------------------------

    def pump(self) -> None:
        """Handle every due event (job ends, walltimes, normal-user arrivals), then schedule."""
        with self.lock:
            now = self.clock.time()
            changed = False
            while self.heap and self.heap[0][0] <= now:
                when, _, kind, job_id, token = heapq.heappop(self.heap)
                self._handle(when, kind, job_id, token)
                changed = True
                if not self.heap or self.heap[0][0] > when:
                    self._schedule(when)
            if changed:
                self.dirty = True
                self.changed.notify_all()

    def _handle(self, when: float, kind: str, job_id: int, token: int) -> None:
        if kind == "normal_user":
            self._normal_user_arrival(job_id, when)
            return
        job = self.jobs.get(job_id)
        if job is None or job.token != token:
            return
        at = int(when)
        if kind == "end" and job.state == "Running":
            self._finish(job, exit_code=job.pending_exit, at=at)
        elif kind == "walltime" and job.state == "Running":
            self._event(job, "FRAG_JOB_REQUEST", f"User root requested to frag the job {job.id}", at)
            self._event(
                job,
                "WALLTIME",
                f"[sarko] Job [{job.id}] from {job.start_time} with {job.walltime}; "
                f"current time={at} (Elapsed)",
                at,
            )
            self._kill(job, at)
        elif kind == "launch" and job.state == "Launching":
            self._run(job, when)
        elif kind == "sigkill":
            process = self.processes.get(job.id)
            if process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
        elif kind == "killed" and job.state == "Finishing":
            self._finish(job, exit_code=None, at=at)

    def _schedule(self, when: float) -> None:
        """FIFO per queue (admin, default, besteffort); a normal job that does not fit kills
        best-effort jobs if that frees enough cores, and blocks the queues behind it."""
        blocked = False
        for queue in ("admin", "default"):
            pending = self.queues[queue]
            while pending:
                job = self.jobs[pending[0]]
                if job.state != "Waiting":
                    pending.popleft()
                    continue
                allocation = self._allocate(job)
                if allocation is None and self._preempt_for(job, when):
                    allocation = self._allocate(job)
                if allocation is None:
                    blocked = True
                    break
                pending.popleft()
                self._start(job, allocation, when)
            if blocked:
                return
        pending = self.queues["besteffort"]
        while pending:
            job = self.jobs[pending[0]]
            if job.state != "Waiting":
                pending.popleft()
                continue
            allocation = self._allocate(job)
            if allocation is None:
                return
            pending.popleft()
            self._start(job, allocation, when)

    def _allocate(self, job: Job) -> list[int] | None:
        """Pick free resources for the job, or None if they are not free now."""
        shapes = [
            group_shape(g, nodes=self.config.nodes, cores=self.config.cores) for g in job.request.groups
        ]
        if sum(n * p if n is not None else p for n, p in shapes) > len(self.free):
            return None
        taken: list[int] = []
        for node_count, per in shapes:
            got = self._take_any(per) if node_count is None else self._take_nodes(node_count, per)
            if got is None:
                self._release(taken)
                return None
            taken.extend(got)
        return taken

    def _take_any(self, count: int) -> list[int] | None:
        if count > len(self.free):
            return None
        got: list[int] = []
        while len(got) < count:
            rid = heapq.heappop(self._free_heap)
            if rid in self.free:
                self.free.discard(rid)
                self.node_free[self.node_of(rid)].discard(rid)
                got.append(rid)
        return got

    def _take_nodes(self, node_count: int, per: int) -> list[int] | None:
        chosen = [i for i, free in enumerate(self.node_free) if len(free) >= per][:node_count]
        if len(chosen) < node_count:
            return None
        got: list[int] = []
        for i in chosen:
            for rid in sorted(self.node_free[i])[:per]:
                self.node_free[i].discard(rid)
                self.free.discard(rid)
                got.append(rid)
        return got

    def _release(self, rids: list[int]) -> None:
        for rid in rids:
            if rid not in self.free and self.node_state[self.node_of(rid)] == "Alive":
                self.free.add(rid)
                self.node_free[self.node_of(rid)].add(rid)
                heapq.heappush(self._free_heap, rid)

    def _preempt_for(self, job: Job, when: float) -> bool:
        """Kill the youngest best-effort jobs if that frees enough cores for `job`."""
        if not self.running_besteffort:
            return False
        need = self._request_cores(job.request) or 0
        available = len(self.free) + self.releasing
        if available >= need:
            return False  # enough cores are free or being freed: wait for them
        victims: list[Job] = []
        for victim_id in sorted(self.running_besteffort, reverse=True):
            if available >= need:
                break
            victim = self.jobs[victim_id]
            victims.append(victim)
            available += len(victim.resources)
        if available < need:
            return False
        at = int(when)
        for victim in victims:
            self._event(victim, "BESTEFFORT_KILL", f"[MetaSched] kill the besteffort job {victim.id}", at)
            self._event(victim, "FRAG_JOB_REQUEST", f"User root requested to frag the job {victim.id}", at)
            victim.scheduled_start = None
            self._kill(victim, at)
        return True

    def _start(self, job: Job, rids: list[int], when: float) -> None:
        """The scheduler gave the job its resources: it runs now, or after the launch delay."""
        at = int(when)
        job.token += 1
        job.scheduled_start = at
        job.walltime = job.wanted_walltime
        job.resources = rids
        job.message += " (Karma=0.000,quota_ok)"
        if job.queue == "besteffort":
            self.running_besteffort.add(job.id)
        if self.config.launch_delay > 0:
            job.state = "Launching"
            self._push(when + self.config.launch_delay, "launch", job.id, job.token)
        else:
            self._run(job, when)

    def _run(self, job: Job, when: float) -> None:
        job.state = "Running"
        job.start_time = int(when)
        if self.launch_failures > 0:  # real OAR 2.5.9: bipbip gives up, no other event
            self.launch_failures -= 1
            job.kill_reason = "launch"
            self._finish(job, exit_code=None, at=int(when))
            return
        self._push(when + (job.walltime or job.wanted_walltime), "walltime", job.id, job.token)
        if job.sim_duration is not None:
            job.pending_exit = 0
            self._push(when + job.sim_duration, "end", job.id, job.token)
        elif self.config.mode == "simulate":
            seconds, status = self.config.workload.draw(job.command, self.rng)
            job.pending_exit = status << 8
            self._push(when + seconds, "end", job.id, job.token)
        else:
            self._spawn(job)

    def _finish(self, job: Job, *, exit_code: int | None, at: int) -> None:
        error = job.fragged or job.kill_reason is not None
        if job.state == "Finishing":
            self.releasing -= len(job.resources)
        job.state = "Error" if error else "Terminated"
        job.stop_time = at
        job.exit_code = None if error else exit_code
        self._event(
            job,
            "SWITCH_INTO_ERROR_STATE" if error else "SWITCH_INTO_TERMINATE_STATE",
            f"[bipbip {job.id}] Ask to change the job state",
            at,
        )
        self.running_besteffort.discard(job.id)
        self.active.discard(job.id)
        for rid in job.resources:
            self.last_job_date[rid] = at
        self._release(job.resources)
        if not error:
            self.completions[(job.array_id, job.array_index)] += 1
        if self.config.simulate_outputs and self.config.mode == "simulate" and job.owner != NORMAL_USER:
            self._write_outputs(job, exit_code)
        job.token += 1
        self.processes.pop(job.id, None)
        if "idempotent" in job.types:
            self._maybe_resubmit(job, at)

    def _maybe_resubmit(self, job: Job, at: int) -> None:
        """OAR's automatic resubmissions of idempotent jobs: killed as best-effort (bipbip), or
        exiting 99 after more than 60 s (NodeChangeState)."""
        kinds = {e.type for e in job.events}
        if job.state == "Error" and "BESTEFFORT_KILL" in kinds:
            new_id = self._resubmit(job, at)
            description = (
                f"[bipbip {job.id}] The job {job.id} is a besteffort and idempotent job so we "
                f"resubmit it (new id = {new_id})"
            )
        elif (
            job.state == "Terminated"
            and job.exit_code is not None
            and job.exit_code >> 8 == 99
            and job.stop_time - job.start_time > 60
            and "SEND_KILL_JOB" not in kinds
        ):
            new_id = self._resubmit(job, at)
            description = (
                f"[NodeChangeState] Resubmiting job {job.id} => {new_id} "
                "(type idempotent & exit code = 99 & duration > 60s)"
            )
        else:
            return
        self._event(job, "RESUBMIT_JOB_AUTOMATICALLY", description, at)

    def _resubmit(self, old: Job, at: int) -> int:
        """A copy of `old` as a new waiting job (OAR's `resubmit_job`)."""
        new = Job(
            id=self.next_job_id,
            array_id=self.next_job_id,
            array_index=1,
            name=old.name,
            owner=old.owner,
            queue=old.queue,
            types=list(old.types),
            command=old.command,
            param=old.param,
            launching_directory=old.launching_directory,
            stdout_tpl=old.stdout_tpl,
            stderr_tpl=old.stderr_tpl,
            project=old.project,
            properties=old.properties,
            initial_request=old.initial_request,
            request=old.request,
            message=old.message.split(" (Karma")[0],
            submission_time=at,
            resubmit_job_id=old.id,
            sim_duration=old.sim_duration,
        )
        self.next_job_id += 1
        self.jobs[new.id] = new
        self.arrays[new.id] = [new.id]
        self.active.add(new.id)
        self.queues[new.queue].append(new.id)
        return new.id

    def _write_outputs(self, job: Job, exit_code: int | None) -> None:
        """What a simulated job printed: a line on stdout, and on stderr when it failed."""
        try:
            with open(self._abs(job, job.stdout_file), "a") as out:
                out.write(f"simulated job {job.id} ({job.command})\n")
            with open(self._abs(job, job.stderr_file), "a") as err:
                if exit_code:
                    err.write(f"simulated failure: exit status {exit_code >> 8}\n")
        except OSError:
            pass  # the directory does not exist here: nothing to show, as a node without the file

    def _kill(self, job: Job, at: int) -> None:
        """Leon: kill a running job; it ends in Error once its process is gone."""
        job.fragged = True
        job.kill_reason = job.kill_reason or "frag"
        self.running_besteffort.discard(job.id)
        node = self.node_names[self.node_of(job.resources[0])] if job.resources else "?"
        self._event(
            job, "SEND_KILL_JOB", f"[Leon] Send the kill signal to oarexec on {node} for job {job.id}", at
        )
        job.state = "Finishing"
        self.releasing += len(job.resources)
        process = self.processes.get(job.id)
        if process is None:
            self._finish(job, exit_code=None, at=at)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        scale = self.clock.scale or 1.0
        self._push(self.clock.time() + self.config.kill_grace * scale, "sigkill", job.id, job.token)

    # ---- execute mode ---------------------------------------------------------------------------

    def _spawn(self, job: Job) -> None:
        directory = job.launching_directory
        at = job.start_time
        if self.config.run_as == "login" and self.home_of(job.owner) is None:
            # its Unix user is gone (or the job came from a state file): never run it as root
            job.kill_reason = "launch"
            self._finish(job, exit_code=None, at=at)
            return
        if not os.path.isdir(directory):
            job.kill_reason = "working_directory"
            self._finish(job, exit_code=None, at=at)
            self._event(
                job,
                "WORKING_DIRECTORY",
                f"[bipbip {job.id}] Cannot go into the working directory {directory} of the job",
                at,
            )
            return
        nodefile = os.path.join(self.files_dir, f"{job.id}.nodefile")
        propfile = os.path.join(self.files_dir, f"{job.id}.resources")
        with open(nodefile, "w") as f:
            f.writelines(self.node_names[self.node_of(r)] + "\n" for r in job.resources)
        with open(propfile, "w") as f:
            for rid in job.resources:
                node = self.node_names[self.node_of(rid)]
                f.write(f"id = '{rid}', network_address = '{node}', host = '{node}', core = '{rid}'\n")
        user = self.unix_user_of(job.owner)
        # the job's $HOME is its owner's home, the one `$HOME`/`~` expanded to at submission and
        # the one `/media/~/` reads: one home per login, whoever runs the emulator
        home = self.home_of(job.owner) or os.environ.get("HOME", "/")
        env = dict(os.environ) if user is None else user.environment()
        env.update(
            {
                "HOME": home,
                "USER": job.owner,
                "LOGNAME": job.owner,
                "OAR_JOB_ID": str(job.id),
                "OAR_JOBID": str(job.id),
                "OAR_ARRAY_ID": str(job.array_id),
                "OAR_ARRAYID": str(job.array_id),
                "OAR_ARRAY_INDEX": str(job.array_index),
                "OAR_ARRAYINDEX": str(job.array_index),
                "OAR_JOB_NAME": job.name or "",
                "OAR_NODEFILE": nodefile,
                "OAR_NODE_FILE": nodefile,
                "OAR_FILE_NODES": nodefile,
                "OAR_RESOURCE_PROPERTIES_FILE": propfile,
                "OAR_RESOURCE_FILE": nodefile,
                "OAR_WORKDIR": directory,
                "OAR_O_WORKDIR": directory,
                "OAR_WORKING_DIRECTORY": directory,
                "OAR_USER": job.owner,
                "OAR_PROJECT_NAME": job.project,
                "OAR_JOB_WALLTIME_SECONDS": str(job.walltime),
                "OAR_CLUSTER": self.config.name,
            }
        )
        if user is not None:
            self._spawn_as(job, user, env)
            return
        try:
            stdout = open(self._abs(job, job.stdout_file), "ab")  # noqa: SIM115 - handed to Popen
            stderr = open(self._abs(job, job.stderr_file), "ab")  # noqa: SIM115
        except OSError as error:
            self._event(job, "OUTPUT_FILES", f"[bipbip {job.id}] Cannot create output files: {error}", at)
            job.kill_reason = "output_files"
            self._finish(job, exit_code=None, at=at)
            return
        with stdout, stderr:
            process = subprocess.Popen(
                ["bash", "-c", job.command],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        self._watch(job, process)

    def _spawn_as(self, job: Job, user: UnixUser, env: dict[str, str]) -> None:
        """Run the job as `user`: the working directory is entered and the output files opened by
        the job's own shell, with the user's rights (never by the emulator as root)."""
        for path in (env["OAR_NODEFILE"], env["OAR_RESOURCE_PROPERTIES_FILE"]):
            os.chown(path, user.uid, user.gid)
        wrapper = 'cd -- "$1" && exec >>"$2" 2>>"$3" && exec bash -c "$4"'
        process = subprocess.Popen(
            ["bash", "-c", wrapper, "bash", job.launching_directory,
             self._abs(job, job.stdout_file), self._abs(job, job.stderr_file), job.command],
            cwd="/",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **user.popen_options(),
        )
        self._watch(job, process)

    def _watch(self, job: Job, process: subprocess.Popen[bytes]) -> None:
        self.processes[job.id] = process
        token = job.token
        threading.Thread(
            target=self._wait,
            args=(job.id, token, process),
            daemon=True,
            name=f"oar-{self.config.name}-job{job.id}",
        ).start()

    def _abs(self, job: Job, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(job.launching_directory, path)

    def _wait(self, job_id: int, token: int, process: subprocess.Popen[bytes]) -> None:
        returncode = process.wait()
        # the raw wait status: exit N -> N << 8, killed by signal S -> S (probed on OAR 2.5.9 with
        # `kill -TERM \$\$`: 15, `kill -SEGV \$\$`: 11)
        raw = (returncode << 8) if returncode >= 0 else -returncode
        with self.lock:
            job = self.jobs[job_id]
            if job.token != token or job.state not in ("Running", "Finishing"):
                return
            self._finish(job, exit_code=raw, at=self.now())
            self._schedule(self.clock.time())
            self.dirty = True
            self.changed.notify_all()

    # ---- deletion ----------------------------------------------------------------------------

    def delete(self, login: str, job_ids: list[int]) -> str:
        """oardel: register a frag request for each job; raises an `Oardel error` as OAR does."""
        with self.lock:
            self.pump()
            output = ""
            for job_id in job_ids:
                job = self.jobs.get(job_id)
                if job is None or (job.owner != login and login not in ("oar", "root")):
                    raise self._oardel_error(
                        1,
                        f"Deleting the job = {job_id} ...ERROR.\n"
                        f"Cannot frag {job_id} ; You are not the right user.\n",
                        job_ids,
                    )
                if job.fragged:
                    raise self._oardel_error(
                        6,
                        f"Deleting the job = {job_id} ...ERROR.\n"
                        f"Cannot frag {job_id} ; This job was already killed.\n",
                        job_ids,
                    )
            at = self.now()
            for job_id in job_ids:
                job = self.jobs[job_id]
                output += f"Deleting the job = {job_id} ...REGISTERED.\n"
                self._event(job, "FRAG_JOB_REQUEST", f"User {login} requested to frag the job {job_id}", at)
                job.fragged = True
                if job.state in ("Waiting", "Hold"):
                    job.state = "Error"
                    job.message = "Job killed by Leon directly"
                    job.kill_reason = "frag"
                    job.stop_time = 0
                    job.token += 1
                    self.active.discard(job.id)
                elif job.state in ("Running", "Launching"):
                    job.kill_reason = "frag"
                    self._kill(job, at)
            output += (
                f"The job(s) [ {' '.join(str(i) for i in job_ids)} ] will be deleted in the near future.\n"
            )
            self._schedule(self.clock.time())
            self.dirty = True
            self.changed.notify_all()
            return output

    def hold_or_resume(self, login: str, job_ids: list[int], *, hold: bool) -> str:
        """oarhold / oarresume: Waiting <-> Hold, by the owner (or oar/root)."""
        name = "Oarhold" if hold else "Oarresume"
        with self.lock:
            self.pump()
            output = ""
            for job_id in job_ids:
                job = self.jobs.get(job_id)
                wanted = "Waiting" if hold else "Hold"
                if (
                    job is None
                    or (job.owner != login and login not in ("oar", "root"))
                    or job.state != wanted
                ):
                    command = f"/usr/lib/oar/oardodo/oardodo {name.lower()} {job_id}"
                    raise ApiError(
                        400,
                        f"{name} error",
                        f"{name} command exited with status 256: "
                        f"[{name.upper()}] Cannot {'hold' if hold else 'resume'} {job_id}\n. "
                        f"(Command was: {command}).",
                    )
            for job_id in job_ids:
                job = self.jobs[job_id]
                if hold:
                    job.state = "Hold"
                    self._event(job, "HOLD_WAITING_JOB", f"User {login} launched oarhold on the job {job_id}")
                    output += f"[{job_id}] Hold request was sent to the OAR server.\n"
                else:
                    job.state = "Waiting"
                    self.queues[job.queue].append(job_id)
                    self._event(job, "RESUME_JOB", f"User {login} launched oarresume on the job {job_id}")
                    output += f"[{job_id}] Resume request was sent to the OAR server.\n"
            if not hold:
                for queue in self.queues.values():  # keep FIFO by id after a resumption
                    ordered = sorted(set(queue))
                    queue.clear()
                    queue.extend(ordered)
            self._schedule(self.clock.time())
            self.dirty = True
            self.changed.notify_all()
            return output

    def _oardel_error(self, status: int, output: str, job_ids: list[int]) -> ApiError:
        command = f"/usr/lib/oar/oardodo/oardodo oardel {' '.join(str(i) for i in job_ids)}"
        return ApiError(
            400,
            "Oardel error",
            f"Oardel command exited with status {status << 8}: {output}. (Command was: {command}).",
        )

    # ---- resources ---------------------------------------------------------------------------

    def set_node_state(self, node: str, state: str) -> None:
        """Take a node out of scheduling (Absent, Suspected, Dead) or back (Alive). Jobs running
        there go on; its cores are not given to new jobs until it is Alive again."""
        if state not in ("Alive", "Absent", "Suspected", "Dead"):
            raise ValueError(f"unknown resource state {state!r}")
        with self.lock:
            index = self.node_names.index(node)
            self.node_state[index] = state
            rids = range(index * self.config.cores + 1, (index + 1) * self.config.cores + 1)
            if state != "Alive":
                for rid in rids:
                    self.free.discard(rid)
                self.node_free[index].clear()
            else:
                held = {
                    r
                    for job_id in self.active
                    for r in self.jobs[job_id].resources
                    if self.jobs[job_id].state in ("Running", "Finishing")
                }
                self._release([r for r in rids if r not in held])
                self._schedule(self.clock.time())
            self.dirty = True
            self.changed.notify_all()

    # ---- normal user ---------------------------------------------------------------------------

    def add_normal_user(
        self, cores: int, duration: float, *, start_in: float = 0.0, period: float | None = None
    ) -> None:
        """A normal (non best-effort) user who takes `cores` cores for `duration` emulated seconds,
        starting `start_in` seconds from now and again every `period` seconds if given."""
        with self.lock:
            self.normal_users.append((cores, duration, period))
            self._push(self.clock.time() + start_in, "normal_user", len(self.normal_users) - 1)
        self.pump()

    def _normal_user_arrival(self, key: int, when: float) -> None:
        cores, duration, period = self.normal_users[key]
        cores = max(1, min(cores, self.total_cores))
        now = int(when)
        job = Job(
            id=self.next_job_id,
            array_id=self.next_job_id,
            array_index=1,
            name="normal_user",
            owner=NORMAL_USER,
            queue="default",
            types=[],
            command=f"sleep {int(duration)}",
            param=None,
            launching_directory="/",
            stdout_tpl="/dev/null",
            stderr_tpl="/dev/null",
            project="default",
            properties="(desktop_computing = 'NO') AND drain='NO'",
            initial_request=f"oarsub -l /core={cores} sleep {int(duration)}",
            request=parse_resource(f"/core={cores},walltime={int(duration) + 3600}"),
            message=f"R={cores},W={format_walltime(int(duration) + 3600)},J=B,N=normal_user",
            submission_time=now,
            sim_duration=duration,
        )
        self.next_job_id += 1
        self.jobs[job.id] = job
        self.arrays[job.id] = [job.id]
        self.active.add(job.id)
        self.queues["default"].append(job.id)
        if period:
            self._push(when + period, "normal_user", key)

    # ---- queries -------------------------------------------------------------------------------

    def select_jobs(
        self,
        *,
        states: list[str] | None,
        array: int | None,
        ids: list[int] | None,
        user: str | None,
        since: int | None = None,
        until: int | None = None,
    ) -> list[Job]:
        """Jobs matching OAR's collection filters, in ascending id. `since`/`until` (OAR's `from`
        and `to`) keep the jobs that overlap the window: not stopped or stopped after `since`,
        submitted before `until`."""
        with self.lock:
            self.pump()
            if ids is not None:
                candidates = sorted({i for i in ids if i in self.jobs})
            elif array is not None:
                candidates = list(self.arrays.get(array, []))
            elif (states is not None and not (set(states) <= CURRENT_STATES)) or (
                states is None and (since is not None or until is not None)
            ):
                candidates = sorted(self.jobs)
            else:
                candidates = sorted(self.active)
            if states is None and ids is None and array is None and since is None and until is None:
                states = list(CURRENT_STATES)
            wanted = set(states) if states is not None else None
            result = []
            for job_id in candidates:
                job = self.jobs[job_id]
                if array is not None and job.array_id != array:
                    continue
                if wanted is not None and job.state not in wanted:
                    continue
                if user is not None and job.owner != user:
                    continue
                if since is not None and job.stop_time and job.stop_time < since:
                    continue
                if until is not None and job.submission_time > until:
                    continue
                result.append(job)
            return result

    def get(self, job_id: int) -> Job | None:
        with self.lock:
            self.pump()
            return self.jobs.get(job_id)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            self.pump()
            return [job.snapshot() for job in self.jobs.values()]

    # ---- shutdown ------------------------------------------------------------------------------

    def kill_all(self) -> None:
        """Stop every job process (emulator shutdown)."""
        with self.lock:
            processes = list(self.processes.values())
        for process in processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
