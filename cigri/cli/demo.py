"""`cigri demo`: the whole of cigri on this machine, in under two minutes, then gone.

A throwaway directory holds a SQLite database and three emulated OAR clusters (execute mode: the
jobs really run, here, as small shell scripts), each with a "normal user" who takes every core of
the cluster as soon as cigri's first best-effort jobs run there (`_Preemptor`: triggered by the
cluster's state, not a timer), so every run shows best-effort kills and their resubmission. Every
daemon runs under `cigri-almighty` as a child
process, configured through a generated `cigri.conf` with fast intervals. A sample campaign of a
few hundred short tasks goes in through the campaign storage, progress is drawn per cluster, and a
summary (tasks done, resubmissions, per-cluster counts, wall time) ends it. Ctrl-C cleans up too.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine, func, select

from cigri.cli import localgrid
from cigri.cli.dashboard import dashboard
from cigri.domain.event_codes import EventCode
from cigri.storage.campaigns import create_campaign
from cigri.storage.db import make_engine
from cigri.storage.migrate import upgrade
from cigri.storage.tables import campaigns, clusters, events, jobs, parameters

TASK_SCRIPT = """#!/bin/sh
# One task of the cigri demo: a short piece of work, then a line of output.
sleep {sleep}
echo "task $1 done on $(hostname) in $PWD"
"""

# Jobs not running yet: being launched, or submitted and waiting in OAR's queue. Shown apart from
# the running ones, which never outnumber the cluster's cores.
WAITING_STATES = frozenset({"to_launch", "launching", "submitted", "remote_waiting",
                            "batch_waiting"})

# The grid user of the sample campaign (OAR refuses root and oar as job owners).
DEMO_USER = "demo"

# The normal user of each cluster arrives once this many best-effort jobs run there, takes every
# core for this many (emulated) seconds, and so kills them all.
PREEMPT_WHEN_RUNNING = 2
PREEMPT_SECONDS = 1.5


class _Preemptor(threading.Thread):
    """Sends each cluster's normal user in once cigri's best-effort jobs run there.

    The check and the arrival happen under the emulated cluster's lock, so the jobs counted are
    still running when the normal user asks for every core: each arrival kills at least
    `PREEMPT_WHEN_RUNNING` jobs, whatever the timing of the daemons.
    """

    def __init__(self, controls: list[Any]) -> None:
        super().__init__(daemon=True, name="cigri-demo-preemptor")
        self.waiting = list(controls)
        self.stopping = threading.Event()

    def run(self) -> None:
        while self.waiting and not self.stopping.wait(0.02):
            self.waiting = [c for c in self.waiting if not _preempt(c.cluster)]

    def stop(self) -> None:
        self.stopping.set()
        if self.ident is not None:  # started
            self.join(timeout=5)


def _preempt(cluster: Any) -> bool:
    """The normal user takes the whole cluster if enough best-effort jobs run; True if it did."""
    with cluster.lock:
        cluster.pump()
        if len(cluster.running_besteffort) < PREEMPT_WHEN_RUNNING:
            return False
        cluster.add_normal_user(cluster.total_cores, PREEMPT_SECONDS)
    return True


@dataclass
class Progress:
    total: int
    done_by_cluster: dict[str, int] = field(default_factory=dict)
    running_by_cluster: dict[str, int] = field(default_factory=dict)  # running on the cluster
    waiting_by_cluster: dict[str, int] = field(default_factory=dict)  # launching, queued in OAR
    resubmissions: int = 0
    preemptions: int = 0
    state: str = "in_treatment"

    @property
    def done(self) -> int:
        return sum(self.done_by_cluster.values())


def _read_progress(engine: Engine, campaign_id: int, total: int,
                   names: dict[int, str]) -> Progress:
    progress = Progress(total=total)
    with engine.begin() as conn:
        rows = conn.execute(select(jobs.c.cluster_id, jobs.c.state, func.count()).where(
            jobs.c.campaign_id == campaign_id, jobs.c.param_id.is_not(None))
            .group_by(jobs.c.cluster_id, jobs.c.state)).all()
        for cluster_id, state, count in rows:
            name = names.get(cluster_id, "?")
            if state == "terminated":
                progress.done_by_cluster[name] = progress.done_by_cluster.get(name, 0) + count
            elif state == "running":
                progress.running_by_cluster[name] = (
                    progress.running_by_cluster.get(name, 0) + count)
            elif state in WAITING_STATES:
                progress.waiting_by_cluster[name] = (
                    progress.waiting_by_cluster.get(name, 0) + count)
        progress.resubmissions = int(conn.execute(select(func.count()).select_from(jobs).where(
            jobs.c.campaign_id == campaign_id, jobs.c.attempt > 1)).scalar_one())
        progress.preemptions = int(conn.execute(select(func.count()).select_from(events).where(
            events.c.campaign_id == campaign_id, events.c.code == EventCode.RESUBMIT)).scalar_one())
        progress.state = str(conn.execute(select(campaigns.c.state).where(
            campaigns.c.id == campaign_id)).scalar_one())
    return progress


def _bar(count: int, total: int, width: int = 30) -> str:
    filled = int(width * count / total) if total else width
    return "#" * filled + "." * (width - filled)


def _render(progress: Progress, names: list[str], elapsed: float) -> list[str]:
    lines = [f"  all  [{_bar(progress.done, progress.total)}] {progress.done:>5}/{progress.total}"
             f"  resubmitted {progress.resubmissions:>3}  {elapsed:5.1f}s"]
    share = max(1, progress.total // max(1, len(names)))
    for name in names:
        done = progress.done_by_cluster.get(name, 0)
        lines.append(f"  {name:<4} [{_bar(min(done, share), share)}] {done:>5} done"
                     f"  {progress.running_by_cluster.get(name, 0):>3} running"
                     f"  {progress.waiting_by_cluster.get(name, 0):>3} waiting")
    return lines


class _Screen:
    """Redraws the progress block in place on a terminal; prints a line now and then otherwise."""

    def __init__(self) -> None:
        self.is_tty = sys.stdout.isatty()
        self.drawn = 0
        self.last_plain = 0.0

    def show(self, lines: list[str]) -> None:
        if self.is_tty:
            if self.drawn:
                click.echo(f"\x1b[{self.drawn}F", nl=False)
            for line in lines:
                click.echo("\x1b[2K" + line)
            self.drawn = len(lines)
        elif time.monotonic() - self.last_plain > 5:
            self.last_plain = time.monotonic()
            click.echo(lines[0].strip())


@contextlib.contextmanager
def _workspace(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="cigri-demo-"))
    try:
        yield root
    finally:
        if keep:
            click.echo(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _write_config(root: Path, database_url: str) -> Path:
    return localgrid.write_config(root / "cigri.conf", {
        "DATABASE_URL": database_url, "LOG_FILE": str(root / "daemons.log"),
        "COLLECTOR_DIRECTORY": str(root / "results"), **localgrid.FAST_SETTINGS})


@click.command("demo")
@click.option("--tasks", default=300, show_default=True, help="Tasks in the sample campaign.")
@click.option("--clusters", "nb_clusters", default=3, show_default=True,
              help="Emulated OAR clusters.")
@click.option("--nodes", default=4, show_default=True, help="Nodes per cluster.")
@click.option("--cores", default=2, show_default=True, help="Cores per node.")
@click.option("--sleep", "task_seconds", default=0.2, show_default=True,
              help="Seconds each task works.")
@click.option("--timeout", "timeout_seconds", default=110.0, show_default=True,
              help="Give up after this many seconds.")
@click.option("--no-preemption", is_flag=True, help="No normal user preempting best-effort jobs.")
@click.option("--keep", is_flag=True, help="Keep the temporary directory (database, logs, outputs).")
def demo(tasks: int, nb_clusters: int, nodes: int, cores: int, task_seconds: float,
         timeout_seconds: float, no_preemption: bool, keep: bool) -> None:
    """Run a sample campaign on emulated clusters with every daemon, and summarise it."""
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    with _workspace(keep) as root:
        database_url = f"sqlite:///{root / 'cigri.db'}"
        upgrade(database_url)
        click.echo(f"cigri demo in {root}: {nb_clusters} emulated clusters of {nodes} x {cores} "
                   f"cores, {tasks} tasks of {task_seconds:g}s, best-effort"
                   + ("" if no_preemption else
                      ", preempted by a normal user once they run on a cluster"))
        # the jobs are the demo's own script, and only cigri knows the clusters' secret: started
        # as root, they may run as root
        secret = localgrid.new_secret()
        emulator = localgrid.start_clusters(root / "oar", clusters=nb_clusters, nodes=nodes,
                                            cores=cores, secret=secret, root_jobs=True)
        engine = make_engine(database_url)
        almighty: subprocess.Popen[bytes] | None = None
        preemptor = _Preemptor([] if no_preemption else emulator.controls)
        try:
            campaign_id, names = _setup(engine, emulator.urls, secret, root, tasks, task_seconds)
            preemptor.start()
            almighty = localgrid.start_almighty(_write_config(root, database_url),
                                                root / "almighty.out")
            token_file = root / "dashboard-token"
            with dashboard(engine, user=DEMO_USER, token_file=token_file) as url:
                click.echo(f"dashboard: {url}  (sign in with the token in {token_file})")
                finished = _follow(engine, campaign_id, tasks, names, almighty, started,
                                   timeout_seconds)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: stopping the daemons and the clusters")
            finished = None
        finally:
            preemptor.stop()
            if almighty is not None:
                localgrid.stop_process(almighty)
            emulator.stop()
        if finished is None:
            engine.dispose()
            sys.exit(130)
        _summary(engine, campaign_id, tasks, names, time.monotonic() - started, finished)
        engine.dispose()
        if not finished:
            click.echo(f"see {root / 'daemons.log'} (rerun with --keep to look at it)", err=True)
            sys.exit(1)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _setup(engine: Engine, urls: list[str], secret: str, root: Path, tasks: int,
           task_seconds: float) -> tuple[int, dict[int, str]]:
    work = root / "work"
    work.mkdir()
    script = work / "task.sh"
    script.write_text(TASK_SCRIPT.format(sleep=task_seconds))
    script.chmod(0o755)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        names = localgrid.register_clusters(conn, urls, secret=secret, now=now)
        props = {"exec_file": str(script), "exec_directory": str(work), "type": "best-effort",
                 "resources": "/resource_id=1", "walltime": "00:05:00"}
        campaign_id = create_campaign(
            conn, grid_user=DEMO_USER, name="demo", jobs_type="normal",
            jdl={"name": "demo", "clusters": {n: props for n in names.values()}},
            properties={cluster_id: props for cluster_id in names},
            params=(f"t{i} {i}" for i in range(1, tasks + 1)), now=now)
    return campaign_id, names


def _follow(engine: Engine, campaign_id: int, tasks: int, names: dict[int, str],
            almighty: subprocess.Popen[bytes], started: float, timeout_seconds: float) -> bool:
    screen = _Screen()
    ordered = sorted(names.values())
    while True:
        progress = _read_progress(engine, campaign_id, tasks, names)
        screen.show(_render(progress, ordered, time.monotonic() - started))
        if progress.state == "terminated":
            return True
        if almighty.poll() is not None:
            click.echo(f"almighty exited with status {almighty.returncode}", err=True)
            return False
        if time.monotonic() - started > timeout_seconds:
            click.echo(f"not finished after {timeout_seconds:g}s", err=True)
            return False
        time.sleep(0.5)


def _summary(engine: Engine, campaign_id: int, tasks: int, names: dict[int, str],
             elapsed: float, finished: bool) -> None:
    with engine.begin() as conn:
        done = int(conn.execute(select(func.count(func.distinct(jobs.c.param_id))).where(
            jobs.c.campaign_id == campaign_id, jobs.c.state == "terminated",
            jobs.c.param_id.is_not(None))).scalar_one())
        per_cluster: dict[str, Any] = dict(conn.execute(
            select(clusters.c.name, func.count()).join(jobs, jobs.c.cluster_id == clusters.c.id)
            .where(jobs.c.campaign_id == campaign_id, jobs.c.state == "terminated",
                   jobs.c.param_id.is_not(None)).group_by(clusters.c.name)).all())
        attempts = int(conn.execute(select(func.count()).select_from(jobs).where(
            jobs.c.campaign_id == campaign_id, jobs.c.param_id.is_not(None))).scalar_one())
        resubmitted = int(conn.execute(select(func.count()).select_from(jobs).where(
            jobs.c.campaign_id == campaign_id, jobs.c.attempt > 1)).scalar_one())
        params = int(conn.execute(select(func.count()).select_from(parameters).where(
            parameters.c.campaign_id == campaign_id)).scalar_one())
        codes: dict[str, int] = dict(conn.execute(select(events.c.code, func.count()).where(
            events.c.campaign_id == campaign_id).group_by(events.c.code)).all())
    click.echo("")
    click.echo(f"campaign {campaign_id}: {'terminated' if finished else 'NOT finished'}")
    click.echo(f"  tasks done        {done}/{params or tasks}")
    click.echo(f"  jobs run          {attempts} (resubmissions: {resubmitted})")
    click.echo("  per cluster       " + ", ".join(
        f"{name}: {per_cluster.get(name, 0)}" for name in sorted(names.values())))
    if codes:
        click.echo("  events            " + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items())))
    click.echo(f"  wall time         {elapsed:.1f}s")
