"""Nikita on a real database and the OAR emulator over HTTP: v3 behaviours 24 and 25 (adapted:
every remote job is deleted), single-job cancels, overdue walltimes of any length, kill failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update

from cigri.config import build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.nikita import Nikita
from cigri.domain.clock import FakeClock
from cigri.domain.clusters import Cluster
from cigri.domain.kills import parse_walltime
from cigri.domain.oar import OarApi, SubmitRequest
from cigri.domain.states import EventClass, JobState
from cigri.emulator import Emulator, ManualClock, Workload, run_in_thread
from cigri.oar.client import client_for_cluster
from cigri.oar.http import RetryPolicy
from cigri.storage.actions import cancel_campaign, cancel_job
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.events import record_event
from cigri.storage.tables import bag_of_tasks, events, jobs, jobs_to_launch, tasks_affinity

USER = "testuser"


@dataclass
class Grid:
    engine: Engine
    clock: FakeClock
    emulator: Emulator
    emu_clock: ManualClock
    clusters: list[Cluster]
    clients: list[Any]

    def oar(self, cluster: Cluster) -> OarApi:
        client = client_for_cluster(cluster, timeout_seconds=5.0,
                                    retry=RetryPolicy(attempts=1, backoff_seconds=0.0))
        self.clients.append(client)
        return client

    def nikita(self, **settings: Any) -> Nikita:
        values: dict[str, Any] = {"REMOTE_WAITING_TIMEOUT": 900}
        values.update(settings)
        context = DaemonContext(settings=build_settings(values), engine=self.engine,
                                clock=self.clock, stop=threading.Event(), oar_factory=self.oar)
        return Nikita(context, interval=timedelta(0))

    def submit(self, index: int, count: int, *, besteffort: bool = False) -> list[int]:
        """OAR jobs of `count` array elements, submitted as cigri's runner would."""
        client = self.oar(self.clusters[index])
        answer = client.submit(SubmitRequest(
            command="work", resources="/resource_id=1", walltime="01:00:00",
            params=[f"{i}" for i in range(count)], name="cigri.test",
            types=["besteffort"] if besteffort else []), user=USER)
        return list(answer.job_ids)

    def oar_state(self, index: int, remote_id: int) -> str:
        return next(j["state"] for j in self.emulator.controls[index].jobs()
                    if j["id"] == remote_id)

    def advance(self, seconds: float) -> None:
        self.emu_clock.advance(seconds)
        for control in self.emulator.controls:
            control.cluster.pump()
        self.clock.advance(timedelta(seconds=seconds))


@pytest.fixture
def grid(engine: Engine, clock: FakeClock) -> Iterator[Grid]:
    emu_clock = ManualClock()
    emulator = run_in_thread(allow_root_jobs=True,
                             clusters=2, nodes=2, cores=2, mode="simulate", clock=emu_clock,
                             workload=Workload(duration="fixed:100000"))
    try:
        with engine.begin() as conn:
            clusters = [add_cluster(conn, name=f"c{i}", api_url=url, now=clock.now())
                        for i, url in enumerate(emulator.urls)]
        yield Grid(engine=engine, clock=clock, emulator=emulator, emu_clock=emu_clock,
                   clusters=clusters, clients=[])
    finally:
        emulator.stop()


def _campaign(grid: Grid, tasks: int, **props: str) -> int:
    properties = {"exec_file": "sleep", "type": "best-effort", "resources": "/resource_id=1",
                  "walltime": "01:00:00"}
    properties.update(props)
    with grid.engine.begin() as conn:
        return create_campaign(conn, grid_user=USER, name="t", jobs_type="normal", jdl={},
                               properties={c.id: properties for c in grid.clusters},
                               params=[f"p{i} {i}" for i in range(tasks)],
                               now=grid.clock.now())


def _take(grid: Grid, campaign_id: int, cluster: int, remote_ids: list[int | None], *,
          state: JobState = JobState.RUNNING) -> list[int]:
    """What the runner does: turn tasks into jobs with their OAR ids."""
    with grid.engine.begin() as conn:
        tasks = conn.execute(select(bag_of_tasks).where(bag_of_tasks.c.campaign_id == campaign_id)
                             .order_by(bag_of_tasks.c.id).limit(len(remote_ids))).all()
        ids = []
        for task, remote_id in zip(tasks, remote_ids, strict=True):
            ids.append(conn.execute(insert(jobs).values(
                campaign_id=campaign_id, param_id=task.param_id,
                cluster_id=grid.clusters[cluster].id, state=state.value, remote_id=remote_id,
                submission_time=grid.clock.now(), start_time=grid.clock.now())
                .returning(jobs.c.id)).scalar_one())
            conn.execute(bag_of_tasks.delete().where(bag_of_tasks.c.id == task.id))
        return ids


def _job_states(grid: Grid, campaign_id: int) -> dict[int, str]:
    with grid.engine.begin() as conn:
        return {r.id: r.state for r in conn.execute(
            select(jobs.c.id, jobs.c.state).where(jobs.c.campaign_id == campaign_id))}


def _events(grid: Grid, code: str) -> list[Any]:
    with grid.engine.begin() as conn:
        return conn.execute(select(events).where(events.c.code == code)
                            .order_by(events.c.id)).all()


def test_cancelled_campaign_has_every_remote_job_deleted_and_user_frag_closed(
        grid: Grid) -> None:
    campaign = _campaign(grid, 12)
    on_c0 = grid.submit(0, 4)
    on_c1 = grid.submit(1, 3)
    grid.advance(1)
    running = _take(grid, campaign, 0, list(on_c0)) + _take(grid, campaign, 1, list(on_c1))
    unlaunched = _take(grid, campaign, 0, [None, None], state=JobState.TO_LAUNCH)
    with grid.engine.begin() as conn:
        cancel_campaign(conn, campaign, now=grid.clock.now())
    grid.nikita().run(loops=1)
    grid.advance(1)
    # Every OAR job, several per cluster, is gone (v3 deleted only the first per cluster).
    assert {grid.oar_state(0, r) for r in on_c0} == {"Error"}
    assert {grid.oar_state(1, r) for r in on_c1} == {"Error"}
    states = _job_states(grid, campaign)
    assert {states[j] for j in running} == {JobState.EVENT}
    assert not set(unlaunched) & set(states)  # to_launch jobs deleted
    with grid.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(bag_of_tasks)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(jobs_to_launch)).scalar() == 0
    (frag,) = [e for e in _events(grid, "USER_FRAG") if e.class_ == EventClass.CAMPAIGN]
    assert frag.state == "closed"
    pending = [e for e in _events(grid, "USER_FRAG") if e.class_ == EventClass.JOB]
    assert len(pending) == len(running) and {e.state for e in pending} == {"closed"}


def test_a_failed_kill_keeps_user_frag_open_and_is_retried(grid: Grid) -> None:
    campaign = _campaign(grid, 3)
    remote = grid.submit(0, 2)
    grid.advance(1)
    _take(grid, campaign, 0, list(remote))
    with grid.engine.begin() as conn:
        cancel_campaign(conn, campaign, now=grid.clock.now())
    grid.emulator.controls[0].fail_next(503, count=1000)
    nikita = grid.nikita()
    nikita.run(loops=1)
    problems = _events(grid, "NIKITA_KILL_PROBLEM")
    assert problems and problems[0].class_ == EventClass.NOTIFY
    (frag,) = [e for e in _events(grid, "USER_FRAG") if e.class_ == EventClass.CAMPAIGN]
    assert frag.state == "open"
    grid.emulator.controls[0].faults.pending.clear()  # the cluster answers again
    nikita.run(loops=3)
    grid.advance(1)
    assert {grid.oar_state(0, r) for r in remote} == {"Error"}
    (frag,) = [e for e in _events(grid, "USER_FRAG") if e.class_ == EventClass.CAMPAIGN]
    assert frag.state == "closed"


def test_single_job_cancel_kills_only_that_job(grid: Grid) -> None:
    campaign = _campaign(grid, 3)
    remote = grid.submit(0, 2)
    grid.advance(1)
    victim, survivor = _take(grid, campaign, 0, list(remote))
    with grid.engine.begin() as conn:
        event_id = cancel_job(conn, victim, now=grid.clock.now())
    grid.nikita().run(loops=1)
    grid.advance(1)
    assert grid.oar_state(0, remote[0]) == "Error"
    assert grid.oar_state(0, remote[1]) == "Running"
    states = _job_states(grid, campaign)
    assert (states[victim], states[survivor]) == (JobState.EVENT, JobState.RUNNING)
    with grid.engine.begin() as conn:
        assert conn.execute(select(events.c.state).where(events.c.id == event_id)).scalar() \
            == "closed"


def test_job_remote_waiting_too_long_is_deleted_and_queue_rows_expire(grid: Grid) -> None:
    campaign = _campaign(grid, 5)
    waiting = grid.submit(0, 1)
    (job,) = _take(grid, campaign, 0, list(waiting), state=JobState.REMOTE_WAITING)
    with grid.engine.begin() as conn:
        param = conn.execute(select(jobs.c.param_id).where(jobs.c.id == job)).scalar_one()
        tasks = conn.execute(select(bag_of_tasks.c.id, bag_of_tasks.c.param_id)).all()
        conn.execute(insert(jobs_to_launch), [
            {"task_id": t.id, "cluster_id": grid.clusters[1].id, "queuing_date": grid.clock.now(),
             "order_num": 1, "runner_options": "{}"} for t in tasks])
    nikita = grid.nikita()
    grid.advance(899)
    nikita.run(loops=1)
    assert _events(grid, "REMOTE_WAITING_FRAG") == [] and _events(grid, "QUEUED_FOR_TOO_LONG") == []
    grid.advance(2)
    nikita.run(loops=2)
    grid.advance(1)
    assert grid.oar_state(0, waiting[0]) == "Error"
    (frag,) = _events(grid, "REMOTE_WAITING_FRAG")
    assert (frag.job_id, frag.state) == (job, "closed")
    (expired,) = _events(grid, "QUEUED_FOR_TOO_LONG")
    assert expired.class_ == EventClass.LOG and "4" in expired.message
    assert _job_states(grid, campaign)[job] == JobState.REMOTE_WAITING  # the updater resubmits
    with grid.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(jobs_to_launch)).scalar() == 0
        affinity = dict(conn.execute(select(tasks_affinity.c.param_id, tasks_affinity.c.priority)
                                     ).all())
    assert affinity[param] == -1
    assert all(affinity[t.param_id] == -1 for t in tasks)


@pytest.mark.parametrize("walltime", ["00:10:00", "23:45:00", "47:00:00"])
def test_overdue_walltime_of_any_length_is_killed(grid: Grid, walltime: str) -> None:
    campaign = _campaign(grid, 2, walltime=walltime)
    remote = grid.submit(0, 1)
    grid.advance(1)
    (job,) = _take(grid, campaign, 0, list(remote))
    limit = parse_walltime(walltime)
    assert limit is not None
    nikita = grid.nikita()
    grid.advance((limit + timedelta(minutes=29)).total_seconds())
    nikita.run(loops=1)
    assert _events(grid, "CIGRI_WALLTIME") == []
    grid.advance(120)
    nikita.run(loops=2)
    (killed,) = _events(grid, "CIGRI_WALLTIME")
    assert (killed.job_id, killed.class_) == (job, EventClass.NOTIFY)
    grid.advance(1)
    assert grid.oar_state(0, remote[0]) == "Error"


def test_no_walltime_kill_on_a_blacklisted_cluster(grid: Grid) -> None:
    campaign = _campaign(grid, 2, walltime="00:10:00")
    remote = grid.submit(0, 1)
    grid.advance(1)
    _take(grid, campaign, 0, list(remote))
    with grid.engine.begin() as conn:
        record_event(conn, class_=EventClass.CLUSTER, code="BLACKLIST",
                     cluster_id=grid.clusters[0].id, now=grid.clock.now())
    grid.advance(3600)
    grid.nikita().run(loops=1)
    assert _events(grid, "CIGRI_WALLTIME") == []


def test_affinity_cleanup_runs_at_most_hourly(grid: Grid) -> None:
    campaign = _campaign(grid, 2)
    with grid.engine.begin() as conn:
        params = conn.execute(select(bag_of_tasks.c.param_id)).scalars().all()
        conn.execute(insert(tasks_affinity), [{"param_id": p, "cluster_id": grid.clusters[0].id,
                                               "priority": -1} for p in params])
        cancel_campaign(conn, campaign, now=grid.clock.now())
    nikita = grid.nikita()
    nikita.run(loops=1)
    with grid.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(tasks_affinity)).scalar() == 0
    nikita.run(loops=1)
    grid.advance(3601)
    nikita.run(loops=1)
    assert len(_events(grid, "NIKITA_CLEAN_AFFINITY")) == 2


def test_launching_job_delays_the_end_of_a_cancellation(grid: Grid) -> None:
    campaign = _campaign(grid, 2)
    (job,) = _take(grid, campaign, 0, [None], state=JobState.LAUNCHING)
    with grid.engine.begin() as conn:
        cancel_campaign(conn, campaign, now=grid.clock.now())
    nikita = grid.nikita()
    nikita.run(loops=1)
    (frag,) = [e for e in _events(grid, "USER_FRAG") if e.class_ == EventClass.CAMPAIGN]
    assert frag.state == "open"
    remote = grid.submit(0, 1)  # the runner finished its submission
    with grid.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job)
                     .values(state=JobState.SUBMITTED.value, remote_id=remote[0]))
    nikita.run(loops=1)
    grid.advance(1)
    assert grid.oar_state(0, remote[0]) == "Error"
    (frag,) = [e for e in _events(grid, "USER_FRAG") if e.class_ == EventClass.CAMPAIGN]
    assert frag.state == "closed"


def test_nikita_killed_between_marking_and_deleting_leaves_nothing_stuck(grid: Grid) -> None:
    campaign = _campaign(grid, 4)
    remote = grid.submit(0, 3)
    grid.advance(1)
    _take(grid, campaign, 0, list(remote))
    with grid.engine.begin() as conn:
        cancel_campaign(conn, campaign, now=grid.clock.now())
    crashed = grid.nikita()
    assert crashed._take_lease()
    crashed._cancel_campaigns()  # marked and committed, then SIGKILL before any OAR call
    assert {grid.oar_state(0, r) for r in remote} == {"Running"}
    successor = grid.nikita()
    successor.run(loops=1)
    assert not successor.has_lease  # the dead instance's lease still runs
    grid.advance(61)
    successor.run(loops=1)
    grid.advance(1)
    assert {grid.oar_state(0, r) for r in remote} == {"Error"}
    assert {e.state for e in _events(grid, "USER_FRAG")} == {"closed"}


def test_each_distinct_remote_job_is_deleted_once(grid: Grid) -> None:
    campaign = _campaign(grid, 5)
    batch, single = grid.submit(0, 1)[0], grid.submit(0, 1)[0]
    grid.advance(1)
    # Temporal grouping: three cigri jobs run inside one OAR job.
    jobs_ = _take(grid, campaign, 0, [batch, batch, batch, single])
    with grid.engine.begin() as conn:
        cancel_campaign(conn, campaign, now=grid.clock.now())
    before = len(grid.clients)
    grid.nikita().run(loops=1)
    nikita_clients = grid.clients[before:]
    assert sum(client.request_count for client in nikita_clients) == 2
    grid.advance(1)
    assert (grid.oar_state(0, batch), grid.oar_state(0, single)) == ("Error", "Error")
    assert set(_job_states(grid, campaign).values()) == {JobState.EVENT}
    assert len(jobs_) == 4


def test_a_cancelled_campaign_array_goes_with_one_delete(grid: Grid) -> None:
    from cigri.storage.tables import submissions

    campaign = _campaign(grid, 6)
    client = grid.oar(grid.clusters[0])
    answer = client.submit(SubmitRequest(command="work", resources="/resource_id=1",
                                         walltime="01:00:00", params=["1", "2", "3", "4"],
                                         name="cigri.arr", types=["besteffort"]), user=USER)
    grid.advance(1)
    job_ids = _take(grid, campaign, 0, list(answer.job_ids))
    with grid.engine.begin() as conn:
        submission = conn.execute(insert(submissions).values(
            key="k1", cluster_id=grid.clusters[0].id, campaign_id=campaign, state="submitted",
            nb_jobs=4, remote_array_id=answer.array_id, created_at=grid.clock.now())
            .returning(submissions.c.id)).scalar_one()
        conn.execute(update(jobs).where(jobs.c.id.in_(job_ids))
                     .values(submission_id=submission))
        cancel_campaign(conn, campaign, now=grid.clock.now())
    before = len(grid.clients)
    grid.nikita().run(loops=1)
    assert sum(c.request_count for c in grid.clients[before:]) == 1
    grid.advance(1)
    assert {grid.oar_state(0, r) for r in answer.job_ids} == {"Error"}
    assert {e.state for e in _events(grid, "USER_FRAG")} == {"closed"}


def test_a_pass_with_nothing_to_cancel_kill_or_expire_says_it_was_idle(grid: Grid) -> None:
    """run_once returns False only when there was nothing to do: the daemon frame then stretches
    its wait (DAEMON_IDLE_FACTOR); a cancellation makes the pass busy again."""
    nikita = grid.nikita()
    assert nikita.run_once() is False
    campaign = _campaign(grid, 2)
    running = _take(grid, campaign, 0, list(grid.submit(0, 2)))
    assert nikita.run_once() is False  # running jobs within their walltime: nothing to do
    with grid.engine.begin() as conn:
        cancel_campaign(conn, campaign, now=grid.clock.now())
    assert nikita.run_once() is True
    assert set(_job_states(grid, campaign)) == set(running)
