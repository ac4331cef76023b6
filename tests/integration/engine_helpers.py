"""Shared set-up of the engine tests (runner, updater, crash, chaos): a real database, emulated OAR
clusters over HTTP, campaigns and queued tasks made directly in the database."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select

from cigri.app import OarClients
from cigri.config import Settings, build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.cluster_runner import ClusterRunner
from cigri.daemons.updater import Updater
from cigri.domain.clock import FakeClock
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi
from cigri.emulator import Emulator, ManualClock, Workload, run_in_thread
from cigri.oar.client import client_for_cluster
from cigri.oar.http import RetryPolicy
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import bag_of_tasks, events, jobs, jobs_to_launch

USER = "testuser"


def make_settings(**overrides: Any) -> Settings:
    # The engine tests were written against v3's tap (so many jobs per pass): they keep it;
    # tests of the other injection policies set RUNNER_INJECTION_POLICY themselves.
    values: dict[str, Any] = {"RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS": 3, "STRESS_FACTOR": 1000,
                              "AUTOFIX_DELAY": 30, "LEASE_SECONDS": 60,
                              "RUNNER_INJECTION_POLICY": "tap"}
    values.update(overrides)
    return build_settings(values)


class CountingFactory:
    """OAR clients for clusters, with no retries (tests fail fast), counting what they build."""

    def __init__(self) -> None:
        self.clients: list[Any] = []

    def __call__(self, cluster: Cluster) -> OarApi:
        client = client_for_cluster(cluster, timeout_seconds=5.0,
                                    retry=RetryPolicy(attempts=1, backoff_seconds=0.0))
        self.clients.append(client)
        return client

    @property
    def requests(self) -> int:
        return sum(client.request_count for client in self.clients)


@dataclass
class Grid:
    """Emulated clusters registered in the database; `with` stops the emulator at the end."""

    engine: Engine
    clock: FakeClock
    emulator: Emulator
    emu_clock: ManualClock
    settings: Settings
    clusters: list[Cluster]
    factory: CountingFactory = field(default_factory=CountingFactory)
    stop: threading.Event = field(default_factory=threading.Event)
    clients: OarClients = field(init=False)  # the one client cache, as `cigri.app` builds

    def __post_init__(self) -> None:
        self.clients = OarClients(self.factory)

    def __enter__(self) -> Grid:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.emulator.stop()

    def advance(self, seconds: float) -> None:
        """Emulated time and cigri's FakeClock move together."""
        self.emu_clock.advance(seconds)
        for control in self.emulator.controls:
            control.cluster.pump()
        self.clock.advance(timedelta(seconds=seconds))

    def control(self, index: int = 0) -> Any:
        return self.emulator.controls[index]

    def context(self, **changes: Any) -> DaemonContext:
        """What the daemons under test are built from: the grid's settings, engine, clock, stop
        event and OAR clients, with `changes` (e.g. `settings=`, `stop=`)."""
        context = DaemonContext(settings=self.settings, engine=self.engine, clock=self.clock,
                                stop=self.stop, oar_factory=self.clients)
        return dataclasses.replace(context, **changes)

    def runner(self, index: int = 0, *, settings: Settings | None = None,
               **kwargs: Any) -> ClusterRunner:
        kwargs.setdefault("interval", timedelta(0))
        kwargs.setdefault("owner", f"test-runner-{index}")  # one instance across the test
        return ClusterRunner(self.context(settings=settings or self.settings),
                             cluster=self.clusters[index], **kwargs)

    def updater(self, *, settings: Settings | None = None, **kwargs: Any) -> Updater:
        kwargs.setdefault("interval", timedelta(0))
        kwargs.setdefault("owner", "test-updater")
        return Updater(self.context(settings=settings or self.settings), **kwargs)


def start_grid(engine: Engine, clock: FakeClock, *, clusters: int = 1, nodes: int = 4,
               cores: int = 2, settings: Settings | None = None, **emulator_options: Any) -> Grid:
    emu_clock = ManualClock()
    emulator_options.setdefault("workload", Workload(duration="fixed:10"))
    emulator = run_in_thread(allow_root_jobs=True,
                             clusters=clusters, nodes=nodes, cores=cores, mode="simulate",
                             clock=emu_clock, **emulator_options)
    registered = []
    with engine.begin() as conn:
        for index, url in enumerate(emulator.urls):
            registered.append(add_cluster(conn, name=f"c{index + 1}", api_url=url,
                                          now=clock.now()))
    return Grid(engine=engine, clock=clock, emulator=emulator, emu_clock=emu_clock,
                settings=settings or make_settings(), clusters=registered)


def start_exec_grid(engine: Engine, clock: FakeClock, *, workdir: str | None = None,
                    nodes: int = 2, cores: int = 2, settings: Settings | None = None) -> Grid:
    """One emulated cluster `exec1` in execute mode: its jobs really run, in real time."""
    emulator = run_in_thread(allow_root_jobs=True, clusters=1, nodes=nodes, cores=cores, mode="execute",
                             workdir=workdir)
    try:
        with engine.begin() as conn:
            cluster = add_cluster(conn, name="exec1", api_url=emulator.urls[0], now=clock.now())
    except BaseException:
        emulator.stop()
        raise
    return Grid(engine=engine, clock=clock, emulator=emulator, emu_clock=ManualClock(),
                settings=settings or make_settings(), clusters=[cluster])


def new_campaign(grid: Grid, params: Iterable[str], *, clusters: Sequence[int] = (0,),
                 exec_file: str = "sleep", **props: str) -> int:
    properties: dict[str, str] = {"exec_file": exec_file, "type": "best-effort",
                                  "resources": "/resource_id=1", "walltime": "01:00:00"}
    properties.update(props)
    with grid.engine.begin() as conn:
        return create_campaign(
            conn, grid_user=USER, name="test", jobs_type="normal", jdl={},
            properties={grid.clusters[i].id: properties for i in clusters},
            params=params, now=grid.clock.now())


def queue_tasks(grid: Grid, campaign_id: int, *, cluster: int = 0, besteffort: bool = True,
                limit: int | None = None) -> int:
    """What the meta-scheduler does: queue the campaign's unscheduled tasks on one cluster."""
    with grid.engine.begin() as conn:
        queued = select(jobs_to_launch.c.task_id)
        query = (select(bag_of_tasks.c.id).where(bag_of_tasks.c.campaign_id == campaign_id,
                                                 bag_of_tasks.c.id.not_in(queued))
                 .order_by(bag_of_tasks.c.priority.desc(), bag_of_tasks.c.id))
        if limit is not None:
            query = query.limit(limit)
        tasks = list(conn.execute(query).scalars())
        if tasks:
            conn.execute(insert(jobs_to_launch), [
                {"task_id": task, "cluster_id": grid.clusters[cluster].id,
                 "queuing_date": grid.clock.now(), "order_num": 1,
                 "runner_options": '{"besteffort": %s}' % ("true" if besteffort else "false")}
                for task in tasks])
    return len(tasks)


def run_to_termination(grid: Grid, params: Sequence[str], *, exec_file: str,
                       timeout_seconds: float = 30.0, **props: str) -> int:
    """A normal campaign on a grid in execute mode: all its jobs submitted in one runner pass, then
    updater passes until every job is terminated (real time: the jobs really run)."""
    campaign = new_campaign(grid, params, exec_file=exec_file, type="normal", **props)
    queue_tasks(grid, campaign, besteffort=False)
    grid.runner(settings=make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=10)).run(loops=1)
    updater = grid.updater()
    done = {"terminated": len(params)}
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline and states(grid.engine, campaign) != done:
        updater.run(loops=1)
        time.sleep(0.2)
    assert states(grid.engine, campaign) == done
    return campaign


def job_rows(engine: Engine, campaign_id: int | None = None) -> list[Any]:
    return _rows(engine, jobs, campaign_id=campaign_id)


def event_rows(engine: Engine, code: str | None = None) -> list[Any]:
    return _rows(engine, events, code=code)


def _rows(engine: Engine, table: Any, **equal: object) -> list[Any]:
    """The rows of `table` in id order, filtered on the columns whose value is not None."""
    query = select(table).order_by(table.c.id).where(
        *(table.c[column] == value for column, value in equal.items() if value is not None))
    with engine.begin() as conn:
        return list(conn.execute(query))


def count(engine: Engine, table: Any) -> int:
    with engine.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def states(engine: Engine, campaign_id: int | None = None) -> Mapping[str, int]:
    result: dict[str, int] = {}
    for row in job_rows(engine, campaign_id):
        result[row.state] = result.get(row.state, 0) + 1
    return result


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Look at `condition` every 0.1 s (real time) until it gives a true value, and return it;
    fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")
