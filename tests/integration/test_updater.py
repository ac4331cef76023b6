"""The updater against real PostgreSQL and the OAR emulator over HTTP: state mapping, failure
analysis and resubmission (Colombo), retry budget, cluster health, campaign completion
(behaviours 15-20, 26, 27, 30)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import Connection, Engine, insert, select, text, update

from cigri.daemons import cluster_runner as runner_daemon
from cigri.daemons import updater as updater_daemon
from cigri.daemons.base import DaemonContext
from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.clock import FakeClock
from cigri.oar.client import OarClient
from cigri.storage import events as event_store
from cigri.storage.incidents import open_campaign_blacklist
from cigri.storage.tables import bag_of_tasks, campaigns, clusters, jobs, tasks_affinity
from cigri.storage.users import set_user_mapping
from tests.integration.engine_helpers import (
    Grid,
    event_rows,
    job_rows,
    make_settings,
    new_campaign,
    queue_tasks,
    start_grid,
    states,
)

pytestmark = pytest.mark.grid(clusters=1, nodes=2, cores=2)


def _submit(grid: Grid, params: list[str], **props: str) -> int:
    campaign = new_campaign(grid, params, **props)
    queue_tasks(grid, campaign)
    grid.runner(settings=make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=50)).run(loops=1)
    return campaign


def _bag(grid: Grid) -> list[tuple[int, int]]:
    with grid.engine.begin() as conn:
        return [(row.param_id, row.priority) for row in conn.execute(
            select(bag_of_tasks).order_by(bag_of_tasks.c.id))]


def test_oar_states_map_to_cigri_states(grid: Grid) -> None:
    # 4 cores: 4 jobs run, 2 wait
    campaign = _submit(grid, [f"{name} sleep 100" for name in "abcdef"], exec_file="run")
    grid.advance(0)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"running": 4, "remote_waiting": 2}
    running = [row for row in job_rows(grid.engine, campaign) if row.state == "running"]
    assert all(row.start_time is not None for row in running)


def test_terminated_jobs_get_stop_time_and_return_code_and_the_campaign_finishes(
        grid: Grid) -> None:
    campaign = _submit(grid, ["1", "2"])
    grid.advance(5)
    updater = grid.updater()
    updater.run(loops=1)
    rows = job_rows(grid.engine, campaign)
    assert [(row.state, row.return_code) for row in rows] == [("terminated", 0)] * 2
    assert all(row.stop_time is not None for row in rows)
    with grid.engine.begin() as conn:
        campaign_row = conn.execute(select(campaigns).where(campaigns.c.id == campaign)).one()
    assert campaign_row.state == "terminated" and campaign_row.completion_time == grid.clock.now()
    (finished,) = event_rows(grid.engine, "FINISHED_CAMPAIGN")
    assert finished.class_ == "notify" and finished.state == "closed"


def test_campaign_with_an_open_job_event_or_tasks_left_does_not_finish(grid: Grid) -> None:
    campaign = _submit(grid, ["1"])
    other = new_campaign(grid, ["1"])  # never queued: a task is left
    grid.advance(5)
    with grid.engine.begin() as conn:
        job_id = conn.execute(select(jobs.c.id)).scalar_one()
        conn.execute(update(jobs).values(state="event"))
        event_store.record_event(conn, class_="job", code="MANUAL_EVENT", job_id=job_id,
                                 campaign_id=campaign, now=grid.clock.now())
    grid.updater().run(loops=1)
    with grid.engine.begin() as conn:
        assert set(conn.execute(select(campaigns.c.state)).scalars()) == {"in_treatment"}
    assert other


def test_besteffort_kill_is_resubmitted_with_priority_20_and_lower_affinity(grid: Grid) -> None:
    campaign = _submit(grid, ["100", "101"])
    grid.advance(1)
    grid.control(0).normal_user(4, 50)
    grid.advance(1)
    grid.updater().run(loops=1)
    rows = job_rows(grid.engine, campaign)
    assert [row.state for row in rows] == ["event", "event"]
    resubmits = event_rows(grid.engine, "RESUBMIT")
    assert len(resubmits) == 2 and all(e.state == "closed" for e in resubmits)
    assert "BESTEFFORT_KILL" in resubmits[0].message
    assert sorted(_bag(grid)) == sorted((row.param_id, 20) for row in rows)
    with grid.engine.begin() as conn:
        assert set(conn.execute(select(tasks_affinity.c.priority)).scalars()) == {-1}
    # the new attempt is a new job row; history is kept
    queue_tasks(grid, campaign)
    grid.runner().run(loops=1)
    assert [row.attempt for row in job_rows(grid.engine, campaign)] == [1, 1, 2, 2]


def test_exit_status_66_resubmits_first_and_67_last(grid: Grid) -> None:
    campaign = _submit(grid, ["1; exit 66", "2; exit 67"])
    grid.advance(5)
    grid.updater().run(loops=1)
    rows = job_rows(grid.engine, campaign)
    assert [row.state for row in rows] == ["event", "event"]
    assert sorted(priority for _param, priority in _bag(grid)) == [0, 20]
    assert {e.code for e in event_rows(grid.engine) if e.class_ == "job"} == {
        "RESUBMIT", "RESUBMIT_END"}


def test_exit_error_opens_an_event_and_blacklists_the_campaign_while_others_keep_running(
        grid: Grid) -> None:
    campaign = _submit(grid, ["1; exit 3", "30"])
    grid.advance(5)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"event": 1, "running": 1}
    (error,) = event_rows(grid.engine, "EXIT_ERROR")
    assert error.state == "open" and "exit status 768" in error.message
    with grid.engine.begin() as conn:
        assert event_store.is_campaign_blacklisted(conn, campaign_id=campaign,
                                                   cluster_id=grid.clusters[0].id)
    assert _bag(grid) == []  # exit errors are not resubmitted automatically
    grid.advance(30)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"event": 1, "terminated": 1}
    with grid.engine.begin() as conn:
        assert conn.execute(select(campaigns.c.state)).scalar_one() == "in_treatment"
        event_store.close_event(conn, error.id, now=grid.clock.now())  # the user fixes it
    grid.updater().run(loops=1)
    with grid.engine.begin() as conn:
        assert not event_store.is_campaign_blacklisted(conn, campaign_id=campaign,
                                                       cluster_id=grid.clusters[0].id)
        assert conn.execute(select(campaigns.c.state)).scalar_one() == "terminated"


def test_walltime_kills_are_resubmitted_until_the_budget_then_too_many_resubmit(
        grid: Grid) -> None:
    campaign = _submit(grid, ["100"], walltime="00:00:10", max_resubmissions="1")
    for _attempt in range(2):
        grid.advance(15)
        grid.updater().run(loops=1)
        queue_tasks(grid, campaign)
        grid.runner().run(loops=1)
    rows = job_rows(grid.engine, campaign)
    assert [row.state for row in rows] == ["event", "event"]
    assert len(event_rows(grid.engine, "WALLTIME_WARNING")) == 1
    (too_many,) = event_rows(grid.engine, "TOO_MANY_RESUBMIT")
    assert too_many.state == "open" and too_many.job_id == rows[1].id
    assert _bag(grid) == []
    with grid.engine.begin() as conn:  # walltime lowers the affinity by 2 each time
        assert conn.execute(select(tasks_affinity.c.priority)).scalar_one() == -4


def test_a_job_oar_fails_to_launch_is_resubmitted_until_the_budget(grid: Grid) -> None:
    """Real OAR 2.5.9 sometimes switches a job into Error at launch with no other event (seen when
    a normal job takes the cores of a best-effort job being launched): v3 called that an
    UNKNOWN_ERROR and blacklisted the campaign, which then waited for a user. It is resubmitted,
    budgeted, so a cluster that never launches anything ends in TOO_MANY_RESUBMIT, not a loop."""
    grid.control(0).fail_next_launches(1)
    campaign = _submit(grid, ["1"], max_resubmissions="1")
    grid.advance(1)
    grid.updater().run(loops=1)
    (launch,) = event_rows(grid.engine, "LAUNCH_ERROR")
    (resubmit,) = event_rows(grid.engine, "RESUBMIT")
    assert "LAUNCH_ERROR" in resubmit.message and launch.state == "closed"
    assert event_rows(grid.engine, "UNKNOWN_ERROR") == [] and event_rows(grid.engine, "BLACKLIST") == []
    queue_tasks(grid, campaign)
    grid.runner().run(loops=1)
    grid.advance(5)
    grid.updater().run(loops=1)
    assert [row.state for row in job_rows(grid.engine, campaign)] == ["event", "terminated"]
    with grid.engine.begin() as conn:
        assert conn.execute(select(campaigns.c.state)).scalar_one() == "terminated"

    grid.control(0).fail_next_launches(2)
    again = _submit(grid, ["2"], max_resubmissions="1")
    for _attempt in range(2):
        grid.advance(1)
        grid.updater().run(loops=1)
        queue_tasks(grid, again)
        grid.runner().run(loops=1)
    assert [row.state for row in job_rows(grid.engine, again)] == ["event", "event"]
    (too_many,) = event_rows(grid.engine, "TOO_MANY_RESUBMIT")
    assert too_many.state == "open" and "1 budgeted failures already" in too_many.message


def test_prologue_jobs_are_never_resubmitted(grid: Grid) -> None:
    campaign = new_campaign(grid, ["1"], prologue="sleep 100")
    with grid.engine.begin() as conn:
        conn.execute(insert(jobs).values(campaign_id=campaign, cluster_id=grid.clusters[0].id,
                                         state="to_launch", tag="prologue"))
    grid.runner().run(loops=1)
    grid.advance(1)
    grid.control(0).normal_user(4, 50)  # prologues are normal jobs: not preempted...
    grid.advance(1)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"running": 1}
    with grid.engine.begin() as conn:  # ...but if OAR frags one, it is not resubmitted
        remote = conn.execute(select(jobs.c.remote_id)).scalar_one()
    from cigri.oar.client import OarClient
    OarClient(grid.emulator.urls[0]).delete_job(remote, user="testuser")
    grid.advance(1)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"event": 1}
    assert [priority for _param, priority in _bag(grid)] == [10]  # only the campaign's own task


def test_connection_errors_blacklist_the_cluster_until_autofix_probes_it(grid: Grid) -> None:
    _submit(grid, ["100"])
    grid.control(0).outage(0.5)
    time.sleep(0.1)
    updater = grid.updater()
    updater.run(loops=1)
    (refused,) = event_rows(grid.engine, "CONNECTION_REFUSED")
    with grid.engine.begin() as conn:
        assert event_store.is_cluster_blacklisted(conn, grid.clusters[0].id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not grid.emulator.controls[0].server.up:
        time.sleep(0.05)
    updater.run(loops=1)  # before AUTOFIX_DELAY: stays
    with grid.engine.begin() as conn:
        assert event_store.is_cluster_blacklisted(conn, grid.clusters[0].id)
    grid.clock.advance(timedelta(seconds=31))
    updater.run(loops=1)
    with grid.engine.begin() as conn:
        assert not event_store.is_cluster_blacklisted(conn, grid.clusters[0].id)
        assert event_store.get_event(conn, refused.id).state == "closed"


def test_stress_opens_one_under_stress_event_and_closes_it(grid: Grid) -> None:
    updater = grid.updater(settings=make_settings(STRESS_FACTOR=0.8))
    grid.control(0).set_stress(1.5)
    updater.run(loops=2)
    (stress,) = event_rows(grid.engine, "UNDER_STRESS")
    with grid.engine.begin() as conn:
        assert conn.execute(select(clusters.c.stress_factor)).scalar_one() == 1.5
    grid.control(0).set_stress(0.1)
    updater.run(loops=1)
    assert event_rows(grid.engine, "UNDER_STRESS")[0].state == "open"  # read every 10 s only
    grid.clock.advance(timedelta(seconds=10))
    updater.run(loops=1)
    (stress,) = event_rows(grid.engine, "UNDER_STRESS")
    assert stress.state == "closed"


def test_polling_sends_one_request_per_chunk_of_ids(grid: Grid) -> None:
    with grid.engine.begin() as conn:
        conn.execute(update(clusters).values(api_chunk_size=10))
    grid.clusters[0] = type(grid.clusters[0])(**{**vars(grid.clusters[0]), "api_chunk_size": 10})
    _submit(grid, [f"p{i} sleep 100" for i in range(25)], exec_file="run")
    updater = grid.updater(settings=make_settings(STRESS_FACTOR=0))
    updater.run(loops=1)
    client = grid.factory.clients[-1]
    before = client.request_count
    updater.poll_cluster(grid.clusters[0])
    assert client.request_count - before == 3


def test_exit_error_message_carries_the_stderr_tail(pg_engine: Engine, clock: FakeClock) -> None:
    emulator_grid = start_grid(pg_engine, clock, clusters=1)
    try:
        emulator_grid.emulator.stop()
        from cigri.emulator import run_in_thread

        emulator_grid.emulator = run_in_thread(allow_root_jobs=True, clusters=1, mode="execute")
        with pg_engine.begin() as conn:
            conn.execute(update(clusters).values(api_url=emulator_grid.emulator.urls[0]))
        emulator_grid.clusters[0] = type(emulator_grid.clusters[0])(
            **{**vars(emulator_grid.clusters[0]), "api_url": emulator_grid.emulator.urls[0]})
        settings = make_settings(STDERR_TAIL=2)
        campaign = new_campaign(
            emulator_grid, ["p1"],
            exec_file="sh -c 'echo line1 >&2; echo line2 >&2; echo boom >&2; exit 3'")
        queue_tasks(emulator_grid, campaign)
        emulator_grid.runner().run(loops=1)
        updater = emulator_grid.updater(settings=settings)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not event_rows(pg_engine, "EXIT_ERROR"):
            updater.run(loops=1)
            time.sleep(0.2)
        (error,) = event_rows(pg_engine, "EXIT_ERROR")
        assert "exit status 768" in error.message
        assert error.message.rstrip().endswith("line2\nboom") and "line1" not in error.message
    finally:
        emulator_grid.emulator.stop()


def test_jobs_on_a_disabled_cluster_are_still_followed_to_their_end(grid: Grid) -> None:
    campaign = _submit(grid, ["1", "2"])
    with grid.engine.begin() as conn:
        conn.execute(update(clusters).values(enabled=False))
    grid.advance(5)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"terminated": 2}


def test_a_job_oar_does_not_know_is_reported_lost_not_resubmitted(grid: Grid) -> None:
    campaign = _submit(grid, ["1", "2"])
    with grid.engine.begin() as conn:
        lost = conn.execute(select(jobs.c.id).order_by(jobs.c.id)).scalars().first()
        conn.execute(update(jobs).where(jobs.c.id == lost).values(remote_id=999_999))
    grid.advance(5)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"event": 1, "terminated": 1}
    (event,) = event_rows(grid.engine, "RUNNER_GET_JOB_UNKNOWN_ERROR")
    assert event.job_id == lost and event.state == "open"
    assert _bag(grid) == []
    with grid.engine.begin() as conn:
        assert event_store.is_campaign_blacklisted(conn, campaign_id=campaign,
                                                   cluster_id=grid.clusters[0].id)


def test_a_remote_id_now_used_by_someone_else_is_not_taken_for_our_job(grid: Grid) -> None:
    campaign = _submit(grid, ["100"])
    grid.control(0).normal_user(1, 500)  # another user's job, as after an OAR reset
    other = next(job["id"] for job in grid.control(0).jobs() if job["name"] == "normal_user")
    with grid.engine.begin() as conn:
        conn.execute(update(jobs).values(remote_id=other))
    grid.advance(1)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"event": 1}
    assert len(event_rows(grid.engine, "RUNNER_GET_JOB_UNKNOWN_ERROR")) == 1


def _campaign_state(grid: Grid, campaign: int) -> str:
    with grid.engine.begin() as conn:
        return str(conn.execute(select(campaigns.c.state)
                                .where(campaigns.c.id == campaign)).scalar_one())


def test_a_campaign_with_an_epilogue_finishes_only_once_its_epilogue_ran(grid: Grid) -> None:
    campaign = _submit(grid, ["1", "2"], epilogue="echo bye")
    grid.advance(5)
    grid.updater().run(loops=1)  # the pass that sees the last task finish
    assert states(grid.engine, campaign) == {"terminated": 2}
    assert _campaign_state(grid, campaign) == "in_treatment"
    assert event_rows(grid.engine, "FINISHED_CAMPAIGN") == []
    MetaScheduler(engine=grid.engine, settings=grid.settings, clock=grid.clock, stop=grid.stop,
                  interval=timedelta(0), owner="test-metascheduler").run(loops=1)
    (epilogue,) = [row for row in job_rows(grid.engine, campaign) if row.tag == "epilogue"]
    assert epilogue.state == "to_launch" and epilogue.param_id is None
    grid.runner().run(loops=1)
    grid.updater().run(loops=1)
    assert _campaign_state(grid, campaign) == "in_treatment"  # the epilogue is running
    grid.advance(15)
    grid.updater().run(loops=1)
    assert states(grid.engine, campaign) == {"terminated": 3}
    assert _campaign_state(grid, campaign) == "terminated"
    assert len(event_rows(grid.engine, "FINISHED_CAMPAIGN")) == 1


def test_one_campaign_blacklist_per_cluster_lifted_once_no_failure_is_open(grid: Grid) -> None:
    campaign = _submit(grid, ["1; exit 3", "2; exit 3", "3; exit 3", "30"])
    grid.advance(5)
    updater = grid.updater()
    updater.run(loops=1)
    errors = event_rows(grid.engine, "EXIT_ERROR")
    assert len(errors) == 3
    (blacklist,) = event_rows(grid.engine, "BLACKLIST")
    assert (blacklist.class_, blacklist.campaign_id, blacklist.state) == (
        "campaign", campaign, "open")

    def blacklisted() -> bool:
        with grid.engine.begin() as conn:
            return event_store.is_campaign_blacklisted(conn, campaign_id=campaign,
                                                       cluster_id=grid.clusters[0].id)

    for error in errors[:-1]:  # the user fixes the failures one by one, the blacklist's own first
        with grid.engine.begin() as conn:
            event_store.close_event(conn, error.id, now=grid.clock.now())
        updater.run(loops=1)
        assert blacklisted()
    with grid.engine.begin() as conn:
        event_store.close_event(conn, errors[-1].id, now=grid.clock.now())
    updater.run(loops=1)
    assert not blacklisted()
    assert len(event_rows(grid.engine, "BLACKLIST")) == 1


def test_runner_and_updater_processes_get_their_oar_clients_from_the_composition_root(
        grid: Grid) -> None:
    # cigri.app.build_oar_factory reads users_mapping: the mapped login of `oar` is the identity
    # of bulk calls (the old runner.default_oar_factory always used "oar")
    with grid.engine.begin() as conn:
        set_user_mapping(conn, grid_login="oar", cluster_login="oaradmin",
                         cluster_id=grid.clusters[0].id)
    context = DaemonContext.for_process(grid.settings, grid.engine, clock=grid.clock,
                                        stop=grid.stop)
    runner_client = runner_daemon.ClusterRunner(context, cluster=grid.clusters[0]).oar
    updater_client = updater_daemon.Updater(context).oar(grid.clusters[0])
    assert isinstance(runner_client, OarClient) and isinstance(updater_client, OarClient)
    assert runner_client.admin_user == updater_client.admin_user == "oaradmin"


def test_concurrent_failures_of_one_pair_open_a_single_blacklist(grid: Grid) -> None:
    campaign = new_campaign(grid, ["1"])
    cluster_id = grid.clusters[0].id

    def failure(conn: Connection) -> int:
        return event_store.record_event(conn, class_="job", code="EXIT_ERROR",
                                        campaign_id=campaign, cluster_id=cluster_id,
                                        now=grid.clock.now())

    opened: list[int | None] = []
    with grid.engine.connect() as first, grid.engine.connect() as second:
        transaction = first.begin()
        opened.append(open_campaign_blacklist(first, failure_id=failure(first),
                                              now=grid.clock.now()))

        def other() -> None:
            with second.begin():
                opened.append(open_campaign_blacklist(second, failure_id=failure(second),
                                                      now=grid.clock.now()))

        thread = threading.Thread(target=other)
        thread.start()
        deadline = time.monotonic() + 60
        with grid.engine.connect() as probe:  # the second waits for the pair's lock
            while not probe.execute(text("SELECT count(*) FROM pg_locks WHERE "
                                         "locktype = 'advisory' AND NOT granted")).scalar_one():
                assert time.monotonic() < deadline and thread.is_alive()
                time.sleep(0.02)
        transaction.commit()
        thread.join(timeout=60)
    assert opened[0] is not None and opened[1:] == [None]
    assert len(event_rows(grid.engine, "BLACKLIST")) == 1
