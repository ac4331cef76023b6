"""Benchmark on the real OAR clusters: 100 best-effort `sleep 2` jobs spread over the clusters of
`CIGRI_TEST_OAR_URLS` (default: the three local OAR 2.5.9 clusters), every engine daemon running in
a thread of this process on a fresh PostgreSQL database. `--emulator` runs the same workload on the
OAR emulator in execute mode instead (3 clusters x 4 nodes x 2 cores, real `sleep 2` processes, a
separate process so that its CPU is not counted), for a machine without the real clusters.

Prints the makespan from campaign submission to the last job `terminated` (and to the campaign
`terminated`), the CPU seconds the daemons used (process CPU minus this script's main thread), and
the OAR API requests cigri sent (client counters). Goal: makespan < 25 s, < 2 s of daemon CPU,
about 90 requests or fewer (Ruby v3: 110 s, 19 s CPU, ~90 requests). Ends with one key=value line.

    PGHOST=127.0.0.1 PGUSER=postgres python bench/real_oar.py [--jobs 100] [--emulator]
        [--temporal-grouping] [--runs 3] [--profile DIR]

`--deployed` runs cigri as a site deploys it instead (`cigri-almighty` as a process, default
settings) and, in the same run, the raw limit: the same jobs posted straight to OAR, one array per
cluster; it prints both makespans and their ratio, the daemons' CPU and cigri's OAR requests
(`bench/_deployed.py`). Goal (issue 15): ratio <= 1.05, CPU <= 1 s, requests <= 90.

`--idle SECONDS` starts the daemons on an empty grid instead (no campaign) and prints each
daemon's CPU per pass: what an idle engine costs. `--profile DIR` writes one cProfile file per
thread (`DIR/<thread>.prof`, in thread CPU seconds; read them with `python -m pstats`).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from _deployed import deployed
from _grid import CountingClients, fresh_database
from sqlalchemy import Engine, func, select

from cigri.config import Settings, build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.metascheduler import build as build_metascheduler
from cigri.daemons.nikita import Nikita
from cigri.daemons.runner import RunnerProcess
from cigri.daemons.updater import Updater
from cigri.domain.clock import SystemClock
from cigri.oar.http import RetryPolicy
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import campaigns, jobs

DEFAULT_URLS = ("http://127.0.0.1:6668/oarapi/,http://127.0.0.1:6678/oarapi/,"
                "http://127.0.0.1:6688/oarapi/")


EMULATOR_SHAPE = ("3", "4", "2")  # clusters, nodes, cores: 8 cores per cluster, as the real ones


@contextmanager
def _emulated_grid(launch_delay: float) -> Iterator[tuple[list[str], str]]:
    """The OAR emulator in execute mode in its own process (its CPU is not the daemons'); yields
    the cluster URLs and the campaign's exec_directory (the emulated home of `testuser`)."""
    with tempfile.TemporaryDirectory(prefix="cigri-bench-") as workdir:
        home = os.path.join(workdir, "home", "testuser")
        os.makedirs(home)
        clusters, nodes, cores = EMULATOR_SHAPE
        process = subprocess.Popen(
            [sys.executable, "-m", "cigri.emulator", "--clusters", clusters, "--nodes", nodes,
             "--cores", cores, "--mode", "execute", "--port", "0", "--workdir", workdir,
             "--launch-delay", str(launch_delay), "--log-level", "error"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            urls = [process.stdout.readline().strip() for _ in range(int(clusters))]
            if not all(url.startswith("http") for url in urls):
                raise RuntimeError(f"the emulator did not start: {urls}")
            yield urls, home
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextmanager
def _real_grid() -> Iterator[tuple[list[str], str]]:
    urls = [u.strip() for u in os.environ.get("CIGRI_TEST_OAR_URLS", DEFAULT_URLS).split(",")
            if u.strip()]
    yield urls, "/home/testuser"


_profiles: dict[str, cProfile.Profile] = {}


def _profile_threads(directory: str) -> None:
    """Wrap every thread started from now on in its own cProfile (one file per thread name)."""
    os.makedirs(directory, exist_ok=True)
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)  # CPU, not waits
        try:
            profile.runcall(original, self)
        finally:
            profile.dump_stats(os.path.join(directory, self.name.replace(":", "_") + ".prof"))

    threading.Thread.run = run  # type: ignore[method-assign]


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread, by daemon (`runner:x` and `x-listen` go to their daemon),
    read from /proc (clock ticks), so the main thread can sample the others at any time."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        daemon = thread.name.removesuffix("-listen").split(":")[0]
        cpu[daemon] = cpu.get(daemon, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--temporal-grouping", action="store_true",
                        help="group the tasks into batch jobs (one per core), v3's temporal grouping")
    parser.add_argument("--cores", type=int, default=8, help="cores per cluster (for grouping)")
    parser.add_argument("--emulator", action="store_true",
                        help="run on the OAR emulator (execute mode, 3 x 4 nodes x 2 cores)")
    parser.add_argument("--launch-delay", type=float, default=1.0,
                        help="emulator: seconds a job stays Launching (the real OAR takes 1-3 s)")
    parser.add_argument("--runs", type=int, default=1, help="repeat, then print the medians")
    parser.add_argument("--idle", type=float, default=0.0, metavar="SECONDS",
                        help="no campaign: run the daemons this long on an idle grid and print "
                             "each daemon's CPU per pass")
    parser.add_argument("--profile", metavar="DIR", help="one cProfile file per thread in DIR")
    parser.add_argument("--deployed", action="store_true",
                        help="cigri as deployed (cigri-almighty process, default settings) and, "
                             "in the same run, the raw limit (the jobs posted straight to OAR, "
                             "one array per cluster): makespans, their ratio, CPU, requests")
    parser.add_argument("--grouping", choices=("false", "true", "auto"), default="false",
                        help="--deployed: the campaign's temporal_grouping (auto: issue 15's "
                             "automatic grouping)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.profile:
        _profile_threads(args.profile)
    results = []
    for _ in range(args.runs):
        grid = _emulated_grid(args.launch_delay) if args.emulator else _real_grid()
        with grid as (urls, directory):
            if args.deployed:
                results.append(deployed(urls, args.jobs, directory, grouping=args.grouping))
            else:
                results.append(_run(args, urls, directory))
        print(" ".join(f"{key}={value}" for key, value in results[-1].items()), flush=True)
    if args.runs > 1:
        medians = {key: statistics.median(float(r[key]) for r in results)  # type: ignore[arg-type]
                   for key, value in results[0].items() if isinstance(value, (int, float))}
        print("median " + " ".join(f"{key}={round(value, 3)}" for key, value in medians.items()))


def _run(args: argparse.Namespace, urls: list[str], directory: str) -> dict[str, object]:
    run = uuid.uuid4().hex[:6]
    with fresh_database(f"cigri_bench_{run}") as engine:
        cores = int(EMULATOR_SHAPE[1]) * int(EMULATOR_SHAPE[2]) if args.emulator else args.cores
        group = -(-args.jobs // (cores * len(urls))) if args.temporal_grouping else 0
        if args.idle:
            result = _idle(engine, urls, args.idle)
        else:
            result = _bench(engine, urls, run, args.jobs, args.deadline, group, directory)
        result["grid"] = "emulator" if args.emulator else "oar"
    return result


def _settings(nb_jobs: int, nb_clusters: int, group: int) -> Settings:
    initial = -(-nb_jobs // nb_clusters)  # one array job per cluster
    return build_settings({
        "STRESS_FACTOR": 1000, "RUNNER_MIN_CYCLE_DURATION": 1, "UPDATER_INTERVAL": 2,
        "METASCHEDULER_INTERVAL": 1, "NIKITA_INTERVAL": 10,
        "RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS": initial, "GRID_USAGE_UPDATE_PERIOD": 0,
        # with grouping, each runner pass submits one batch job of `group` tasks
        "RUNNER_MAX_TEMPORAL_GROUPED_JOBS": group or 50})


class _Daemons:
    """Every engine daemon in a thread of this process, as almighty would run them."""

    def __init__(self, engine: Engine, urls: list[str], settings: Settings) -> None:
        self.clock = SystemClock()
        with engine.begin() as conn:
            self.cluster_ids = [add_cluster(conn, name=f"bench{i + 1}", api_url=u,
                                            now=self.clock.now()).id
                                for i, u in enumerate(urls)]
        self.stop = threading.Event()
        self.clients = CountingClients(timeout_seconds=30.0,
                                       retry=RetryPolicy(attempts=4, backoff_seconds=0.3))
        context = DaemonContext(settings=settings, engine=engine, clock=self.clock,
                                stop=self.stop, oar_factory=self.clients)
        self.metascheduler = build_metascheduler(context)
        self.runner = RunnerProcess(context, discovery_interval=timedelta(seconds=1))
        self.updater = Updater(context)
        self.nikita = Nikita(context)
        loops: list[tuple[str, Callable[[], None]]] = [
            ("metascheduler", self.metascheduler.run), ("runner", self.runner.run),
            ("updater", self.updater.run), ("nikita", self.nikita.run)]
        self.threads = [threading.Thread(target=loop, name=name, daemon=True)
                        for name, loop in loops]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def passes(self) -> dict[str, int]:
        return {"metascheduler": self.metascheduler.passes, "updater": self.updater.passes,
                "nikita": self.nikita.passes,
                "runner": sum(runner.passes for runner, _t, _s in self.runner.runners.values())}

    def halt(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def _idle(engine: Engine, urls: list[str], seconds: float) -> dict[str, object]:
    """The daemons on a grid with nothing to do: CPU per pass of each, after a warm-up."""
    daemons = _Daemons(engine, urls, _settings(100, len(urls), 0))
    daemons.start()
    time.sleep(5.0)  # imports, first connections, statement compilation, cluster discovery
    cpu_before, passes_before = _thread_cpu(), daemons.passes()
    time.sleep(seconds)
    cpu_after, passes_after = _thread_cpu(), daemons.passes()
    daemons.halt()
    result: dict[str, object] = {"idle_s": seconds, "oar_requests": daemons.clients.requests}
    for name, passes in passes_after.items():
        done = passes - passes_before[name]
        used = cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0)
        result[f"{name}_passes"] = done
        result[f"{name}_ms_per_pass"] = round(1000 * used / max(1, done), 2)
    result["idle_cpu_s"] = round(sum(cpu_after.values()) - sum(cpu_before.values()), 2)
    return result


def _bench(engine: Engine, urls: list[str], run: str, nb_jobs: int,
           deadline: float, group: int, directory: str) -> dict[str, object]:
    daemons = _Daemons(engine, urls, _settings(nb_jobs, len(urls), group))
    clock = daemons.clock
    cpu_before = time.process_time()
    main_before = time.thread_time()
    daemons.start()
    with engine.begin() as conn:
        props = {"exec_file": "sleep 2; true", "type": "best-effort", "walltime": "00:05:00",
                 "resources": "/resource_id=1", "exec_directory": directory}
        if group:
            props["temporal_grouping"] = "true"
        campaign = create_campaign(conn, grid_user="testuser", name=f"bench-{run}",
                                   jobs_type="normal", jdl={},
                                   properties={cluster: props for cluster in daemons.cluster_ids},
                                   params=(f"b{run}x{i}" for i in range(nb_jobs)), now=clock.now())
    started = time.monotonic()
    state = ""
    while time.monotonic() - started < deadline:
        with engine.begin() as conn:
            state = conn.execute(select(campaigns.c.state).where(campaigns.c.id == campaign)
                                 ).scalar_one()
        if state == "terminated":
            break
        time.sleep(0.2)
    to_campaign_end = time.monotonic() - started
    by_daemon = _thread_cpu()
    daemons.halt()
    daemon_cpu = (time.process_time() - cpu_before) - (time.thread_time() - main_before)
    with engine.begin() as conn:
        row = conn.execute(select(campaigns.c.submission_time, func.max(jobs.c.stop_time),
                                  func.count(jobs.c.id))
                           .join(jobs, jobs.c.campaign_id == campaigns.c.id)
                           .where(campaigns.c.id == campaign)
                           .group_by(campaigns.c.submission_time)).one()
        done = conn.execute(select(func.count()).where(
            jobs.c.campaign_id == campaign, jobs.c.state == "terminated")).scalar_one()
        last_submit, first_start = conn.execute(
            select(func.max(jobs.c.submission_time), func.min(jobs.c.start_time))
            .where(jobs.c.campaign_id == campaign)).one()
    makespan = (row[1] - row[0]).total_seconds() if row[1] is not None else float("nan")
    result: dict[str, object] = {
        "state": state, "jobs": nb_jobs, "terminated": done, "cigri_jobs": row[2],
        "makespan_s": round(makespan, 1), "to_campaign_terminated_s": round(to_campaign_end, 1),
        "last_submission_s": round((last_submit - row[0]).total_seconds(), 1),
        "first_start_s": round((first_start - row[0]).total_seconds(), 1),
        "daemon_cpu_s": round(daemon_cpu, 2), "oar_requests": daemons.clients.requests,
        "batch_size": group, "load_average": round(os.getloadavg()[0], 1)}
    for name, used in sorted(by_daemon.items()):
        if name in {"metascheduler", "runner", "updater", "nikita"}:
            result[f"{name}_cpu_s"] = round(used, 2)
    return result


if __name__ == "__main__":
    main()
