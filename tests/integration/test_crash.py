"""Crash safety of submission: a runner killed between recording its intent and calling OAR, or
between the OAR call and recording the OAR ids, loses no task and duplicates none once a new runner
has reconciled (PostgreSQL, the emulator over HTTP, the injectable clock).

The kill is simulated by an exception that is not an `Exception` (so no handler of the daemon
catches it), raised around the real HTTP call; the database and OAR see exactly what they would see
if the process had received SIGKILL at that instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cigri.domain.oar import OarApi, Submission, SubmitRequest
from cigri.storage.tables import bag_of_tasks, submissions
from tests.integration.engine_helpers import (
    Grid,
    count,
    event_rows,
    job_rows,
    new_campaign,
    queue_tasks,
    states,
)


class Killed(BaseException):
    """The process died here."""


class DyingOar:
    """The real OAR client, with the process dying just before or just after `submit`."""

    def __init__(self, real: OarApi, *, when: str) -> None:
        self.real = real
        self.when = when

    def submit(self, request: SubmitRequest, *, user: str) -> Submission:
        if self.when == "before":
            raise Killed
        self.real.submit(request, user=user)
        raise Killed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _die(grid: Grid, when: str) -> int:
    campaign = new_campaign(grid, ["a 1", "b 2", "c 3"], exec_file="run sleep")
    queue_tasks(grid, campaign)
    runner = grid.runner(owner="dead")
    runner.oar_factory = lambda cluster: DyingOar(grid.clients(cluster), when=when)  # type: ignore[assignment,return-value]
    with pytest.raises(Killed):
        runner.run(loops=1)
    assert states(grid.engine, campaign) == {"launching": 3}
    return campaign


def _oar_jobs(grid: Grid) -> list[dict[str, Any]]:
    return grid.control(0).jobs()


def _finish(grid: Grid, owner: str = "new") -> None:
    runner = grid.runner(owner=owner)
    updater = grid.updater()
    for _ in range(6):
        runner.run(loops=1)
        grid.advance(5)
        updater.run(loops=1)


def _assert_each_parameter_terminated_once(grid: Grid, campaign: int,
                                           oar: Sequence[dict[str, Any]]) -> None:
    rows = job_rows(grid.engine, campaign)
    done = [row.param_id for row in rows if row.state == "terminated"]
    assert sorted(done) == sorted(set(done)) and len(done) == 3
    completions = grid.control(0).completions()
    assert all(times == 1 for times in completions.values())
    known = {row.remote_id for row in rows}
    assert {job["id"] for job in oar} <= known  # no OAR job cigri does not know


def test_killed_before_the_oar_call_returns_the_tasks_to_the_bag(grid: Grid) -> None:
    campaign = _die(grid, "before")
    assert _oar_jobs(grid) == []
    fresh = grid.runner(owner="new")
    fresh.run(loops=1)  # the lease of the dead runner still holds: nothing happens
    assert states(grid.engine, campaign) == {"launching": 3}
    grid.clock.advance(timedelta(seconds=61))
    assert fresh.reconcile() == 1
    assert states(grid.engine, campaign) == {"event": 3}
    assert len(event_rows(grid.engine, "STUCK_LAUNCHING_JOB")) == 3
    with grid.engine.begin() as conn:
        assert sorted(conn.execute(select(bag_of_tasks.c.priority)).scalars()) == [20, 20, 20]
        assert conn.execute(select(submissions.c.state)).scalar_one() == "abandoned"
    queue_tasks(grid, campaign)
    _finish(grid)
    _assert_each_parameter_terminated_once(grid, campaign, _oar_jobs(grid))
    assert len(_oar_jobs(grid)) == 3


def test_killed_after_the_oar_call_adopts_the_oar_jobs(grid: Grid) -> None:
    campaign = _die(grid, "after")
    oar = _oar_jobs(grid)
    assert len(oar) == 3  # OAR has them, cigri does not know their ids yet
    grid.clock.advance(timedelta(seconds=61))
    fresh = grid.runner(owner="new")
    assert fresh.reconcile() == 1
    rows = job_rows(grid.engine, campaign)
    assert [row.state for row in rows] == ["submitted"] * 3
    by_id = {job["id"]: job for job in oar}
    from cigri.storage.tables import parameters

    with grid.engine.begin() as conn:
        text_of = {row.id: row.param for row in conn.execute(select(parameters))}
    for row in rows:  # each job adopted the OAR job of its own parameter
        assert by_id[row.remote_id]["command"].endswith(text_of[row.param_id])
    assert count(grid.engine, bag_of_tasks) == 0
    _finish(grid)
    _assert_each_parameter_terminated_once(grid, campaign, _oar_jobs(grid))
    assert len(_oar_jobs(grid)) == 3


def test_a_recent_intent_of_a_live_runner_is_left_alone(grid: Grid) -> None:
    campaign = _die(grid, "before")
    grid.clock.advance(timedelta(seconds=10))  # younger than a lease: its runner may be mid-call
    assert grid.runner(owner="dead").reconcile() == 0
    assert states(grid.engine, campaign) == {"launching": 3}


def test_a_submission_without_answer_is_reconciled_at_the_next_pass(grid: Grid) -> None:
    campaign = new_campaign(grid, ["a 1", "b 2"], exec_file="run sleep")
    queue_tasks(grid, campaign)
    grid.control(0).fail_next(502)  # a proxy error: OAR may or may not have the job
    runner = grid.runner()
    runner.run(loops=1)
    with grid.engine.begin() as conn:
        assert conn.execute(select(submissions.c.state)).scalar_one() == "uncertain"
    runner.reconcile()
    with grid.engine.begin() as conn:
        assert conn.execute(select(submissions.c.state)).scalar_one() == "abandoned"
    assert states(grid.engine, campaign) == {"event": 2}
    queue_tasks(grid, campaign)
    _finish(grid, owner="test-runner-0")
    rows = job_rows(grid.engine, campaign)
    assert sorted(row.state for row in rows) == ["event", "event", "terminated", "terminated"]


