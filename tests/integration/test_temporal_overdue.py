"""Temporal grouping: nikita's overdue-walltime check judges a batch as a whole (PostgreSQL and
SQLite, the OAR emulator over HTTP, the FakeClock): a batch is overdue once its OAR job has run
longer than its scaled walltime (one task's × its tasks) plus the usual 30 minutes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from cigri.daemons.nikita import Nikita
from cigri.domain.clock import FakeClock
from cigri.emulator import Workload
from tests.integration.engine_helpers import (
    Grid,
    event_rows,
    job_rows,
    make_settings,
    new_campaign,
    queue_tasks,
    start_grid,
)

EMULATOR_EPOCH = 1_800_000_000  # the emulator's ManualClock starts there


@pytest.fixture
def grid(engine: Engine) -> Iterator[Grid]:
    """cigri's clock and the emulator's start together, so OAR start times read as cigri's."""
    clock = FakeClock(start=datetime.fromtimestamp(EMULATOR_EPOCH, tz=UTC))
    grid = start_grid(engine, clock, workload=Workload(duration="fixed:100000"))
    try:
        yield grid
    finally:
        grid.emulator.stop()


def _nikita(grid: Grid) -> Nikita:
    return Nikita(grid.context(stop=threading.Event()), interval=timedelta(0))


def test_a_running_batch_is_killed_only_past_its_scaled_walltime(grid: Grid) -> None:
    campaign = new_campaign(grid, ["a", "b", "c"], exec_file="work", temporal_grouping="true",
                            walltime="00:10:00")
    queue_tasks(grid, campaign)
    grid.runner(settings=make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=3)).run(loops=1)
    grid.advance(1)  # OAR starts the batch
    grid.updater().run(loops=1)
    rows = job_rows(grid.engine, campaign)
    (remote_id,) = {row.remote_id for row in rows}
    assert [row.state for row in rows] == ["running"] * 3
    # the batch's OAR start (at its submission, one second ago), until the state file says
    assert {row.start_time for row in rows} == {grid.clock.now() - timedelta(seconds=1)}

    nikita = _nikita(grid)
    # one task's walltime + 30 min has passed, not the batch's (3 x 10 min) + 30 min
    grid.clock.advance(timedelta(minutes=10 + 30, seconds=30))
    nikita.run(loops=1)
    assert event_rows(grid.engine, "CIGRI_WALLTIME") == []
    grid.clock.advance(timedelta(minutes=19))  # 59 min 30 s: still within 60 min
    nikita.run(loops=1)
    assert event_rows(grid.engine, "CIGRI_WALLTIME") == []
    assert next(j["state"] for j in grid.control().jobs() if j["id"] == remote_id) == "Running"

    grid.clock.advance(timedelta(minutes=1))  # 60 min 30 s: the batch is overdue, as a whole
    nikita.run(loops=1)
    killed = event_rows(grid.engine, "CIGRI_WALLTIME")
    assert sorted(event.job_id for event in killed) == sorted(row.id for row in rows)
    assert all(f"(OAR {remote_id})" in event.message for event in killed)
    grid.advance(1)
    assert next(j["state"] for j in grid.control().jobs() if j["id"] == remote_id) == "Error"
    nikita.run(loops=1)  # killed once: no second delete, no second event
    assert len(event_rows(grid.engine, "CIGRI_WALLTIME")) == 3
