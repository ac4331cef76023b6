"""Temporal grouping end to end: the runner packs a pass's tasks into one OAR job running a batch
script, the updater reads each sub-job's state file once the OAR job is final (real PostgreSQL,
the OAR emulator over HTTP in execute mode, so the scripts really run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cigri.domain.batches import (
    batch_script,
    parse_states,
    scale_walltime,
    state_file,
    stdout_file,
)
from cigri.domain.clock import FakeClock
from cigri.domain.jobs import LaunchItem
from cigri.domain.oar import OarApi, OarNotFound, Submission, SubmitRequest
from cigri.storage.tables import bag_of_tasks, submissions
from tests.integration.engine_helpers import (
    USER,
    Grid,
    event_rows,
    job_rows,
    make_settings,
    new_campaign,
    queue_tasks,
    start_grid,
    states,
)


def _until(condition: Callable[[], bool], step: Callable[[], None], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        step()
        time.sleep(0.1)


def _read(grid: Grid, job_id: int, name: str) -> str | None:
    oar = grid.factory(grid.clusters[0])
    (batch,) = [j for j in grid.control().jobs() if j["owner"] == USER
                and any(row.remote_id == j["id"] for row in job_rows(grid.engine)
                        if row.id == job_id)]
    directory = oar.get_job(batch["id"], user=USER).launching_directory
    try:
        return oar.read_file(f"{directory}/{name}", user=USER).decode()
    except OarNotFound:
        return None


def _bag(grid: Grid) -> list[int]:
    with grid.engine.begin() as conn:
        return list(conn.execute(select(bag_of_tasks.c.param_id)).scalars())


def test_batch_script_escapes_our_dollars_and_scales_the_walltime() -> None:
    items = [LaunchItem(job_id=7, campaign_id=3, param_id=1, param="a b", array_index=1)]
    script = batch_script(items, campaign_id=3, exec_file="run", name="cigri.3.k")
    assert "export CIGRI_CAMPAIGN_ID=3" in script
    assert "echo 7 BEGIN_DATE=\\$(date +%s) >> cigri.3.k.state" in script
    assert "( run a b ) > cigri_batch_stdout_7 2> cigri_batch_stderr_7" in script
    assert "echo 7 RET=\\$? >> cigri.3.k.state" in script
    assert scale_walltime("01:30:00", 4) == "06:00:00"
    assert scale_walltime("30:00:10", 2) == "60:00:20"
    states = parse_states("7 BEGIN_DATE=100\n7 RET=3\n7 END_DATE=160\n8 BEGIN_DATE=170\n")
    state = states[7]
    assert state.ret == 3 and state.begin and state.end and (state.end - state.begin).seconds == 60
    assert not states[8].finished and 9 not in states


def test_a_grouped_campaign_runs_as_fewer_oar_jobs_each_task_with_its_own_output(
        exec_grid: Grid) -> None:
    grid = exec_grid
    params = [f"p{i}" for i in range(10)]
    campaign = new_campaign(grid, params, exec_file="echo", temporal_grouping="true",
                            walltime="00:10:00")
    queue_tasks(grid, campaign)
    runner, updater = grid.runner(), grid.updater()

    def step() -> None:
        runner.run(loops=1)
        updater.run(loops=1)

    _until(lambda: states(grid.engine, campaign) == {"terminated": 10}, step)
    rows = job_rows(grid.engine, campaign)
    oar_jobs = [j for j in grid.control().jobs() if j["owner"] == USER]
    assert 1 < len(oar_jobs) < 10
    assert len({row.remote_id for row in rows}) == len(oar_jobs)
    assert all(j["array_id"] == j["id"] and j["param"] is None for j in oar_jobs)
    assert {row.tag for row in rows} == {"batch"}
    oar = grid.factory(grid.clusters[0])
    for oar_job in oar_jobs:  # walltime = one task's walltime x the tasks of the batch
        size = sum(1 for row in rows if row.remote_id == oar_job["id"])
        assert oar.get_job(oar_job["id"], user=USER).walltime_seconds == 600 * size
    for row in rows:
        with grid.engine.begin() as conn:
            from cigri.storage.tables import parameters

            param = conn.execute(select(parameters.c.param)
                                 .where(parameters.c.id == row.param_id)).scalar_one()
        assert _read(grid, row.id, stdout_file(row.id)) == f"{param}\n"
        assert row.return_code == 0 and row.start_time is not None
        assert row.start_time.year >= 2020  # BEGIN_DATE survived the API's shell
        assert row.stop_time is not None and row.stop_time >= row.start_time


def test_a_failing_task_inside_a_batch_gets_exit_error_the_others_terminate(
        exec_grid: Grid) -> None:
    grid = exec_grid
    campaign = new_campaign(grid, ["true", "sh -c 'echo bad >&2; exit 3'", "bash -c 'exit 66'"],
                            exec_file="env", temporal_grouping="true")
    queue_tasks(grid, campaign)
    runner, updater = grid.runner(), grid.updater()
    runner.run(loops=1)
    assert len({row.remote_id for row in job_rows(grid.engine, campaign)}) == 1
    _until(lambda: "submitted" not in states(grid.engine, campaign)
           and "running" not in states(grid.engine, campaign), lambda: updater.run(loops=1))
    first, failing, special = job_rows(grid.engine, campaign)
    assert first.state == "terminated"
    assert failing.state == "event" and failing.return_code == 768
    assert failing.start_time is not None and failing.stop_time is not None
    (error,) = event_rows(grid.engine, "EXIT_ERROR")
    assert error.job_id == failing.id and error.state == "open"
    assert error.message.rstrip().endswith("bad")  # the sub-job's own stderr tail
    # exit status 66 inside a batch resubmits (v3 never scaled RET, so it never did)
    assert special.state == "event"
    (resubmit,) = event_rows(grid.engine, "RESUBMIT")
    assert resubmit.job_id == special.id
    assert _bag(grid) == [special.param_id]


@pytest.mark.parametrize("exec_grid", [(1, 1)], indirect=True)
def test_a_killed_best_effort_batch_resubmits_only_the_unfinished_sub_jobs(
        exec_grid: Grid) -> None:
    grid = exec_grid
    campaign = new_campaign(grid, ["0", "0.0", "60", "60.0"], exec_file="sleep",
                            temporal_grouping="true")
    queue_tasks(grid, campaign)
    runner = grid.runner(settings=make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=4))
    updater = grid.updater()
    runner.run(loops=1)
    rows = job_rows(grid.engine, campaign)
    assert len(rows) == 4 and len({row.remote_id for row in rows}) == 1
    third = rows[2]
    assert third.remote_id is not None
    batch_name = grid.factory(grid.clusters[0]).get_job(third.remote_id, user=USER).name
    state_name = state_file(batch_name or "")
    _until(lambda: f"{third.id} BEGIN_DATE" in (_read(grid, third.id, state_name) or ""),
           lambda: updater.run(loops=1))
    updater.run(loops=1)
    assert states(grid.engine, campaign) == {"running": 4}  # no state file read before the end
    # the batch's own start until the state file says (nikita judges the batch as a whole)
    assert len({row.start_time for row in job_rows(grid.engine, campaign)}) == 1
    grid.control().normal_user(cores=1, duration=1000)
    _until(lambda: "running" not in states(grid.engine, campaign), lambda: updater.run(loops=1))
    rows = job_rows(grid.engine, campaign)
    assert [row.state for row in rows] == ["terminated", "terminated", "event", "event"]
    resubmits = event_rows(grid.engine, "RESUBMIT")
    assert sorted(event.job_id for event in resubmits) == [rows[2].id, rows[3].id]
    assert all(event.state == "closed" and "BESTEFFORT_KILL" in event.message
               for event in resubmits)
    assert sorted(_bag(grid)) == sorted([rows[2].param_id, rows[3].param_id])
    assert not [row for row in rows if row.state == "batch_waiting"]


def test_an_ungrouped_campaign_still_submits_an_array(pg_engine: Engine,
                                                      clock: FakeClock) -> None:
    grid = start_grid(pg_engine, clock)
    try:
        campaign = new_campaign(grid, ["1", "2", "3"])
        queue_tasks(grid, campaign)
        grid.runner().run(loops=1)
        rows = job_rows(grid.engine, campaign)
        assert len({row.remote_id for row in rows}) == 3 and {row.tag for row in rows} == {None}
        oar_jobs = grid.control().jobs()
        assert len({j["array_id"] for j in oar_jobs}) == 1
        assert sorted(j["param"] for j in oar_jobs) == ["1", "2", "3"]
    finally:
        grid.emulator.stop()


class _Killed(BaseException):
    """The runner process died here."""


class _DiesAfterSubmit:
    """The real client; the process dies right after OAR took the submission."""

    def __init__(self, real: OarApi) -> None:
        self.real = real

    def submit(self, request: SubmitRequest, *, user: str) -> Submission:
        self.real.submit(request, user=user)
        raise _Killed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_batch_whose_runner_died_after_the_oar_call_is_adopted_whole(
        pg_engine: Engine, clock: FakeClock) -> None:
    grid = start_grid(pg_engine, clock)
    try:
        campaign = new_campaign(grid, ["a", "b", "c"], temporal_grouping="true")
        queue_tasks(grid, campaign)
        dead = grid.runner(owner="dead")
        dead.oar_factory = lambda cluster: _DiesAfterSubmit(grid.clients(cluster))  # type: ignore[assignment,return-value]
        with pytest.raises(_Killed):
            dead.run(loops=1)
        (oar_job,) = grid.control().jobs()
        grid.clock.advance(timedelta(seconds=61))
        assert grid.runner(owner="new").reconcile() == 1
        rows = job_rows(grid.engine, campaign)
        assert [(row.state, row.remote_id, row.tag) for row in rows] == \
            [("submitted", oar_job["id"], "batch")] * 3
        with grid.engine.begin() as conn:
            assert conn.execute(select(submissions.c.state)).scalar_one() == "adopted"
    finally:
        grid.emulator.stop()


def test_one_pass_splits_the_tap_rate_into_batches_of_the_configured_size(
        exec_grid: Grid) -> None:
    grid = exec_grid
    settings = make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=6,
                             RUNNER_MAX_TEMPORAL_GROUPED_JOBS=2)
    campaign = new_campaign(grid, [f"q{i}" for i in range(7)], exec_file="echo",
                            temporal_grouping="true")
    queue_tasks(grid, campaign)
    grid.runner(settings=settings).run(loops=1)
    rows = [row for row in job_rows(grid.engine, campaign) if row.remote_id is not None]
    sizes = sorted(sum(1 for row in rows if row.remote_id == remote)
                   for remote in {row.remote_id for row in rows})
    assert sizes == [2, 2, 2]  # the tap rate (6) in one pass, two tasks per OAR job
