"""End to end on the three real OAR 2.5.9 clusters: a 60-task best-effort campaign, with a normal
job that preempts some of its jobs; every task ends `terminated` and the preempted ones were
resubmitted. The engine daemons run in threads of this process, on PostgreSQL, with the real clock.

Needs `CIGRI_TEST_OAR_URLS` (comma-separated OAR API URLs); the clusters are shared, so nothing here
assumes job ids or free cores. OAR's stress factor is the load average: STRESS_FACTOR is 1000.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from cigri.config import build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.metascheduler import build as build_metascheduler
from cigri.daemons.nikita import Nikita
from cigri.daemons.runner import RunnerProcess
from cigri.daemons.updater import Updater
from cigri.domain.clock import SystemClock
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi, SubmitRequest
from cigri.oar.client import OarClient, client_for_cluster
from cigri.oar.http import RetryPolicy
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import campaigns, events, jobs

USER = "testuser"
TASKS = 60
DEADLINE_SECONDS = 300.0


def _urls() -> list[str]:
    urls = [u.strip() for u in os.environ.get("CIGRI_TEST_OAR_URLS", "").split(",") if u.strip()]
    if not urls:
        pytest.fail("CIGRI_TEST_OAR_URLS is not set: this test needs the real OAR clusters")
    return urls


class Clients:
    def __init__(self) -> None:
        self.made: list[OarClient] = []

    def __call__(self, cluster: Cluster) -> OarApi:
        client = client_for_cluster(cluster, timeout_seconds=30.0,
                                    retry=RetryPolicy(attempts=4, backoff_seconds=0.3))
        self.made.append(client)
        return client


def _start_engine(engine: Engine, settings: Any, stop: threading.Event,
                  clients: Clients) -> list[threading.Thread]:
    clock = SystemClock()
    context = DaemonContext(settings=settings, engine=engine, clock=clock, stop=stop,
                            oar_factory=clients)
    loops = [
        build_metascheduler(context).run,
        RunnerProcess(context, discovery_interval=timedelta(seconds=1)).run,
        Updater(context).run,
        Nikita(context).run,
    ]
    threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.real_oar
@pytest.mark.timeout(420)
def test_besteffort_campaign_on_real_oar_survives_preemption(pg_engine: Engine) -> None:
    urls = _urls()
    run = uuid.uuid4().hex[:6]
    settings = build_settings({
        "STRESS_FACTOR": 1000, "RUNNER_MIN_CYCLE_DURATION": 1, "UPDATER_INTERVAL": 1,
        "METASCHEDULER_INTERVAL": 1, "NIKITA_INTERVAL": 5, "RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS": 8,
        "RUNNER_TAP_INCREASE_FACTOR": 2, "GRID_USAGE_UPDATE_PERIOD": 0})
    clock = SystemClock()
    with pg_engine.begin() as conn:
        ids = [add_cluster(conn, name=f"real{i + 1}", api_url=url, now=clock.now()).id
               for i, url in enumerate(urls)]
        props = {"exec_file": "sleep 10; true", "type": "best-effort", "walltime": "00:05:00",
                 "resources": "/resource_id=1", "exec_directory": f"/home/{USER}"}
        campaign = create_campaign(conn, grid_user=USER, name=f"e2e-{run}", jobs_type="normal",
                                   jdl={}, properties={cluster: props for cluster in ids},
                                   params=(f"e2e{run}x{i}" for i in range(TASKS)),
                                   now=clock.now())
    stop = threading.Event()
    clients = Clients()
    threads = _start_engine(pg_engine, settings, stop, clients)
    preemptors: dict[int, int] = {}
    state = ""
    started = time.monotonic()
    try:
        while time.monotonic() - started < DEADLINE_SECONDS:
            with pg_engine.begin() as conn:
                state = conn.execute(select(campaigns.c.state)
                                     .where(campaigns.c.id == campaign)).scalar_one()
                running = dict(conn.execute(select(jobs.c.cluster_id, func.count()).where(
                    jobs.c.campaign_id == campaign, jobs.c.state == "running")
                    .group_by(jobs.c.cluster_id)).all())
            if state == "terminated":
                break
            for index, cluster_id in enumerate(ids):
                if cluster_id not in preemptors and running.get(cluster_id, 0) >= 3:
                    # a normal user takes every core of the cluster: best-effort jobs die
                    preemptors[cluster_id] = OarClient(urls[index]).submit(SubmitRequest(
                        command="sleep 3", resources="/core=8", walltime="00:02:00",
                        name=f"e2e-normal-{run}", directory=f"/home/{USER}"),
                        user=USER).array_id
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    with pg_engine.begin() as conn:
        rows = list(conn.execute(select(jobs.c.param_id, jobs.c.state).where(
            jobs.c.campaign_id == campaign)))
        resubmits = list(conn.execute(select(events.c.message).where(
            events.c.campaign_id == campaign, events.c.code == "RESUBMIT")).scalars())
    terminated = Counter(row.param_id for row in rows if row.state == "terminated")
    resubmitted = {row.param_id for row in rows if row.state == "event"}
    print(f"\nreal OAR e2e: {state} in {time.monotonic() - started:.0f}s, jobs={len(rows)}, "
          f"resubmitted={len(resubmits)}, OAR requests={sum(c.request_count for c in clients.made)}")
    assert preemptors
    assert state == "terminated", _diagnosis(pg_engine, campaign)
    assert len(terminated) == TASKS and set(terminated.values()) == {1}
    assert any("BESTEFFORT_KILL" in message for message in resubmits)
    assert resubmitted and resubmitted <= set(terminated)  # the preempted ones ran again


def _diagnosis(engine: Engine, campaign: int) -> str:
    """What an unfinished campaign still holds: job states, queued and unqueued tasks, events."""
    from cigri.storage.tables import bag_of_tasks, jobs_to_launch

    with engine.begin() as conn:
        states = Counter(conn.execute(select(jobs.c.state).where(
            jobs.c.campaign_id == campaign)).scalars())
        bag = conn.execute(select(func.count()).select_from(bag_of_tasks).where(
            bag_of_tasks.c.campaign_id == campaign)).scalar_one()
        queued = conn.execute(select(func.count()).select_from(jobs_to_launch).join(
            bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id).where(
            bag_of_tasks.c.campaign_id == campaign)).scalar_one()
        opened = Counter(conn.execute(select(events.c.code).where(
            events.c.campaign_id == campaign, events.c.state == "open")).scalars())
    return f"jobs {dict(states)}, tasks in bag {bag}, queued {queued}, open events {dict(opened)}"


class _Killed(BaseException):
    """The runner process died right after OAR accepted the submission."""


@pytest.mark.real_oar
@pytest.mark.timeout(120)
def test_a_runner_killed_after_submitting_is_reconciled_against_real_oar(
        pg_engine: Engine) -> None:
    from sqlalchemy import insert

    from cigri.daemons.cluster_runner import ClusterRunner
    from cigri.domain.clock import FakeClock
    from cigri.storage.tables import bag_of_tasks, jobs_to_launch, parameters

    urls = _urls()
    run = uuid.uuid4().hex[:6]
    clock = FakeClock(SystemClock().now())
    settings = build_settings({"STRESS_FACTOR": 1000, "RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS": 5})
    with pg_engine.begin() as conn:
        cluster = add_cluster(conn, name="real-crash", api_url=urls[0], now=clock.now())
        create_campaign(
            conn, grid_user=USER, name=f"crash-{run}", jobs_type="normal", jdl={},
            properties={cluster.id: {"exec_file": "sleep 1; true", "type": "best-effort",
                                     "walltime": "00:05:00", "resources": "/resource_id=1",
                                     "exec_directory": f"/home/{USER}"}},
            params=(f"r{run}x{i}" for i in range(3)), now=clock.now())
        tasks = conn.execute(select(bag_of_tasks.c.id)).scalars().all()
        conn.execute(insert(jobs_to_launch), [
            {"task_id": task, "cluster_id": cluster.id, "queuing_date": clock.now(),
             "runner_options": '{"besteffort": true}'} for task in tasks])
    context = DaemonContext(settings=settings, engine=pg_engine, clock=clock,
                            stop=threading.Event(), oar_factory=Clients())
    dying = ClusterRunner(context, cluster=cluster, owner="dying", interval=timedelta(0))
    real_factory = dying.oar_factory

    class DyingOar:
        """The real client, with the process dying right after OAR accepted the submission."""

        def __init__(self, real: Any) -> None:
            self.real = real

        def submit(self, request: SubmitRequest, *, user: str) -> Any:
            self.real.submit(request, user=user)
            raise _Killed

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    # the runner asks its factory for the cluster's client at each use (live cluster edits)
    dying.oar_factory = lambda c: DyingOar(real_factory(c))
    with pytest.raises(_Killed):
        dying.run(loops=1)
    clock.advance(timedelta(minutes=2))
    fresh = ClusterRunner(context, cluster=cluster, owner="fresh", interval=timedelta(0))
    assert fresh.reconcile() == 1
    with pg_engine.begin() as conn:
        rows = list(conn.execute(select(jobs.c.state, jobs.c.remote_id, parameters.c.param)
                                 .join(parameters, parameters.c.id == jobs.c.param_id)))
    assert [row.state for row in rows] == ["submitted"] * 3
    oar = OarClient(urls[0])
    for row in rows:  # each job adopted the OAR job running its own parameter
        assert (oar.get_job(row.remote_id, user=USER).command or "").endswith(row.param)
