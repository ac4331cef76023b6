"""The commands that act on an emulated cluster besides oarsub: oardel, oarhold and oarresume (with
OAR's refusals), node states (an operator taking a node out), the normal users whose jobs compete
with cigri's, and oarstat's job selection. Each takes the cluster lock; the scheduling they trigger
is `cigri.emulator.model`. Also OAR's automatic resubmission of idempotent jobs
(`resubmit_idempotent`), which the model calls, lock held, as such a job ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cigri.emulator.jobs import CURRENT_STATES, NORMAL_USER, ApiError, Job
from cigri.emulator.resources import format_walltime, parse_resource

if TYPE_CHECKING:
    from cigri.emulator.model import Cluster


def delete(cluster: Cluster, login: str, job_ids: list[int]) -> str:
    """oardel: register a frag request for each job; raises an `Oardel error` as OAR does."""
    with cluster.lock:
        cluster.pump()
        output = ""
        for job_id in job_ids:
            job = cluster.jobs.get(job_id)
            if job is None or (job.owner != login and login not in ("oar", "root")):
                raise _oardel_error(
                    1,
                    f"Deleting the job = {job_id} ...ERROR.\n"
                    f"Cannot frag {job_id} ; You are not the right user.\n",
                    job_ids,
                )
            if job.fragged:
                raise _oardel_error(
                    6,
                    f"Deleting the job = {job_id} ...ERROR.\n"
                    f"Cannot frag {job_id} ; This job was already killed.\n",
                    job_ids,
                )
        at = cluster.now()
        for job_id in job_ids:
            job = cluster.jobs[job_id]
            output += f"Deleting the job = {job_id} ...REGISTERED.\n"
            cluster._event(job, "FRAG_JOB_REQUEST", f"User {login} requested to frag the job {job_id}", at)
            job.fragged = True
            if job.state in ("Waiting", "Hold"):
                job.state = "Error"
                job.message = "Job killed by Leon directly"
                job.kill_reason = "frag"
                job.stop_time = 0
                job.token += 1
                cluster.active.discard(job.id)
            elif job.state in ("Running", "Launching"):
                job.kill_reason = "frag"
                cluster._kill(job, at)
        output += (
            f"The job(s) [ {' '.join(str(i) for i in job_ids)} ] will be deleted in the near future.\n"
        )
        cluster._schedule(cluster.clock.time())
        cluster.dirty = True
        cluster.changed.notify_all()
        return output


def hold_or_resume(cluster: Cluster, login: str, job_ids: list[int], *, hold: bool) -> str:
    """oarhold / oarresume: Waiting <-> Hold, by the owner (or oar/root)."""
    name = "Oarhold" if hold else "Oarresume"
    with cluster.lock:
        cluster.pump()
        output = ""
        for job_id in job_ids:
            job = cluster.jobs.get(job_id)
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
            job = cluster.jobs[job_id]
            if hold:
                job.state = "Hold"
                cluster._event(job, "HOLD_WAITING_JOB", f"User {login} launched oarhold on the job {job_id}")
                output += f"[{job_id}] Hold request was sent to the OAR server.\n"
            else:
                job.state = "Waiting"
                cluster.queues[job.queue].append(job_id)
                cluster._event(job, "RESUME_JOB", f"User {login} launched oarresume on the job {job_id}")
                output += f"[{job_id}] Resume request was sent to the OAR server.\n"
        if not hold:
            for queue in cluster.queues.values():  # keep FIFO by id after a resumption
                ordered = sorted(set(queue))
                queue.clear()
                queue.extend(ordered)
        cluster._schedule(cluster.clock.time())
        cluster.dirty = True
        cluster.changed.notify_all()
        return output


def _oardel_error(status: int, output: str, job_ids: list[int]) -> ApiError:
    command = f"/usr/lib/oar/oardodo/oardodo oardel {' '.join(str(i) for i in job_ids)}"
    return ApiError(
        400,
        "Oardel error",
        f"Oardel command exited with status {status << 8}: {output}. (Command was: {command}).",
    )


def set_node_state(cluster: Cluster, node: str, state: str) -> None:
    """Take a node out of scheduling (Absent, Suspected, Dead) or back (Alive). Jobs running
    there go on; its cores are not given to new jobs until it is Alive again."""
    if state not in ("Alive", "Absent", "Suspected", "Dead"):
        raise ValueError(f"unknown resource state {state!r}")
    with cluster.lock:
        index = cluster.node_names.index(node)
        cluster.node_state[index] = state
        rids = range(index * cluster.config.cores + 1, (index + 1) * cluster.config.cores + 1)
        if state != "Alive":
            for rid in rids:
                cluster.free.discard(rid)
            cluster.node_free[index].clear()
        else:
            held = {
                r
                for job_id in cluster.active
                for r in cluster.jobs[job_id].resources
                if cluster.jobs[job_id].state in ("Running", "Finishing")
            }
            cluster._release([r for r in rids if r not in held])
            cluster._schedule(cluster.clock.time())
        cluster.dirty = True
        cluster.changed.notify_all()


def add_normal_user(
    cluster: Cluster, cores: int, duration: float, *, start_in: float = 0.0, period: float | None = None
) -> None:
    """A normal (non best-effort) user who takes `cores` cores for `duration` emulated seconds,
    starting `start_in` seconds from now and again every `period` seconds if given."""
    with cluster.lock:
        cluster.normal_users.append((cores, duration, period))
        cluster._push(cluster.clock.time() + start_in, "normal_user", len(cluster.normal_users) - 1)
    cluster.pump()


def normal_user_arrival(cluster: Cluster, key: int, when: float) -> None:
    cores, duration, period = cluster.normal_users[key]
    cores = max(1, min(cores, cluster.total_cores))
    now = int(when)
    job = Job(
        id=cluster.next_job_id,
        array_id=cluster.next_job_id,
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
    cluster.next_job_id += 1
    cluster.jobs[job.id] = job
    cluster.arrays[job.id] = [job.id]
    cluster.active.add(job.id)
    cluster.queues["default"].append(job.id)
    if period:
        cluster._push(when + period, "normal_user", key)


def select_jobs(
    cluster: Cluster,
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
    with cluster.lock:
        cluster.pump()
        if ids is not None:
            candidates = sorted({i for i in ids if i in cluster.jobs})
        elif array is not None:
            candidates = list(cluster.arrays.get(array, []))
        elif (states is not None and not (set(states) <= CURRENT_STATES)) or (
            states is None and (since is not None or until is not None)
        ):
            candidates = sorted(cluster.jobs)
        else:
            candidates = sorted(cluster.active)
        if states is None and ids is None and array is None and since is None and until is None:
            states = list(CURRENT_STATES)
        wanted = set(states) if states is not None else None
        result = []
        for job_id in candidates:
            job = cluster.jobs[job_id]
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


def resubmit_idempotent(cluster: Cluster, job: Job, at: int) -> None:
    """OAR's automatic resubmissions of idempotent jobs: killed as best-effort (bipbip), or
    exiting 99 after more than 60 s (NodeChangeState)."""
    kinds = {e.type for e in job.events}
    if job.state == "Error" and "BESTEFFORT_KILL" in kinds:
        new_id = _resubmit(cluster, job, at)
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
        new_id = _resubmit(cluster, job, at)
        description = (
            f"[NodeChangeState] Resubmiting job {job.id} => {new_id} "
            "(type idempotent & exit code = 99 & duration > 60s)"
        )
    else:
        return
    cluster._event(job, "RESUBMIT_JOB_AUTOMATICALLY", description, at)


def _resubmit(cluster: Cluster, old: Job, at: int) -> int:
    """A copy of `old` as a new waiting job (OAR's `resubmit_job`)."""
    new = Job(
        id=cluster.next_job_id,
        array_id=cluster.next_job_id,
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
    cluster.next_job_id += 1
    cluster.jobs[new.id] = new
    cluster.arrays[new.id] = [new.id]
    cluster.active.add(new.id)
    cluster.queues[new.queue].append(new.id)
    return new.id
