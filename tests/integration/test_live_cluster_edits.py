"""Cluster edits take effect live (issue 9.6): after `cigri cluster set` changes a cluster's API URL
or its password, the next pass of every daemon that calls OAR (runner, updater, nikita,
collector), each built once and kept running, goes to the new URL with the new credentials; the
old endpoint sees no request after the change. PostgreSQL, the injectable clock, one emulated
cluster served on two endpoints over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cigri.daemons.collector import Collector
from cigri.daemons.nikita import Nikita
from cigri.domain.clock import FakeClock
from cigri.domain.events import USER_FRAG
from cigri.domain.states import EventClass
from cigri.emulator.api import OarApp
from cigri.emulator.endpoints import ClusterServer
from cigri.storage.clusters import set_cluster_fields
from cigri.storage.events import record_event
from cigri.storage.tables import events, jobs
from tests.integration.engine_helpers import (
    Grid,
    make_settings,
    new_campaign,
    queue_tasks,
    start_grid,
)


@pytest.fixture
def grid(pg_engine: Engine, clock: FakeClock, tmp_path: Path) -> Iterator[Grid]:
    settings = make_settings(COLLECTOR_DIRECTORY=str(tmp_path / "results"),
                             RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=10)
    with start_grid(pg_engine, clock, nodes=8, settings=settings) as grid:
        yield grid


def _second_endpoint(grid: Grid) -> tuple[OarApp, ClusterServer, str]:
    """The same emulated cluster behind another port (a new front end, a moved API)."""
    app = OarApp(grid.control().cluster)
    server = ClusterServer(app, "127.0.0.1", 0)
    server.start()
    return app, server, f"http://127.0.0.1:{server.port}{app.prefix}/"


def _cancel(grid: Grid, job_id: int) -> None:
    """What `griddel -j` records: an open class-job USER_FRAG for nikita."""
    with grid.engine.begin() as conn:
        job = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
        record_event(conn, class_=EventClass.JOB, code=USER_FRAG, job_id=job.id,
                     campaign_id=job.campaign_id, cluster_id=job.cluster_id,
                     now=grid.clock.now())


def _newest_jobs(grid: Grid, count: int) -> list[Any]:
    with grid.engine.begin() as conn:
        return list(conn.execute(select(jobs).order_by(jobs.c.id.desc()).limit(count)))


def _error_events(grid: Grid) -> list[tuple[str, str]]:
    """Events that say an OAR call failed (refused, unreachable, lost)."""
    with grid.engine.begin() as conn:
        rows = conn.execute(select(events.c.class_, events.c.code, events.c.message))
        return [(r.code, r.message or "") for r in rows
                if r.class_ == "cluster" or r.code.startswith("RUNNER_")
                or r.code in {"NIKITA_KILL_PROBLEM", "OUTPUT_COLLECTION_FAILED"}]


def _pass_counts(served: Callable[[], int], run: Callable[[], None]) -> int:
    """How many requests the endpoint `served` answered during one daemon pass."""
    before = served()
    run()
    return served() - before


@pytest.mark.parametrize("edit", ["api_url", "api_password"])
def test_every_daemon_follows_a_cluster_edit_at_its_next_pass(grid: Grid, edit: str) -> None:
    old = grid.control().app
    cluster = grid.clusters[0]
    if edit == "api_password":  # a cluster behind basic auth, whose password is rotated
        old.passwords = {"oar": "old-secret"}
        with grid.engine.begin() as conn:
            set_cluster_fields(conn, cluster.id, api_auth_type="password", api_username="oar",
                               api_password="old-secret")
    campaign = new_campaign(grid, [f"p{i}" for i in range(8)],
                            output_gathering_method="collector", output_file="out_{TASK}.txt")
    # every daemon is built once and keeps running across the edit
    runner = grid.runner()
    updater = grid.updater()
    nikita = Nikita(grid.context(stop=threading.Event()), owner="test-nikita")
    collector = Collector(grid.context(stop=threading.Event()), owner="test-collector")

    # before the edit: each daemon works against the old endpoint
    queue_tasks(grid, campaign, limit=4)
    assert _pass_counts(lambda: old.requests, lambda: runner.run(loops=1)) > 0
    _cancel(grid, _newest_jobs(grid, 1)[0].id)
    assert _pass_counts(lambda: old.requests, lambda: nikita.run(loops=1)) > 0
    grid.advance(11)  # the other jobs end on OAR
    assert _pass_counts(lambda: old.requests, lambda: updater.run(loops=1)) > 0
    assert _pass_counts(lambda: old.requests, lambda: collector.run(loops=1)) > 0

    # the edit, as `cigri cluster set c1 api_url=...` / `api_password=...` makes it
    if edit == "api_url":
        new, server, url = _second_endpoint(grid)
        with grid.engine.begin() as conn:
            set_cluster_fields(conn, cluster.id, api_url=url)
    else:
        new, server = old, None
        old.passwords = {"oar": "new-secret"}  # rotated on the cluster's front end
        with grid.engine.begin() as conn:
            set_cluster_fields(conn, cluster.id, api_password="new-secret")
    try:
        old_seen = old.requests
        queue_tasks(grid, campaign, limit=4)
        assert _pass_counts(lambda: new.requests, lambda: runner.run(loops=1)) > 0
        _cancel(grid, _newest_jobs(grid, 1)[0].id)
        assert _pass_counts(lambda: new.requests, lambda: nikita.run(loops=1)) > 0
        grid.advance(11)
        assert _pass_counts(lambda: new.requests, lambda: updater.run(loops=1)) > 0
        assert _pass_counts(lambda: new.requests, lambda: collector.run(loops=1)) > 0
        if edit == "api_url":
            assert old.requests == old_seen  # nothing went to the old URL after the change
        assert _error_events(grid) == []  # no refused or failed call (e.g. a 401)
        with grid.engine.begin() as conn:
            done = conn.execute(select(jobs.c.state).where(jobs.c.campaign_id == campaign))
            assert sorted(done.scalars()) == ["event"] * 2 + ["terminated"] * 6
    finally:
        if server is not None:
            server.stop()

