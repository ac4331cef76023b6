"""Chaos: a 2,000-task best-effort campaign on three emulated clusters with preemption, on
PostgreSQL, every daemon a separate process, while a loop kills a random daemon with SIGKILL every
few seconds and a supervisor restarts it. At the end every parameter has exactly one `terminated`
job, every OAR job the emulator ran is known to cigri, and no OAR job ran the same parameter to
completion twice.

The supervisor is the test's own loop (restart what died), so the test does not depend on
`cigri-almighty`; the daemons are started exactly as almighty would, by their console entry points.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cigri.domain.clock import SystemClock
from cigri.emulator import Workload, run_in_thread
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.db import make_engine
from cigri.storage.tables import campaigns, events, jobs, parameters, submissions

TASKS = 2000
DAEMONS = {
    "metascheduler": "cigri.daemons.metascheduler",
    "runner": "cigri.daemons.runner",
    "updater": "cigri.daemons.updater",
    "nikita": "cigri.daemons.nikita",
}
DEADLINE_SECONDS = 240.0
KILL_EVERY_SECONDS = (0.7, 2.0)


def _start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-c", f"from {module} import main; main()"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigkill_chaos_loses_nothing_and_duplicates_nothing(pg_url: str, tmp_path: Path) -> None:
    emulator = run_in_thread(allow_root_jobs=True,
                             clusters=3, nodes=5, cores=8, mode="simulate", time_scale=20.0,
                             workload=Workload(duration="uniform:4:12"), workdir=str(tmp_path))
    engine = make_engine(pg_url)
    clock = SystemClock()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    kills: Counter[str] = Counter()
    try:
        with engine.begin() as conn:
            ids = [add_cluster(conn, name=f"c{i + 1}", api_url=url, now=clock.now()).id
                   for i, url in enumerate(emulator.urls)]
            props = {"exec_file": "run", "type": "best-effort", "resources": "/resource_id=1",
                     "walltime": "00:10:00"}
            campaign = create_campaign(
                conn, grid_user="testuser", name="chaos", jobs_type="normal", jdl={},
                properties={cluster: props for cluster in ids},
                params=(f"p{i}" for i in range(TASKS)), now=clock.now())
        for control in emulator.controls:  # a normal user takes half the nodes now and then
            control.normal_user(20, 30, start_in=20, period=60)
        env = {**os.environ, "CIGRI_DATABASE_URL": pg_url, "CIGRI_LOG_LEVEL": "WARNING",
               "CIGRI_RUNNER_MIN_CYCLE_DURATION": "0.3", "CIGRI_UPDATER_INTERVAL": "0.3",
               "CIGRI_METASCHEDULER_INTERVAL": "0.3", "CIGRI_NIKITA_INTERVAL": "1",
               "CIGRI_LEASE_SECONDS": "1.5", "CIGRI_RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS": "10",
               "CIGRI_RUNNER_TAP_INCREASE_FACTOR": "2", "CIGRI_STRESS_FACTOR": "1000",
               "CIGRI_GRID_USAGE_UPDATE_PERIOD": "0"}
        logs = tmp_path / "daemons.log"
        for name, module in DAEMONS.items():
            processes[name] = _start(module, env, logs)
        rng = random.Random(4)
        started = time.monotonic()
        next_kill = started + rng.uniform(*KILL_EVERY_SECONDS)
        finished = False
        while time.monotonic() - started < DEADLINE_SECONDS:
            for name, process in processes.items():  # the supervisor
                if process.poll() is not None:
                    processes[name] = _start(DAEMONS[name], env, logs)
            if time.monotonic() >= next_kill:
                victim = rng.choice(sorted(processes))
                processes[victim].send_signal(signal.SIGKILL)
                processes[victim].wait()
                kills[victim] += 1
                next_kill = time.monotonic() + rng.uniform(*KILL_EVERY_SECONDS)
            with engine.begin() as conn:
                state = conn.execute(select(campaigns.c.state)
                                     .where(campaigns.c.id == campaign)).scalar_one()
            if state == "terminated":
                finished = True
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        emulator.stop()

    with engine.begin() as conn:
        by_state = dict(conn.execute(select(jobs.c.state, func.count()).where(
            jobs.c.campaign_id == campaign).group_by(jobs.c.state)).all())
        terminated = Counter(conn.execute(select(jobs.c.param_id).where(
            jobs.c.campaign_id == campaign, jobs.c.state == "terminated")).scalars())
        nb_params = conn.execute(select(func.count()).select_from(parameters).where(
            parameters.c.campaign_id == campaign)).scalar_one()
        codes = dict(conn.execute(select(events.c.code, func.count()).where(
            events.c.campaign_id == campaign).group_by(events.c.code)).all())
        settled = dict(conn.execute(select(submissions.c.state, func.count())
                                    .group_by(submissions.c.state)).all())
        known = {(row.cluster_id, row.remote_id) for row in conn.execute(
            select(jobs.c.cluster_id, jobs.c.remote_id).where(jobs.c.remote_id.is_not(None)))}
    engine.dispose()
    ran: list[tuple[int, dict]] = [(cluster_id, job) for cluster_id, control in zip(
        ids, emulator.controls, strict=True) for job in control.jobs()
        if job.get("owner") == "testuser"]
    completed = Counter(job["command"] for _cluster, job in ran
                        if job["state"] == "Terminated" and job.get("exit_code") in (0, None))
    unknown = [(cluster, job["id"]) for cluster, job in ran if (cluster, job["id"]) not in known]
    print(f"\nchaos: finished={finished} in {elapsed:.0f}s, kills survived={sum(kills.values())} "
          f"({dict(kills)}), cigri jobs by state={by_state}, OAR jobs run={len(ran)}, "
          f"parameters={nb_params}, terminated parameters={len(terminated)}, "
          f"unknown OAR jobs={len(unknown)}, "
          f"parameters completed twice on OAR={sum(1 for n in completed.values() if n > 1)}, "
          f"events={codes}, submissions={settled}")
    assert finished, f"campaign not terminated after {DEADLINE_SECONDS}s: {by_state}"
    assert sum(kills.values()) >= 5
    assert nb_params == TASKS and len(terminated) == TASKS
    assert set(terminated.values()) == {1}
    assert unknown == []
    assert all(count == 1 for count in completed.values())
