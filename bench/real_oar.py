"""Benchmark on the real OAR clusters: 100 best-effort `sleep 2` jobs spread over the clusters of
`CIGRI_TEST_OAR_URLS` (default: the three local OAR 2.5.9 clusters), every engine daemon running in
a thread of this process on a fresh PostgreSQL database.

Prints the makespan from campaign submission to the last job `terminated` (and to the campaign
`terminated`), the CPU seconds the daemons used (process CPU minus this script's main thread), and
the OAR API requests cigri sent (client counters). Goal: makespan < 25 s, < 2 s of daemon CPU,
about 90 requests or fewer (Ruby v3: 110 s, 19 s CPU, ~90 requests). Ends with one key=value line.

    PGHOST=127.0.0.1 PGUSER=postgres python bench/real_oar.py [--jobs 100]
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from cigri.config import build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.metascheduler import build as build_metascheduler
from cigri.daemons.nikita import Nikita
from cigri.daemons.runner import RunnerProcess
from cigri.daemons.updater import Updater
from cigri.domain.clock import SystemClock
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi
from cigri.oar.client import OarClient, client_for_cluster
from cigri.oar.http import RetryPolicy
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.db import make_engine
from cigri.storage.migrate import upgrade
from cigri.storage.tables import campaigns, jobs

DEFAULT_URLS = ("http://127.0.0.1:6668/oarapi/,http://127.0.0.1:6678/oarapi/,"
                "http://127.0.0.1:6688/oarapi/")


def _server_url() -> str:
    url = os.environ.get("CIGRI_TEST_DATABASE_URL")
    if url:
        return url
    host = os.environ.get("PGHOST", "127.0.0.1")
    user = os.environ.get("PGUSER", "postgres")
    return f"postgresql+psycopg://{user}@{host}:{os.environ.get('PGPORT', '5432')}/postgres"


class Clients:
    def __init__(self) -> None:
        self.made: list[OarClient] = []

    def __call__(self, cluster: Cluster) -> OarApi:
        client = client_for_cluster(cluster, timeout_seconds=30.0,
                                    retry=RetryPolicy(attempts=4, backoff_seconds=0.3))
        self.made.append(client)
        return client

    @property
    def requests(self) -> int:
        return sum(client.request_count for client in self.made)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--temporal-grouping", action="store_true",
                        help="group the tasks into batch jobs (one per core), v3's temporal grouping")
    parser.add_argument("--cores", type=int, default=8, help="cores per cluster (for grouping)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    urls = [u.strip() for u in os.environ.get("CIGRI_TEST_OAR_URLS", DEFAULT_URLS).split(",")
            if u.strip()]
    run = uuid.uuid4().hex[:6]
    database = f"cigri_bench_{run}"
    admin = create_engine(_server_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = make_url(_server_url()).set(database=database).render_as_string(hide_password=False)
    try:
        upgrade(url)
        engine = make_engine(url)
        group = -(-args.jobs // (args.cores * len(urls))) if args.temporal_grouping else 0
        result = _bench(engine, urls, run, args.jobs, args.deadline, group)
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    print(" ".join(f"{key}={value}" for key, value in result.items()))


def _bench(engine: object, urls: list[str], run: str, nb_jobs: int,
           deadline: float, group: int) -> dict[str, object]:
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    initial = -(-nb_jobs // len(urls))  # one array job per cluster
    settings = build_settings({
        "STRESS_FACTOR": 1000, "RUNNER_MIN_CYCLE_DURATION": 1, "UPDATER_INTERVAL": 2,
        "METASCHEDULER_INTERVAL": 1, "NIKITA_INTERVAL": 10,
        "RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS": initial, "GRID_USAGE_UPDATE_PERIOD": 0,
        # with grouping, each runner pass submits one batch job of `group` tasks
        "RUNNER_MAX_TEMPORAL_GROUPED_JOBS": group or 50})
    clock = SystemClock()
    with engine.begin() as conn:
        ids = [add_cluster(conn, name=f"bench{i + 1}", api_url=u, now=clock.now()).id
               for i, u in enumerate(urls)]
    stop = threading.Event()
    clients = Clients()
    context = DaemonContext(settings=settings, engine=engine, clock=clock, stop=stop)
    loops = [
        build_metascheduler(context).run,
        RunnerProcess(engine=engine, settings=settings, clock=clock, stop=stop,
                      oar_factory=clients, discovery_interval=timedelta(seconds=1)).run,
        Updater(engine=engine, settings=settings, clock=clock, stop=stop, oar_factory=clients).run,
        Nikita(engine=engine, settings=settings, clock=clock, stop=stop, oar_factory=clients).run,
    ]
    cpu_before = time.process_time()
    main_before = time.thread_time()
    threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    with engine.begin() as conn:
        props = {"exec_file": "sleep 2; true", "type": "best-effort", "walltime": "00:05:00",
                 "resources": "/resource_id=1", "exec_directory": "/home/testuser"}
        if group:
            props["temporal_grouping"] = "true"
        campaign = create_campaign(conn, grid_user="testuser", name=f"bench-{run}",
                                   jobs_type="normal", jdl={},
                                   properties={cluster: props for cluster in ids},
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
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
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
    return {"state": state, "jobs": nb_jobs, "terminated": done, "cigri_jobs": row[2],
            "makespan_s": round(makespan, 1), "to_campaign_terminated_s": round(to_campaign_end, 1),
            "last_submission_s": round((last_submit - row[0]).total_seconds(), 1),
            "first_start_s": round((first_start - row[0]).total_seconds(), 1),
            "daemon_cpu_s": round(daemon_cpu, 2), "oar_requests": clients.requests,
            "batch_size": group, "load_average": round(os.getloadavg()[0], 1)}


if __name__ == "__main__":
    main()
