"""How an emulated cluster runs a job in execute mode: a real `bash -c` subprocess in the job's
working directory with OAR's environment (node file, resource file, OAR_* variables), as the
emulator's own user or as the login's Unix user, watched by a thread that reports its wait status;
and the small output files of a simulated job. In simulate mode, a cigri temporal-grouping batch
(`cigri.domain.batches.batch_script`) runs as a shell would run it: its tasks in turn, each for
its own `sleep N`, appending their BEGIN_DATE/RET/END_DATE lines to the batch's state file (written
when the job ends, with the lines of the tasks begun or ended by then). The scheduling around it
is `cigri.emulator.model`."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from typing import TYPE_CHECKING

from cigri.accounts import UnixAccount
from cigri.emulator.jobs import Job

if TYPE_CHECKING:
    from cigri.emulator.model import Cluster

# one task of a cigri batch script: its BEGIN_DATE line (job id, state file) and its command (the
# `\$` escapes are gone once the API expanded the command as OAR's shell does)
_BATCH_TASK = re.compile(
    r"echo (\d+) BEGIN_DATE=\\?\$\(date \+%s\) >> (\S+); \( (.*?) \) > cigri_batch_stdout_\1 ",
    re.DOTALL)


def draw_simulated(cluster: Cluster, job: Job) -> tuple[float, int]:
    """Simulate mode: (seconds, exit status) of a job; a cigri batch's tasks are drawn one by
    one (kept on the job for its state file) and the batch lasts their sum, exiting 0."""
    tasks = _BATCH_TASK.findall(job.command)
    if not tasks:
        return cluster.config.workload.draw(job.command, cluster.rng)
    drawn = []
    for job_id, _state, command in tasks:
        seconds, status = cluster.config.workload.draw(command, cluster.rng)
        drawn.append((int(job_id), seconds, status))
    job.sim_batch = tuple(drawn)
    job.sim_batch_state = tasks[0][1]
    return sum(seconds for _job, seconds, _status in drawn), 0


def write_batch_state(job: Job, *, start: int, at: int | None) -> None:
    """The state file a batch left: every task's lines when it ended by itself (`at` None), else
    (killed at `at`) the lines of each task begun by then, and RET/END_DATE of each ended."""
    lines = []
    begin = float(start)
    for job_id, seconds, status in job.sim_batch:
        if at is not None and begin > at:
            break
        lines.append(f"{job_id} BEGIN_DATE={int(begin)}")
        end = begin + seconds
        if at is not None and end > at:
            break
        lines += [f"{job_id} RET={status}",
                  f"{job_id} END_DATE={int(end)}"]
        begin = end
    try:
        path = output_path(job, job.sim_batch_state)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a") as state:
            state.write("".join(f"{line}\n" for line in lines))
    except OSError:
        pass  # the directory cannot exist here: as a node without it, no state file


def spawn(cluster: Cluster, job: Job) -> None:
    """Start a job OAR has just launched; a job that cannot start ends in Error at once."""
    if not _can_start(cluster, job):
        return
    nodefile, propfile = _node_files(cluster, job)
    user = cluster.unix_user_of(job.owner)
    env = _environment(cluster, job, user, nodefile, propfile)
    if user is not None:
        _spawn_as(cluster, job, user, env)
    else:
        _spawn_self(cluster, job, env)


def _can_start(cluster: Cluster, job: Job) -> bool:
    directory = job.launching_directory
    at = job.start_time
    if cluster.config.run_as == "login" and cluster.home_of(job.owner) is None:
        # its Unix user is gone (or the job came from a state file): never run it as root
        job.kill_reason = "launch"
        cluster._finish(job, exit_code=None, at=at)
        return False
    if not os.path.isdir(directory):
        job.kill_reason = "working_directory"
        cluster._finish(job, exit_code=None, at=at)
        cluster._event(
            job,
            "WORKING_DIRECTORY",
            f"[bipbip {job.id}] Cannot go into the working directory {directory} of the job",
            at,
        )
        return False
    return True


def _node_files(cluster: Cluster, job: Job) -> tuple[str, str]:
    """OAR's node file (one line per core) and resource properties file of a job."""
    nodefile = os.path.join(cluster.files_dir, f"{job.id}.nodefile")
    propfile = os.path.join(cluster.files_dir, f"{job.id}.resources")
    with open(nodefile, "w") as f:
        f.writelines(cluster.node_names[cluster.node_of(r)] + "\n" for r in job.resources)
    with open(propfile, "w") as f:
        for rid in job.resources:
            node = cluster.node_names[cluster.node_of(rid)]
            f.write(f"id = '{rid}', network_address = '{node}', host = '{node}', core = '{rid}'\n")
    return nodefile, propfile


def _environment(cluster: Cluster, job: Job, user: UnixAccount | None, nodefile: str,
                 propfile: str) -> dict[str, str]:
    directory = job.launching_directory
    # the job's $HOME is its owner's home, the one `$HOME`/`~` expanded to at submission and
    # the one `/media/~/` reads: one home per login, whoever runs the emulator
    home = cluster.home_of(job.owner) or os.environ.get("HOME", "/")
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
            "OAR_CLUSTER": cluster.config.name,
        }
    )
    return env


def _spawn_self(cluster: Cluster, job: Job, env: dict[str, str]) -> None:
    """Run the job as the emulator's own user: the emulator opens its output files."""
    try:
        stdout = open(output_path(job, job.stdout_file), "ab")  # noqa: SIM115 - handed to Popen
        stderr = open(output_path(job, job.stderr_file), "ab")  # noqa: SIM115
    except OSError as error:
        cluster._event(job, "OUTPUT_FILES", f"[bipbip {job.id}] Cannot create output files: {error}",
                       job.start_time)
        job.kill_reason = "output_files"
        cluster._finish(job, exit_code=None, at=job.start_time)
        return
    with stdout, stderr:
        process = subprocess.Popen(
            ["bash", "-c", job.command],
            cwd=job.launching_directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    _watch(cluster, job, process)


def _spawn_as(cluster: Cluster, job: Job, user: UnixAccount, env: dict[str, str]) -> None:
    """Run the job as `user`: the working directory is entered and the output files opened by
    the job's own shell, with the user's rights (never by the emulator as root)."""
    for path in (env["OAR_NODEFILE"], env["OAR_RESOURCE_PROPERTIES_FILE"]):
        os.chown(path, user.uid, user.gid)
    wrapper = 'cd -- "$1" && exec >>"$2" 2>>"$3" && exec bash -c "$4"'
    process = subprocess.Popen(
        ["bash", "-c", wrapper, "bash", job.launching_directory,
         output_path(job, job.stdout_file), output_path(job, job.stderr_file), job.command],
        cwd="/",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **user.popen_options(),
    )
    _watch(cluster, job, process)


def _watch(cluster: Cluster, job: Job, process: subprocess.Popen[bytes]) -> None:
    cluster.processes[job.id] = process
    token = job.token
    threading.Thread(
        target=_wait,
        args=(cluster, job.id, token, process),
        daemon=True,
        name=f"oar-{cluster.config.name}-job{job.id}",
    ).start()


def output_path(job: Job, path: str) -> str:
    """A job's file name as a path: relative ones are in its launching directory."""
    return path if os.path.isabs(path) else os.path.join(job.launching_directory, path)


def _wait(cluster: Cluster, job_id: int, token: int, process: subprocess.Popen[bytes]) -> None:
    returncode = process.wait()
    # the raw wait status: exit N -> N << 8, killed by signal S -> S (probed on OAR 2.5.9 with
    # `kill -TERM \$\$`: 15, `kill -SEGV \$\$`: 11)
    raw = (returncode << 8) if returncode >= 0 else -returncode
    with cluster.lock:
        job = cluster.jobs[job_id]
        if job.token != token or job.state not in ("Running", "Finishing"):
            return
        cluster._finish(job, exit_code=raw, at=cluster.now())
        cluster._schedule(cluster.clock.time())
        cluster.dirty = True
        cluster.changed.notify_all()


def write_simulated_outputs(cluster: Cluster, job: Job, exit_code: int | None) -> None:
    """What a simulated job printed: a line on stdout, and on stderr when it failed."""
    try:
        with open(output_path(job, job.stdout_file), "a") as out:
            out.write(f"simulated job {job.id} ({job.command})\n")
        with open(output_path(job, job.stderr_file), "a") as err:
            if exit_code:
                err.write(f"simulated failure: exit status {exit_code >> 8}\n")
    except OSError:
        pass  # the directory does not exist here: nothing to show, as a node without the file
