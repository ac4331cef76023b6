"""Harvest benchmark: how much of an emulated grid each injection policy keeps busy, side by side.

Emulated clusters (simulate mode, over HTTP; 3 x 1,000 cores by default), one best-effort campaign
of `--tasks-per-core` tasks per core, for each task-duration scenario (`--durations`: 10 s, 60 s and
600 s, each +/-25 % uniform, and `mix`, heavy-tailed: log-normal, median 30 s, capped at 10 min),
a normal user who takes a fifth of the first cluster for 2 minutes every 10 minutes (preemption),
on a fresh PostgreSQL database per run. Emulated time and cigri's clock move together in steps of
`--step` seconds; each step runs one pass of the updater, of the meta-scheduler and of each
cluster's runner, in that order (the updater wakes the runners as deployed; a runner whose flow
grew wakes the meta-scheduler, which wakes the runners: then those two run again at the same
instant, as deployed), and a grid-usage
sample every GRID_USAGE_UPDATE_PERIOD (60 s) as almighty's maintenance does (a discrete-event
co-simulation: the result does not depend on how loaded this machine is).
Every setting is at its default except the injection policy, the daemons' intervals (= the step)
and STRESS_FACTOR (`--set KEY=VALUE` changes others). `--launch-delay S` makes the emulated OAR
spend S seconds launching each job (OAR's start cost; 0 by default: the emulator starts a job the
instant a core is free), and `--grouping auto` gives the campaign `temporal_grouping: auto`.

For each policy (`--policies`, `tap` first as the baseline) and scenario it prints the harvest
efficiency (ideal makespan = (useful work + the normal user's core-seconds) / cores, over the
makespan from submission to the campaign `terminated`; it counts the campaign's tail and the work
preempted jobs lost), the fill efficiency (1 - the cores found idle at step ends while cigri still
had tasks it had not given OAR, over all cores at those instants: the policy's own loss), the
peak and mean number of cigri jobs waiting on OAR per cluster (as each updater pass sees it), the
OAR requests per runner pass and per updater pass per cluster, and the CPU seconds cigri spent
per 10,000 tasks; then one key=value line per run.

    PGHOST=127.0.0.1 PGUSER=postgres python bench/harvest.py [--cores 1000 --tasks-per-core 8
        --durations 10,60,600,mix --policies tap,capacity,pi --step 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from _grid import CountingClients, fresh_database
from sqlalchemy import Engine, func, select

from cigri.config import build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.cluster_runner import ClusterRunner
from cigri.daemons.maintenance import sample_grid_usage
from cigri.daemons.metascheduler import MetaScheduler
from cigri.daemons.updater import Updater
from cigri.domain.clock import FakeClock
from cigri.emulator import ManualClock, run_in_thread
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import bag_of_tasks, campaigns, jobs, taps

NODE_CORES = 8
NORMAL_USER_SHARE = 0.2  # of the first cluster's cores, 2 minutes every 10 minutes
USAGE_PERIOD = 60  # GRID_USAGE_UPDATE_PERIOD's default
WAITING = ("launching", "submitted", "remote_waiting")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=1000, help="cores per cluster")
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--tasks-per-core", type=float, default=8.0)
    parser.add_argument("--durations", default="10,60,600,mix",
                        help="task durations in seconds (+/-25 %%), or mix (heavy-tailed)")
    parser.add_argument("--policies", default="tap,capacity,pi")
    parser.add_argument("--step", type=float, default=5.0, help="emulated seconds per step "
                        "(the runner's interval; the updater's and meta-scheduler's too)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grouping", default="false",
                        help="the campaign's temporal_grouping: false, auto or true")
    parser.add_argument("--launch-delay", type=float, default=0.0,
                        help="emulated seconds OAR takes to start a job (its start cost)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a cigri setting for every run (repeatable)")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    logging.basicConfig(level=logging.ERROR)
    nb_tasks = round(args.tasks_per_core * args.cores * args.clusters)
    rows = []
    for duration in args.durations.split(","):
        for policy in args.policies.split(","):
            with fresh_database(f"cigri_harvest_{uuid.uuid4().hex[:6]}") as engine:
                result = _bench(engine, policy=policy, duration=duration, nb_tasks=nb_tasks,
                                cores=args.cores, nb_clusters=args.clusters, step=args.step,
                                seed=args.seed, overrides=overrides, grouping=args.grouping,
                                launch_delay=args.launch_delay)
            rows.append(result)
            print(" ".join(f"{key}={value}" for key, value in result.items()), flush=True)
    print()
    print(f"{args.clusters} x {args.cores} cores, {nb_tasks} tasks, step {args.step} s, "
          f"OAR start cost {args.launch_delay} s")
    header = ("durations", "policy", "grouping", "oar_jobs", "efficiency", "fill", "peak_wait", "mean_wait",
              "runner_req/pass", "updater_req/pass", "makespan_s", "cpu_s/10k")
    print(" ".join(f"{h:>16}" for h in header))
    for r in rows:
        print(" ".join(f"{v!s:>16}" for v in (
            r["durations"], r["policy"], r["grouping"], r["oar_jobs"], r["harvest_efficiency"],
            r["fill_efficiency"], r["peak_waiting"],
            r["mean_waiting"], r["runner_requests_per_pass"], r["updater_requests_per_pass"],
            r["makespan_s"], r["cpu_s_per_10k_tasks"])))


def _params(duration: str, nb_tasks: int, seed: int) -> list[str]:
    """One `sleep N` per task (the emulator runs a task for the N its command says)."""
    rng = random.Random(seed)
    if duration == "mix":
        seconds = [min(600.0, rng.lognormvariate(math.log(30), 1.2)) for _ in range(nb_tasks)]
    else:
        mean = float(duration)
        seconds = [rng.uniform(0.75 * mean, 1.25 * mean) for _ in range(nb_tasks)]
    return [f"t{i} sleep {s:.1f}" for i, s in enumerate(seconds)]


def _tap_rates(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(taps.c.rate), 0))).scalar_one())


def _bench(engine: Engine, *, policy: str, duration: str, nb_tasks: int, cores: int,
           nb_clusters: int, step: float, seed: int,
           overrides: dict[str, str], grouping: str = "false",
           launch_delay: float = 0.0) -> dict[str, object]:
    emu_clock = ManualClock()
    emulator = run_in_thread(allow_root_jobs=True, clusters=nb_clusters, nodes=math.ceil(cores / NODE_CORES),
                             cores=NODE_CORES, mode="simulate", clock=emu_clock,
                             launch_delay=launch_delay)
    # cigri's clock and OAR's agree, as on a real site (start latency is measured across them)
    clock = FakeClock(datetime.fromtimestamp(emu_clock.time(), UTC))
    stop = threading.Event()
    settings = build_settings({
        "STRESS_FACTOR": 1000, "RUNNER_INJECTION_POLICY": policy,
        "RUNNER_MIN_CYCLE_DURATION": step, "UPDATER_INTERVAL": step,
        "UPDATER_WAITING_INTERVAL": step,
        "METASCHEDULER_INTERVAL": step, "GRID_USAGE_UPDATE_PERIOD": USAGE_PERIOD,
        "REMOTE_WAITING_TIMEOUT": 100_000, **overrides})
    runner_clients = CountingClients(timeout_seconds=60.0)
    updater_clients = CountingClients(timeout_seconds=60.0)
    usage_clients = CountingClients(timeout_seconds=60.0)
    normal_cores = round(NORMAL_USER_SHARE * cores)
    try:
        with engine.begin() as conn:
            clusters = [add_cluster(conn, name=f"h{i + 1}", api_url=u, api_chunk_size=500,
                                    api_limit=500, now=clock.now())
                        for i, u in enumerate(emulator.urls)]
            props = {"exec_file": "run", "type": "best-effort", "walltime": "01:00:00",
                     "resources": "/resource_id=1", "temporal_grouping": grouping}
            campaign = create_campaign(conn, grid_user="testuser", name="harvest",
                                       jobs_type="normal", jdl={},
                                       properties={c.id: props for c in clusters},
                                       params=_params(duration, nb_tasks, seed), now=clock.now())
        emulator.controls[0].normal_user(normal_cores, 120, start_in=300, period=600)
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
        state = ""
        waiting_samples: list[int] = []
        idle_while_pending = 0
        pending_samples = 0
        sampled_at = -math.inf
        while state != "terminated" and steps < 100_000:
            if steps * step - sampled_at >= USAGE_PERIOD:  # almighty's maintenance
                sample_grid_usage(engine, usage_clients, now=clock.now(),
                                  period_seconds=USAGE_PERIOD, force=True)
                sampled_at = steps * step
            # the updater first: as deployed, the pass that sees jobs start or end wakes the
            # runners at once (NOTIFY), so they act on what it saw
            updater.run(loops=1)
            with engine.begin() as conn:  # what waits on OAR now (the updater just polled it)
                waiting = dict(conn.execute(select(jobs.c.cluster_id, func.count()).where(
                    jobs.c.state.in_(WAITING)).group_by(jobs.c.cluster_id)).all())
            waiting_samples += [waiting.get(c.id, 0) for c in clusters]
            scheduler.run(loops=1)
            rates = _tap_rates(engine)
            for runner in runners:
                runner.run(loops=1)
            if _tap_rates(engine) > rates:
                # as deployed: a runner whose flow grew wakes the meta-scheduler (NOTIFY), which
                # queues more and wakes the runners, within the same instant
                scheduler.run(loops=1)
                for runner in runners:
                    runner.run(loops=1)
            with engine.begin() as conn:
                state = conn.execute(select(campaigns.c.state)
                                     .where(campaigns.c.id == campaign)).scalar_one()
            emu_clock.advance(step)
            for control in emulator.controls:
                control.cluster.pump()
            with engine.begin() as conn:  # cigri still has tasks it has not given OAR
                pending = conn.execute(select(bag_of_tasks.c.id).where(
                    bag_of_tasks.c.campaign_id == campaign).limit(1)).first() is not None
            if pending:  # idle cores while cigri had work for them: the policy's loss
                idle_while_pending += sum(len(c.cluster.free) for c in emulator.controls)
                pending_samples += 1
            clock.advance(timedelta(seconds=step))
            steps += 1
            if steps % 100 == 0:
                logging.getLogger("harvest").error("%s %s: step %d, %.0f s real", policy,
                                                   duration, steps, time.monotonic() - wall_start)
        cpu = time.thread_time() - cpu_start
        # the normal user's core-seconds are not cigri's to harvest: the ideal grid runs the
        # campaign on what is left
        horizon = emu_clock.time()
        taken = sum(normal_cores * (min(job["stop_time"] or horizon, horizon)
                                    - job["start_time"])
                    for job in emulator.controls[0].jobs()
                    if job["name"] == "normal_user" and job["start_time"])
        wall = time.monotonic() - wall_start
        with engine.begin() as conn:
            nb_jobs = conn.execute(select(func.count()).select_from(jobs)).scalar_one()
            oar_jobs = conn.execute(select(func.count()).select_from(  # OAR ids are per cluster
                select(jobs.c.cluster_id, jobs.c.remote_id).distinct().subquery())).scalar_one()
            work = conn.execute(select(func.sum(
                func.extract("epoch", jobs.c.stop_time - jobs.c.start_time))).where(
                jobs.c.state == "terminated")).scalar_one()
    finally:
        emulator.stop()
    makespan = steps * step
    ideal = (float(work or 0) + taken) / (cores * nb_clusters)
    passes = steps * nb_clusters
    return {
        "policy": policy, "durations": duration, "state": state, "tasks": nb_tasks,
        "grouping": grouping, "launch_delay_s": launch_delay,
        "cigri_jobs": nb_jobs, "oar_jobs": oar_jobs, "preempted": nb_jobs - nb_tasks,
        "normal_user_core_s": round(taken), "steps": steps,
        "ideal_makespan_s": round(ideal), "makespan_s": round(makespan),
        "harvest_efficiency": round(ideal / makespan, 3),
        "fill_efficiency": round(1 - idle_while_pending / max(1, pending_samples * cores
                                                                  * nb_clusters), 3),
        "peak_waiting": max(waiting_samples, default=0),
        "mean_waiting": round(sum(waiting_samples) / max(1, len(waiting_samples)), 1),
        "runner_requests_per_pass": round(runner_clients.requests / passes, 2),
        "updater_requests_per_pass": round(updater_clients.requests / passes, 2),
        "usage_requests": usage_clients.requests,
        "cpu_s_per_10k_tasks": round(cpu * 10_000 / nb_tasks, 2), "wall_s": round(wall),
    }


if __name__ == "__main__":
    main()
