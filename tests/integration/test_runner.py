"""The runner against real PostgreSQL and the OAR emulator over HTTP (v3 §3.1, behaviours 9-14,
21-22), with the injectable clock."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select, update

from cigri.daemons.runner import RunnerProcess
from cigri.daemons.submission import MAX_STUCK_LAUNCHES, RUNNER_SUBMIT_ERROR
from cigri.domain.states import JobState, TapState
from cigri.storage import events as event_store
from cigri.storage.clusters import add_cluster, set_cluster_enabled
from cigri.storage.jobs import claim_queued_tasks
from cigri.storage.submissions import record_intent
from cigri.storage.tables import bag_of_tasks, jobs, jobs_to_launch, parameters, submissions, taps
from tests.integration.engine_helpers import (
    Grid,
    count,
    event_rows,
    job_rows,
    make_settings,
    new_campaign,
    queue_tasks,
    states,
)

pytestmark = pytest.mark.grid(clusters=2)


def _oar_jobs(grid: Grid, index: int = 0) -> dict[int, dict]:
    return {job["id"]: job for job in grid.control(index).jobs()}


def test_array_job_gives_each_job_the_oar_job_of_its_own_parameter(grid: Grid) -> None:
    # "1" is a substring of "12", "112" and of the campaign id prefix: v3 matched by substring
    params = ["112", "12", "1", "21"]
    campaign = new_campaign(grid, params, exec_file="sleep")
    queue_tasks(grid, campaign)
    grid.runner(settings=make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=10)).run(loops=1)
    rows = job_rows(grid.engine, campaign)
    assert [row.state for row in rows] == ["submitted"] * 4
    assert len({row.remote_id for row in rows}) == 4
    oar = _oar_jobs(grid)
    names = {oar[row.remote_id]["name"] for row in rows}
    assert len(names) == 1 and next(iter(names)).startswith(f"cigri.{campaign}.")
    with grid.engine.begin() as conn:
        param_of = {row.id: row.param_id for row in conn.execute(select(jobs.c.id, jobs.c.param_id))}
        text_of = {row.id: row.param for row in conn.execute(select(parameters.c.id, parameters.c.param))}
    for row in rows:
        command = oar[row.remote_id]["command"]
        assert command == f"export CIGRI_CAMPAIGN_ID={campaign};sleep {text_of[param_of[row.id]]}"
        assert "besteffort" in oar[row.remote_id]["types"]


def test_single_parameter_is_submitted_as_a_plain_job(grid: Grid) -> None:
    campaign = new_campaign(grid, ["7"], type="normal")
    queue_tasks(grid, campaign, besteffort=False)
    grid.runner().run(loops=1)
    (row,) = job_rows(grid.engine, campaign)
    oar = _oar_jobs(grid)[row.remote_id]
    assert row.state == "submitted" and row.array_index == 1
    assert oar["command"].endswith(";sleep 7") and "besteffort" not in oar["types"]


def test_one_pass_submits_one_campaign_at_most_its_tap_rate_in_queue_order(grid: Grid) -> None:
    first = new_campaign(grid, [str(i) for i in range(10)])
    second = new_campaign(grid, [str(i) for i in range(10)])
    queue_tasks(grid, first)
    queue_tasks(grid, second)
    grid.runner().run(loops=1)
    assert len(job_rows(grid.engine, first)) == 3  # initial rate
    assert job_rows(grid.engine, second) == []
    assert count(grid.engine, jobs_to_launch) == 17


def test_tap_grows_after_a_pass_that_used_the_whole_rate(grid: Grid) -> None:
    campaign = new_campaign(grid, [str(i) for i in range(40)])
    queue_tasks(grid, campaign)
    runner = grid.runner()
    runner.run(loops=1)
    runner.run(loops=1)
    assert len(job_rows(grid.engine, campaign)) == 3 + 4
    with grid.engine.begin() as conn:
        assert conn.execute(select(taps.c.rate)).scalar_one() == 6


def test_tap_closes_while_jobs_wait_and_the_scan_stops_during_the_grace_period(grid: Grid) -> None:
    campaign = new_campaign(grid, [str(i) for i in range(20)])
    other = new_campaign(grid, [str(i) for i in range(5)])
    queue_tasks(grid, campaign)
    queue_tasks(grid, other)
    runner = grid.runner()
    runner.run(loops=1)
    with grid.engine.begin() as conn:  # what the updater writes when OAR says Waiting
        conn.execute(update(jobs).where(jobs.c.campaign_id == campaign)
                     .values(state=JobState.REMOTE_WAITING.value))
    runner.run(loops=1)
    with grid.engine.begin() as conn:
        tap = conn.execute(select(taps).where(taps.c.campaign_id == campaign)).one()
    assert tap.state == TapState.CLOSED.value
    assert len(job_rows(grid.engine)) == 3  # nothing for `other` either: grace period
    grid.clock.advance(timedelta(seconds=61))
    runner.run(loops=1)
    assert len(job_rows(grid.engine, other)) == 3  # past the grace period, others go through
    with grid.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.campaign_id == campaign)
                     .values(state=JobState.RUNNING.value))
    runner.run(loops=1)
    with grid.engine.begin() as conn:
        assert conn.execute(select(taps.c.state).where(taps.c.campaign_id == campaign)
                            ).scalar_one() == TapState.OPEN.value


def test_existing_to_launch_jobs_go_first_and_nothing_is_taken_that_pass(grid: Grid) -> None:
    campaign = new_campaign(grid, ["1", "2"], prologue="echo hello")
    queue_tasks(grid, campaign)
    with grid.engine.begin() as conn:
        conn.execute(insert(jobs).values(campaign_id=campaign, cluster_id=grid.clusters[0].id,
                                         state="to_launch", tag="prologue",
                                         runner_options='{"besteffort": false}'))
    grid.runner().run(loops=1)
    rows = job_rows(grid.engine, campaign)
    assert [(row.tag, row.state) for row in rows] == [("prologue", "submitted")]
    oar = _oar_jobs(grid)[rows[0].remote_id]
    assert oar["command"] == f"export CIGRI_CAMPAIGN_ID={campaign};echo hello"
    assert "besteffort" not in oar["types"]
    assert count(grid.engine, jobs_to_launch) == 2


def test_taking_skips_tasks_claimed_concurrently(grid: Grid) -> None:
    campaign = new_campaign(grid, [str(i) for i in range(6)])
    queue_tasks(grid, campaign)
    now = grid.clock.now()
    with grid.engine.connect() as first, grid.engine.connect() as second, first.begin():
        sid = record_intent(first, key="a", cluster_id=grid.clusters[0].id,
                            campaign_id=campaign, nb_jobs=0, now=now)
        taken = claim_queued_tasks(first, cluster_id=grid.clusters[0].id,
                                   campaign_id=campaign, limit=4, submission_id=sid, now=now)
        with second.begin():
            sid2 = record_intent(second, key="b", cluster_id=grid.clusters[0].id,
                                 campaign_id=campaign, nb_jobs=0, now=now)
            other = claim_queued_tasks(second, cluster_id=grid.clusters[0].id,
                                       campaign_id=campaign, limit=4, submission_id=sid2,
                                       now=now)
    assert len(taken) == 4 and len(other) == 2
    assert not {item.param_id for item in taken} & {item.param_id for item in other}
    assert count(grid.engine, bag_of_tasks) == 0 and count(grid.engine, jobs_to_launch) == 0


def test_tasks_removed_meanwhile_are_silently_not_taken(grid: Grid) -> None:
    campaign = new_campaign(grid, ["1", "2"])
    queue_tasks(grid, campaign)
    with grid.engine.begin() as conn:  # a cancel removed them
        conn.execute(jobs_to_launch.delete())
    grid.runner().run(loops=1)
    assert job_rows(grid.engine) == [] and count(grid.engine, submissions) == 0


def test_rejected_submission_opens_one_event_per_job_and_blacklists_the_campaign(
        grid: Grid) -> None:
    campaign = new_campaign(grid, ["1", "2", "3"])
    queue_tasks(grid, campaign)
    grid.control(0).fail_next(400)
    grid.runner().run(loops=1)
    assert {row.state for row in job_rows(grid.engine, campaign)} == {"event"}
    assert len(event_rows(grid.engine, "RUNNER_SUBMIT_ERROR")) == 3
    with grid.engine.begin() as conn:
        assert event_store.is_campaign_blacklisted(conn, campaign_id=campaign,
                                                   cluster_id=grid.clusters[0].id)
        assert conn.execute(select(submissions.c.state)).scalar_one() == "failed"


def test_blacklisted_cluster_gets_no_oar_call_and_its_taps_reset(grid: Grid) -> None:
    campaign = new_campaign(grid, [str(i) for i in range(30)])
    queue_tasks(grid, campaign)
    runner = grid.runner()
    runner.run(loops=2)
    with grid.engine.begin() as conn:
        parent = event_store.record_event(conn, class_="cluster", code="CLUSTER_MANUALLY_DISABLED",
                                          cluster_id=grid.clusters[0].id, now=grid.clock.now())
        event_store.record_event(conn, class_="cluster", code="BLACKLIST", parent=parent,
                                 cluster_id=grid.clusters[0].id, now=grid.clock.now())
    before = grid.factory.requests
    submitted = len(job_rows(grid.engine))
    runner.run(loops=3)
    assert grid.factory.requests == before and len(job_rows(grid.engine)) == submitted
    with grid.engine.begin() as conn:
        tap = conn.execute(select(taps)).one()
    assert (tap.state, tap.rate) == ("closed", 3)


def test_clusters_enabled_later_are_picked_up_without_a_restart(grid: Grid,
                                                                 pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        set_cluster_enabled(conn, grid.clusters[1].id, False)
    stop = threading.Event()
    process = RunnerProcess(grid.context(stop=stop), interval=timedelta(seconds=0.05))
    try:
        process.discover()
        assert sorted(r.name for r, _t, _s in process.runners.values()) == ["runner:c1"]
        with pg_engine.begin() as conn:
            set_cluster_enabled(conn, grid.clusters[1].id, True)
            add_cluster(conn, name="c3", api_url=grid.emulator.urls[0], now=grid.clock.now())
            set_cluster_enabled(conn, grid.clusters[0].id, False)
        process.discover()
        assert sorted(r.name for r, _t, _s in process.runners.values()) == [
            "runner:c2", "runner:c3"]
    finally:
        stop.set()
        for _runner, thread, own_stop in process.runners.values():
            own_stop.set()
            thread.join(timeout=10)


def test_test_mode_submits_one_normal_job(grid: Grid) -> None:
    campaign = new_campaign(grid, [str(i) for i in range(5)], test_mode="true")
    queue_tasks(grid, campaign, besteffort=False)
    grid.runner().run(loops=1)
    (row,) = job_rows(grid.engine, campaign)
    assert "besteffort" not in _oar_jobs(grid)[row.remote_id]["types"]


def test_test_mode_submits_normal_jobs_even_when_queued_as_besteffort(grid: Grid) -> None:
    # the meta-scheduler queues a best-effort campaign's test-mode task with besteffort: true
    campaign = new_campaign(grid, [str(i) for i in range(5)], test_mode="true")
    queue_tasks(grid, campaign, besteffort=True)
    grid.runner().run(loops=1)
    (row,) = job_rows(grid.engine, campaign)
    assert "besteffort" not in _oar_jobs(grid)[row.remote_id]["types"]


def _campaign_blacklists(grid: Grid, campaign: int) -> list:
    return [row for row in event_rows(grid.engine, "BLACKLIST") if row.campaign_id == campaign]


def test_a_submission_oar_refuses_with_a_500_goes_to_event_once(grid: Grid) -> None:
    # OAR 2.5.9 answers 500 "Oarsub command exited with status 255" to a bad resource request
    campaign = new_campaign(grid, ["1", "2", "3"], resources="/resource_id=one")
    queue_tasks(grid, campaign)
    runner = grid.runner()
    for _pass in range(3):  # the meta-scheduler would not queue there again, but even if it did
        runner.run(loops=1)
        queue_tasks(grid, campaign)
    assert states(grid.engine, campaign) == {"event": 3}
    assert [row.state for row in event_rows(grid.engine, "RUNNER_SUBMIT_ERROR")] == ["open"] * 3
    assert event_rows(grid.engine, "STUCK_LAUNCHING_JOB") == []
    assert count(grid.engine, bag_of_tasks) == 0 and count(grid.engine, submissions) == 1
    assert len(_campaign_blacklists(grid, campaign)) == 1


def test_submissions_oar_never_answers_stop_after_max_stuck_launches(grid: Grid) -> None:
    campaign = new_campaign(grid, ["1"])
    runner = grid.runner()
    for _attempt in range(MAX_STUCK_LAUNCHES):
        assert queue_tasks(grid, campaign) == 1  # the meta-scheduler queues the bag's task
        grid.control(0).fail_next(503)  # the POST gets no usable answer
        runner.run(loops=1)
        runner.reconcile()  # OAR has no job of that name: back to the bag, or stop
    assert queue_tasks(grid, campaign) == 0  # stopped: nothing left to loop on
    rows = job_rows(grid.engine, campaign)
    assert [row.state for row in rows] == ["event"] * MAX_STUCK_LAUNCHES
    stuck = event_rows(grid.engine, "STUCK_LAUNCHING_JOB")
    assert len(stuck) == MAX_STUCK_LAUNCHES - 1
    (final,) = event_rows(grid.engine, RUNNER_SUBMIT_ERROR)
    assert final.state == "open" and final.job_id == rows[-1].id
    assert count(grid.engine, bag_of_tasks) == 0
    assert len(_campaign_blacklists(grid, campaign)) == 1
    with grid.engine.begin() as conn:
        assert event_store.is_campaign_blacklisted(conn, campaign_id=campaign,
                                                   cluster_id=grid.clusters[0].id)
    # the user fixes it and resubmits the task: it gets its stuck launches afresh
    with grid.engine.begin() as conn:
        event_store.close_event(conn, final.id, now=grid.clock.now())
        conn.execute(insert(bag_of_tasks).values(campaign_id=campaign, param_id=rows[-1].param_id,
                                                 priority=10))
    assert grid.updater().lift_blacklists() == 1
    queue_tasks(grid, campaign)
    grid.control(0).fail_next(503)
    runner.run(loops=1)
    runner.reconcile()
    assert count(grid.engine, bag_of_tasks) == 1
    assert len(event_rows(grid.engine, "STUCK_LAUNCHING_JOB")) == MAX_STUCK_LAUNCHES
    assert len(event_rows(grid.engine, RUNNER_SUBMIT_ERROR)) == 1
