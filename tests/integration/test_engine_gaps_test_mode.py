"""Test mode runs normal jobs (v3 user ref §1.8, behaviour 17 of its list): the meta-scheduler's
queue rows, the jobs the runner takes and the OAR jobs it submits carry no best-effort flag, while
an ordinary best-effort campaign on the same grid still gets the `besteffort` type."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.clock import FakeClock
from cigri.storage.tables import bag_of_tasks, jobs_to_launch
from tests.integration.engine_helpers import Grid, job_rows, new_campaign, start_grid


@pytest.fixture
def grid(engine: Engine, clock: FakeClock) -> Iterator[Grid]:
    grid = start_grid(engine, clock, clusters=1, nodes=2, cores=2)
    try:
        yield grid
    finally:
        grid.emulator.stop()


def _schedule(grid: Grid) -> None:
    MetaScheduler(engine=grid.engine, settings=grid.settings, clock=grid.clock, stop=grid.stop,
                  interval=timedelta(0), owner="test-metascheduler").run(loops=1)


def _queued_options(grid: Grid, campaign: int) -> list[dict[str, object]]:
    with grid.engine.begin() as conn:
        return [json.loads(row.runner_options) for row in conn.execute(
            select(jobs_to_launch.c.runner_options)
            .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
            .where(bag_of_tasks.c.campaign_id == campaign))]


def _oar_types(grid: Grid, campaign: int) -> list[list[str]]:
    return [job["types"] for job in grid.control(0).jobs()
            if str(job["name"]).startswith(f"cigri.{campaign}.")]


def test_test_mode_tasks_are_queued_and_submitted_as_normal_jobs(grid: Grid) -> None:
    tested = new_campaign(grid, ["a 1", "b 2", "c 3"], test_mode="true")
    _schedule(grid)
    assert _queued_options(grid, tested) == [{"besteffort": False, "batch_id": 1}]  # max 1
    grid.runner().run(loops=1)
    (job,) = job_rows(grid.engine, tested)
    assert json.loads(job.runner_options)["besteffort"] is False
    assert _oar_types(grid, tested) == [[]]


def test_an_ordinary_best_effort_campaign_keeps_the_besteffort_type(grid: Grid) -> None:
    ordinary = new_campaign(grid, ["a 1", "b 2"])
    _schedule(grid)
    assert {o["besteffort"] for o in _queued_options(grid, ordinary)} == {True}
    grid.runner().run(loops=1)
    assert {json.loads(row.runner_options)["besteffort"]
            for row in job_rows(grid.engine, ordinary)} == {True}
    assert _oar_types(grid, ordinary) == [["besteffort"]] * 2
