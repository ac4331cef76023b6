"""The state of one emulated OAR cluster: resources, jobs, events, the FIFO scheduler with
best-effort preemption and walltime kills, and the two ways of running a job (a real subprocess,
or a simulated duration and exit status). Event-driven: due events sit in a heap, so a pass costs
what it starts or ends, not the size of the queue. Every public method takes the cluster lock.
What oarsub checks and expands at submission is `cigri.emulator.submission`; the cluster's
vocabulary (jobs, events, configuration) is `cigri.emulator.jobs`."""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import random
import signal
import subprocess
import threading
from collections import Counter, deque
from typing import Any

from cigri.accounts import UnixAccount, find_account
from cigri.emulator import control, execution
from cigri.emulator.clock import EmuClock
from cigri.emulator.jobs import (
    NORMAL_USER,
    QUEUES,
    ClusterConfig,
    Event,
    Job,
    Mode,
    Submitted,
)
from cigri.emulator.resources import ResourceRequest, group_shape
from cigri.emulator.submission import JobPlan, plan_submission, request_cores

__all__ = ["Cluster", "ClusterConfig", "Mode"]

log = logging.getLogger(__name__)

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
            user = find_account(login)
            if user is None or user.uid == 0:  # no such user, or root by another name
                return None
            return user.home if self.config.users is None else self.config.users.get(login)
        if self.config.users is not None:
            return self.config.users.get(login)
        home = os.path.join(os.path.abspath(self.config.workdir), "home", login)
        os.makedirs(home, exist_ok=True)
        return home

    def unix_user_of(self, login: str) -> UnixAccount | None:
        """The Unix user a login's jobs and files act as; None: the emulator's own user."""
        return find_account(login) if self.config.run_as == "login" else None

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

    def _submit(self, login: str, body: dict[str, Any]) -> Submitted:
        home = self.home_of(login)  # first: in "self" mode it creates the home
        return self._enqueue(plan_submission(self.config, login, home, body, self.now()))

    def _enqueue(self, plan: JobPlan) -> Submitted:
        """Number the plan's jobs (one array), queue the Waiting ones; oarsub's output."""
        output = plan.output
        array_id = self.next_job_id
        for job in plan.jobs:
            job.id, job.array_id = self.next_job_id, array_id
            self.next_job_id += 1
            self.jobs[job.id] = job
            self.active.add(job.id)
            if job.state == "Waiting":
                self.queues[job.queue].append(job.id)
            output += f"OAR_JOB_ID={job.id}\n"
        ids = [job.id for job in plan.jobs]
        self.arrays[array_id] = list(ids)
        if len(ids) > 1:
            output += f"OAR_ARRAY_ID={array_id}\n"
        return Submitted(ids=ids, cmd_output=output)

    def _request_cores(self, request: ResourceRequest) -> int | None:
        """Total cores a request needs, or None if the cluster can never satisfy it."""
        return request_cores(self.config, request)

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
            control.normal_user_arrival(self, job_id, when)
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
        for queue in ("admin", "default"):
            if not self._start_from(queue, when, may_preempt=True):
                return
        self._start_from("besteffort", when, may_preempt=False)

    def _start_from(self, queue: str, when: float, *, may_preempt: bool) -> bool:
        """Start the queue's waiting jobs in order while they fit; False when one must wait."""
        pending = self.queues[queue]
        while pending:
            job = self.jobs[pending[0]]
            if job.state != "Waiting":
                pending.popleft()
                continue
            allocation = self._allocate(job)
            if allocation is None and may_preempt and self._preempt_for(job, when):
                allocation = self._allocate(job)
            if allocation is None:
                return False
            pending.popleft()
            self._start(job, allocation, when)
        return True

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
            seconds, status = execution.draw_simulated(self, job)
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
        if job.sim_batch and job.start_time is not None:
            execution.write_batch_state(job, start=job.start_time, at=at if error else None)
        if self.config.simulate_outputs and self.config.mode == "simulate" and job.owner != NORMAL_USER:
            self._write_outputs(job, exit_code)
        job.token += 1
        self.processes.pop(job.id, None)
        if "idempotent" in job.types:
            control.resubmit_idempotent(self, job, at)

    def _write_outputs(self, job: Job, exit_code: int | None) -> None:
        execution.write_simulated_outputs(self, job, exit_code)

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

    # ---- execute mode (cigri.emulator.execution) ---------------------------------------------

    def _spawn(self, job: Job) -> None:
        execution.spawn(self, job)

    # ---- other commands (cigri.emulator.control) ------------------------------------------------

    def delete(self, login: str, job_ids: list[int]) -> str:
        """oardel: register a frag request for each job; raises an `Oardel error` as OAR does."""
        return control.delete(self, login, job_ids)

    def hold_or_resume(self, login: str, job_ids: list[int], *, hold: bool) -> str:
        """oarhold / oarresume: Waiting <-> Hold, by the owner (or oar/root)."""
        return control.hold_or_resume(self, login, job_ids, hold=hold)

    def set_node_state(self, node: str, state: str) -> None:
        """Take a node out of scheduling (Absent, Suspected, Dead) or back (Alive)."""
        control.set_node_state(self, node, state)

    def add_normal_user(
        self, cores: int, duration: float, *, start_in: float = 0.0, period: float | None = None
    ) -> None:
        """A normal user taking `cores` cores for `duration` s, from `start_in`, every `period`."""
        control.add_normal_user(self, cores, duration, start_in=start_in, period=period)

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
