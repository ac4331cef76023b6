"""A prologue job created on a cluster that then stops taking work (disabled, or blacklisted for
good) used to stay `to_launch` for ever and so hold its campaign `in_treatment` after every task
ran elsewhere. The meta-scheduler withdraws it once its cluster is disabled or the campaign's
tasks are all done. Meta-scheduler, runners and updater on a real database and two emulated
clusters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.clock import FakeClock
from cigri.domain.events import BLACKLIST
from cigri.domain.states import EventClass
from cigri.storage import events as event_store
from cigri.storage.clusters import set_cluster_enabled
from cigri.storage.tables import campaigns
from tests.integration.engine_helpers import Grid, job_rows, new_campaign, start_grid


@pytest.fixture
def grid(engine: Engine, clock: FakeClock) -> Iterator[Grid]:
    grid = start_grid(engine, clock, clusters=2, nodes=2, cores=2)
    try:
        yield grid
    finally:
        grid.emulator.stop()


def _cycle(grid: Grid) -> None:
    MetaScheduler(engine=grid.engine, settings=grid.settings, clock=grid.clock, stop=grid.stop,
                  interval=timedelta(0), owner="test-metascheduler").run(loops=1)
    grid.runner(0).run(loops=1)  # the second cluster takes nothing any more
    grid.advance(15)
    grid.updater().run(loops=1)


def _prologues(grid: Grid, campaign: int) -> dict[int, str]:
    return {row.cluster_id: row.state for row in job_rows(grid.engine, campaign)
            if row.tag == "prologue"}


@pytest.mark.parametrize("how", [
    pytest.param("disabled", id="cluster-disabled"),
    pytest.param("blacklisted", id="cluster-disabled-by-an-admin-event"),
])
def test_an_untaken_prologue_on_a_cluster_gone_quiet_does_not_hold_the_campaign(
        grid: Grid, how: str) -> None:
    c1, c2 = (c.id for c in grid.clusters)
    campaign = new_campaign(grid, ["a 1", "b 2", "c 3"], clusters=(0, 1), prologue="echo setup")
    MetaScheduler(engine=grid.engine, settings=grid.settings, clock=grid.clock, stop=grid.stop,
                  interval=timedelta(0), owner="test-metascheduler").run(loops=1)
    assert _prologues(grid, campaign) == {c1: "to_launch", c2: "to_launch"}
    with grid.engine.begin() as conn:
        if how == "disabled":
            set_cluster_enabled(conn, c2, False)
        else:
            cause = event_store.record_event(conn, class_=EventClass.CLUSTER,
                                             code="CLUSTER_MANUALLY_DISABLED", cluster_id=c2,
                                             now=grid.clock.now())
            event_store.record_event(conn, class_=EventClass.CLUSTER, code=BLACKLIST,
                                     cluster_id=c2, parent=cause, now=grid.clock.now())
    for _ in range(4):
        _cycle(grid)
    tasks = [row for row in job_rows(grid.engine, campaign) if row.param_id is not None]
    assert {(row.cluster_id, row.state) for row in tasks} == {(c1, "terminated")}
    assert len(tasks) == 3
    assert _prologues(grid, campaign) == {c1: "terminated"}  # the other one withdrawn
    with grid.engine.begin() as conn:
        assert conn.execute(select(campaigns.c.state)
                            .where(campaigns.c.id == campaign)).scalar_one() == "terminated"
