"""Harvest benchmark: how much of an emulated grid cigri keeps busy, and at what cost.

Three emulated clusters of 1,000 cores each (simulate mode, over HTTP), one best-effort campaign of
100,000 tasks of 60 s on average (uniform 45-75 s: with equal durations jobs end in waves and the
normal user finds free cores without preempting anyone), a normal user who takes 200 cores of the
first cluster for 2 minutes every 10 minutes (preemption), on a fresh PostgreSQL database. Emulated
time and cigri's clock move together in steps of `--step` seconds; each step runs one pass of the
meta-scheduler, of each cluster's runner and of the updater (a discrete-event co-simulation, so the
result does not depend on how loaded this machine is).

Prints the harvest efficiency (ideal makespan = (useful work + the normal user's core-seconds) ÷
cores, over the makespan from submission to the campaign `terminated`; goal ≥ 0.9), the CPU seconds
cigri spent per 10,000 tasks (the thread running the daemons; the emulator runs in other threads),
and the OAR requests per runner cycle and per updater cycle per cluster (one per chunk of
`api_chunk_size` polled jobs whatever the number of jobs, plus one stress read every 10 s). Ends
with one key=value line.

    PGHOST=127.0.0.1 PGUSER=postgres python bench/harvest.py [--tasks 100000 --cores 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import threading
import time
import uuid
from datetime import timedelta

from _grid import CountingClients, fresh_database
from sqlalchemy import Engine, func, select

from cigri.config import build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.metascheduler import MetaScheduler
from cigri.daemons.runner import ClusterRunner
from cigri.daemons.updater import Updater
from cigri.domain.clock import FakeClock
from cigri.emulator import ManualClock, Workload, run_in_thread
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import campaigns, jobs

NODE_CORES = 8
NORMAL_USER_CORES = 200
JOB_SECONDS = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--cores", type=int, default=1000, help="cores per cluster")
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--step", type=float, default=10.0, help="emulated seconds per step")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with fresh_database(f"cigri_harvest_{uuid.uuid4().hex[:6]}") as engine:
        result = _bench(engine, args.tasks, args.cores, args.clusters, args.step)
    print(" ".join(f"{key}={value}" for key, value in result.items()))


def _bench(engine: Engine, nb_tasks: int, cores: int, nb_clusters: int,
           step: float) -> dict[str, object]:
    emu_clock = ManualClock()
    emulator = run_in_thread(allow_root_jobs=True, clusters=nb_clusters, nodes=math.ceil(cores / NODE_CORES),
                             cores=NODE_CORES, mode="simulate", clock=emu_clock,
                             workload=Workload(duration=f"uniform:{JOB_SECONDS - 15}:"
                                                        f"{JOB_SECONDS + 15}"))
    clock = FakeClock()
    stop = threading.Event()
    # The tap may grow to what a 1,000-core cluster needs per step; v3's cap of 100 jobs per
    # submission would starve it (1,000 cores / 60 s = 167 jobs per 10 s).
    settings = build_settings({
        "STRESS_FACTOR": 1000, "RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS": 50,
        "RUNNER_TAP_INCREASE_FACTOR": 2, "RUNNER_TAP_INCREASE_MAX": 1000,
        "RUNNER_TAP_GRACE_PERIOD": 60, "GRID_USAGE_UPDATE_PERIOD": 0,
        "REMOTE_WAITING_TIMEOUT": 100_000})
    runner_clients = CountingClients(timeout_seconds=60.0)
    updater_clients = CountingClients(timeout_seconds=60.0)
    try:
        with engine.begin() as conn:
            clusters = [add_cluster(conn, name=f"h{i + 1}", api_url=u, api_chunk_size=500,
                                    api_limit=500, now=clock.now())
                        for i, u in enumerate(emulator.urls)]
            props = {"exec_file": "run", "type": "best-effort", "walltime": "00:10:00",
                     "resources": "/resource_id=1"}
            campaign = create_campaign(conn, grid_user="testuser", name="harvest",
                                       jobs_type="normal", jdl={},
                                       properties={c.id: props for c in clusters},
                                       params=(f"t{i}" for i in range(nb_tasks)), now=clock.now())
        emulator.controls[0].normal_user(NORMAL_USER_CORES, 120, start_in=300, period=600)
        zero = timedelta(0)
        scheduler = MetaScheduler(engine=engine, settings=settings, clock=clock, stop=stop,
                                  interval=zero, owner="bench")
        context = DaemonContext(settings=settings, engine=engine, clock=clock, stop=stop,
                                oar_factory=runner_clients)
        runners = [ClusterRunner(context, cluster=c, interval=zero, owner="bench")
                   for c in clusters]
        updater = Updater(dataclasses.replace(context, oar_factory=updater_clients),
                          interval=zero, owner="bench")
        cpu_start = time.thread_time()
        wall_start = time.monotonic()
        steps = 0
        polled_chunks = 0
        state = ""
        while state != "terminated" and steps < 100_000:
            scheduler.run(loops=1)
            for runner in runners:
                runner.run(loops=1)
            updater.run(loops=1)
            with engine.begin() as conn:
                polled = dict(conn.execute(select(jobs.c.cluster_id, func.count()).where(
                    jobs.c.state.in_(("submitted", "remote_waiting", "running")))
                    .group_by(jobs.c.cluster_id)).all())
                state = conn.execute(select(campaigns.c.state)
                                     .where(campaigns.c.id == campaign)).scalar_one()
            polled_chunks += sum(math.ceil(n / 500) for n in polled.values())
            emu_clock.advance(step)
            for control in emulator.controls:
                control.cluster.pump()
            clock.advance(timedelta(seconds=step))
            steps += 1
            if steps % 50 == 0:
                logging.getLogger("harvest").error("step %d, %.0f s real", steps,
                                                   time.monotonic() - wall_start)
        cpu = time.thread_time() - cpu_start
        # the normal user's core-seconds are not cigri's to harvest: the ideal grid runs the
        # campaign on what is left
        horizon = emu_clock.time()
        taken = sum(NORMAL_USER_CORES * (min(job["stop_time"] or horizon, horizon)
                                         - job["start_time"])
                    for job in emulator.controls[0].jobs()
                    if job["name"] == "normal_user" and job["start_time"])
        wall = time.monotonic() - wall_start
        with engine.begin() as conn:
            nb_jobs = conn.execute(select(func.count()).select_from(jobs)).scalar_one()
            work = conn.execute(select(func.sum(
                func.extract("epoch", jobs.c.stop_time - jobs.c.start_time))).where(
                jobs.c.state == "terminated")).scalar_one()
    finally:
        emulator.stop()
    makespan = steps * step
    # the useful work done, on every core the normal user left free
    ideal = (float(work or 0) + taken) / (cores * nb_clusters)
    runner_requests = runner_clients.requests
    updater_requests = updater_clients.requests
    passes = steps * nb_clusters
    return {
        "state": state, "tasks": nb_tasks, "cigri_jobs": nb_jobs,
        "preempted": nb_jobs - nb_tasks, "normal_user_core_s": round(taken), "steps": steps,
        "ideal_makespan_s": round(ideal), "makespan_s": round(makespan),
        "harvest_efficiency": round(ideal / makespan, 3),
        "cpu_s_per_10k_tasks": round(cpu * 10_000 / nb_tasks, 2), "wall_s": round(wall),
        "runner_requests_per_cycle_per_cluster": round(runner_requests / passes, 2),
        "updater_requests_per_cycle_per_cluster": round(updater_requests / passes, 2),
        "polled_chunks_per_cycle_per_cluster": round(polled_chunks / passes, 2),
    }


if __name__ == "__main__":
    main()
