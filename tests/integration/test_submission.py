"""Submission end to end on both databases (PostgreSQL with SKIP LOCKED, SQLite serialised), the
identity sent to OAR, and what is never submitted or resubmitted (behaviours 19, 29, v3 bug 13)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert, select, update

from cigri.domain.clock import FakeClock
from cigri.storage.tables import bag_of_tasks, campaigns, jobs
from cigri.storage.users import set_user_mapping
from tests.integration.engine_helpers import (
    Grid,
    job_rows,
    new_campaign,
    queue_tasks,
    start_grid,
    states,
)


@pytest.fixture
def grid(engine: Engine, clock: FakeClock) -> Iterator[Grid]:
    with start_grid(engine, clock, clusters=1) as grid:
        yield grid


def test_tasks_run_to_terminated_and_the_campaign_finishes_on_both_databases(grid: Grid) -> None:
    campaign = new_campaign(grid, [f"t{i} sleep 5" for i in range(8)], exec_file="run")
    runner, updater = grid.runner(), grid.updater()
    for _ in range(6):
        queue_tasks(grid, campaign)
        runner.run(loops=1)
        grid.advance(6)
        updater.run(loops=1)
    assert states(grid.engine, campaign) == {"terminated": 8}
    with grid.engine.begin() as conn:
        assert conn.execute(select(campaigns.c.state)).scalar_one() == "terminated"


def test_jobs_are_submitted_with_the_mapped_cluster_login(grid: Grid) -> None:
    with grid.engine.begin() as conn:
        set_user_mapping(conn, grid_login="testuser", cluster_id=grid.clusters[0].id,
                         cluster_login="alice")
    campaign = new_campaign(grid, ["1"])
    queue_tasks(grid, campaign)
    grid.runner().run(loops=1)
    (row,) = job_rows(grid.engine, campaign)
    (oar,) = [job for job in grid.control(0).jobs() if job["id"] == row.remote_id]
    assert oar["owner"] == "alice"


def test_jobs_of_a_cancelled_campaign_are_not_resubmitted(grid: Grid) -> None:
    campaign = new_campaign(grid, ["100"])
    queue_tasks(grid, campaign)
    grid.runner().run(loops=1)
    grid.advance(1)
    with grid.engine.begin() as conn:
        conn.execute(update(campaigns).values(state="cancelled"))
    grid.control(0).normal_user(8, 50)  # preempts the best-effort job
    grid.advance(1)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"event": 1}
    with grid.engine.begin() as conn:
        assert list(conn.execute(select(bag_of_tasks))) == []


def test_a_paused_campaign_prologue_waits_for_the_resume(grid: Grid) -> None:
    campaign = new_campaign(grid, ["1"], prologue="echo setup")
    with grid.engine.begin() as conn:
        conn.execute(insert(jobs).values(campaign_id=campaign, cluster_id=grid.clusters[0].id,
                                         state="to_launch", tag="prologue"))
        conn.execute(update(campaigns).values(state="paused"))
    runner = grid.runner()
    runner.run(loops=1)
    assert states(grid.engine, campaign) == {"to_launch": 1}
    with grid.engine.begin() as conn:
        conn.execute(update(campaigns).values(state="in_treatment"))
    runner.run(loops=1)
    assert states(grid.engine, campaign) == {"submitted": 1}
