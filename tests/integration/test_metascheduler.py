"""The meta-scheduler on a real database: v3 behaviours 4-8 (`cigri-v3-server.md` §8), the fixes
(campaign blacklists, disabled clusters), the fair-share policy and concurrency."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update

from cigri.config import build_settings
from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.clock import FakeClock
from cigri.domain.states import CampaignState, EventClass, JobState
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster, set_cluster_enabled, set_cluster_stress_factor
from cigri.storage.events import record_event
from cigri.storage.tables import (
    bag_of_tasks,
    campaigns,
    jobs,
    jobs_to_launch,
    taps,
    tasks_affinity,
    users_priority,
)


def _settings(**overrides: Any) -> Any:
    values: dict[str, Any] = {"RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS": 3, "STRESS_FACTOR": 0.8}
    values.update(overrides)
    return build_settings(values)


def _scheduler(engine: Engine, clock: FakeClock, **settings: Any) -> MetaScheduler:
    return MetaScheduler(engine=engine, settings=_settings(**settings), clock=clock,
                         stop=threading.Event(), interval=timedelta(0))


def _clusters(engine: Engine, clock: FakeClock, count: int = 1) -> list[int]:
    with engine.begin() as conn:
        return [add_cluster(conn, name=f"c{i}", api_url=f"http://127.0.0.1:9/c{i}/",
                            now=clock.now()).id for i in range(count)]


def _campaign(engine: Engine, clock: FakeClock, clusters: Sequence[int], tasks: int, *,
              user: str = "alice", **props: str) -> int:
    properties: dict[str, str] = {"exec_file": "true", "type": "best-effort",
                                  "resources": "/resource_id=1", "walltime": "00:10:00"}
    properties.update(props)
    with engine.begin() as conn:
        return create_campaign(conn, grid_user=user, name="t", jobs_type="normal", jdl={},
                               properties={c: properties for c in clusters},
                               params=[f"p{i} {i}" for i in range(tasks)], now=clock.now())


def _queue(engine: Engine) -> list[Any]:
    with engine.begin() as conn:
        return list(conn.execute(
            select(jobs_to_launch, bag_of_tasks.c.campaign_id, bag_of_tasks.c.param_id)
            .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
            .order_by(jobs_to_launch.c.id)))


def _per_couple(rows: Sequence[Any]) -> Mapping[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for row in rows:
        key = (row.campaign_id, row.cluster_id)
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_queue_rows_are_unique_per_task_and_carry_date_order_and_options(
        engine: Engine, clock: FakeClock) -> None:
    c1, c2 = _clusters(engine, clock, 2)
    campaign = _campaign(engine, clock, [c1, c2], 50)
    _scheduler(engine, clock).run(loops=2)
    rows = _queue(engine)
    assert rows and len({r.task_id for r in rows}) == len(rows)
    for row in rows:
        options = json.loads(row.runner_options)
        assert options["besteffort"] is True and isinstance(options["batch_id"], int)
        assert row.queuing_date == clock.now() and row.order_num >= 1
        assert row.campaign_id == campaign
    # Both clusters got work: tasks are spread, each on exactly one cluster.
    assert set(_per_couple(rows)) == {(campaign, c1), (campaign, c2)}


def test_a_couple_never_exceeds_max_jobs_nor_ten_times_the_tap_rate(
        engine: Engine, clock: FakeClock) -> None:
    (c1,) = _clusters(engine, clock)
    capped = _campaign(engine, clock, [c1], 100, max_jobs="7")
    tapped = _campaign(engine, clock, [c1], 100)
    test_mode = _campaign(engine, clock, [c1], 10, test_mode="true")
    with engine.begin() as conn:  # two jobs of `capped` already run there
        params = conn.execute(select(bag_of_tasks.c.param_id).where(
            bag_of_tasks.c.campaign_id == capped).limit(2)).scalars().all()
        conn.execute(insert(jobs), [{"campaign_id": capped, "cluster_id": c1, "param_id": p,
                                     "state": JobState.RUNNING.value} for p in params])
    scheduler = _scheduler(engine, clock)
    scheduler.run(loops=1)
    counts = _per_couple(_queue(engine))
    assert counts[(capped, c1)] == 5  # 7 - 2 active
    assert counts[(tapped, c1)] == 30  # 10 x initial tap rate 3
    assert counts[(test_mode, c1)] == 1  # test mode forces max_jobs = 1
    with engine.begin() as conn:
        conn.execute(update(taps).where(taps.c.campaign_id == tapped).values(rate=4))
    scheduler.run(loops=1)
    counts = _per_couple(_queue(engine))
    assert counts[(tapped, c1)] == 40 and counts[(capped, c1)] == 5


@pytest.mark.parametrize("policy", ["fifo", "fair_share"])
def test_order_is_test_first_then_user_priority_then_age_then_task_priority_and_affinity(
        engine: Engine, clock: FakeClock, policy: str) -> None:
    (c1,) = _clusters(engine, clock)
    old = _campaign(engine, clock, [c1], 3, user="bob")
    favoured = _campaign(engine, clock, [c1], 3, user="carol")
    test = _campaign(engine, clock, [c1], 3, user="dave", test_mode="true")
    with engine.begin() as conn:
        conn.execute(insert(users_priority).values(grid_user="carol", cluster_id=c1, priority=5))
        tasks = conn.execute(select(bag_of_tasks.c.id, bag_of_tasks.c.param_id).where(
            bag_of_tasks.c.campaign_id == old).order_by(bag_of_tasks.c.id)).all()
        # Within `old`: the last task is a resubmission (priority 20), the second has a bad
        # affinity for c1, so the order is t3, t1, t2.
        conn.execute(update(bag_of_tasks).where(bag_of_tasks.c.id == tasks[2].id)
                     .values(priority=20))
        conn.execute(insert(tasks_affinity).values(param_id=tasks[1].param_id, cluster_id=c1,
                                                   priority=-1))
    _scheduler(engine, clock, METASCHEDULER_POLICY=policy).run(loops=1)
    rows = _queue(engine)
    campaigns_in_order = [r.campaign_id for r in sorted(rows, key=lambda r: (r.order_num, r.id))]
    first_seen = list(dict.fromkeys(campaigns_in_order))
    assert first_seen == [test, favoured, old]
    old_tasks = [r.task_id for r in rows if r.campaign_id == old]
    assert old_tasks == [tasks[2].id, tasks[0].id, tasks[1].id]


def test_no_task_queued_on_blacklisted_stressed_or_prologue_pending_couples(
        engine: Engine, clock: FakeClock) -> None:
    blacklisted, stressed, free, disabled = _clusters(engine, clock, 4)
    campaign = _campaign(engine, clock, [blacklisted, stressed, free, disabled], 20)
    _campaign(engine, clock, [free], 20, prologue="echo hi")
    banned = _campaign(engine, clock, [free], 5)
    with engine.begin() as conn:
        cause = record_event(conn, class_=EventClass.CLUSTER, code="TIMEOUT",
                             cluster_id=blacklisted, now=clock.now())
        record_event(conn, class_=EventClass.CLUSTER, code="BLACKLIST", cluster_id=blacklisted,
                     parent=cause, now=clock.now())
        record_event(conn, class_=EventClass.CAMPAIGN, code="BLACKLIST", cluster_id=free,
                     campaign_id=banned, now=clock.now())
        set_cluster_stress_factor(conn, stressed, 0.8)
        set_cluster_enabled(conn, disabled, False)
    _scheduler(engine, clock).run(loops=1)
    counts = _per_couple(_queue(engine))
    assert set(counts) == {(campaign, free)}


def test_prologue_is_created_once_and_unblocks_the_couple_when_terminated(
        engine: Engine, clock: FakeClock) -> None:
    (c1,) = _clusters(engine, clock)
    _campaign(engine, clock, [c1], 5, prologue="echo setup", epilogue="echo done")
    scheduler = _scheduler(engine, clock)
    scheduler.run(loops=2)
    with engine.begin() as conn:
        prologues = conn.execute(select(jobs).where(jobs.c.tag == "prologue")).all()
    assert len(prologues) == 1
    job = prologues[0]
    assert (job.state, job.param_id, job.cluster_id) == (JobState.TO_LAUNCH, None, c1)
    assert json.loads(job.runner_options) == {"besteffort": False}
    assert _queue(engine) == []
    with engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job.id)
                     .values(state=JobState.TERMINATED.value))
    scheduler.run(loops=1)
    assert len(_queue(engine)) == 5
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).where(jobs.c.tag == "epilogue")).scalar() == 0


def test_epilogue_is_created_once_when_the_campaign_has_nothing_left(
        engine: Engine, clock: FakeClock) -> None:
    (c1,) = _clusters(engine, clock)
    campaign = _campaign(engine, clock, [c1], 2, epilogue="echo done")
    scheduler = _scheduler(engine, clock)
    scheduler.run(loops=1)
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).where(jobs.c.tag == "epilogue")).scalar() == 0
        # What the runner and updater would do: the tasks became jobs that terminated.
        params = conn.execute(select(bag_of_tasks.c.param_id).where(
            bag_of_tasks.c.campaign_id == campaign)).scalars().all()
        conn.execute(jobs_to_launch.delete())
        conn.execute(bag_of_tasks.delete())
        conn.execute(insert(jobs), [{"campaign_id": campaign, "cluster_id": c1, "param_id": p,
                                     "state": JobState.TERMINATED.value} for p in params])
    scheduler.run(loops=2)
    with engine.begin() as conn:
        epilogues = conn.execute(select(jobs).where(jobs.c.tag == "epilogue")).all()
    assert [(e.state, e.param_id) for e in epilogues] == [(JobState.TO_LAUNCH, None)]


def test_only_in_treatment_campaigns_are_scheduled(engine: Engine, clock: FakeClock) -> None:
    (c1,) = _clusters(engine, clock)
    paused = _campaign(engine, clock, [c1], 5)
    running = _campaign(engine, clock, [c1], 5)
    with engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == paused)
                     .values(state=CampaignState.PAUSED.value))
    _scheduler(engine, clock).run(loops=1)
    assert {r.campaign_id for r in _queue(engine)} == {running}


def test_fair_share_interleaves_users_on_a_cluster(engine: Engine, clock: FakeClock) -> None:
    (c1,) = _clusters(engine, clock)
    first = _campaign(engine, clock, [c1], 10, user="alice")
    second = _campaign(engine, clock, [c1], 10, user="alice")
    other = _campaign(engine, clock, [c1], 10, user="bob")
    _scheduler(engine, clock).run(loops=1)
    rows = sorted(_queue(engine), key=lambda r: (r.order_num, r.id))
    owners = ["alice" if r.campaign_id in (first, second) else "bob" for r in rows[:10]]
    assert owners == ["alice", "bob"] * 5
    # alice's own campaigns keep v3 order: the older one first.
    alice = [r.campaign_id for r in rows if r.campaign_id != other]
    assert alice[:10] == [first] * 10


def test_fifo_serves_the_oldest_campaign_first(engine: Engine, clock: FakeClock) -> None:
    (c1,) = _clusters(engine, clock)
    first = _campaign(engine, clock, [c1], 10, user="alice")
    _campaign(engine, clock, [c1], 10, user="bob")
    _scheduler(engine, clock, METASCHEDULER_POLICY="fifo").run(loops=1)
    rows = sorted(_queue(engine), key=lambda r: (r.order_num, r.id))
    assert [r.campaign_id for r in rows[:10]] == [first] * 10


def _run_concurrently(schedulers: Sequence[MetaScheduler], loops: int) -> None:
    barrier = threading.Barrier(len(schedulers))
    errors: list[BaseException] = []

    def run(scheduler: MetaScheduler) -> None:
        barrier.wait()
        try:
            scheduler.run(loops=loops)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


@pytest.mark.parametrize("same_role", [True, False], ids=["one-role", "distinct-roles"])
def test_two_metaschedulers_at_once_never_queue_a_task_twice(
        pg_engine: Engine, clock: FakeClock, same_role: bool) -> None:
    clusters = _clusters(pg_engine, clock, 3)
    for user in ("alice", "bob", "carol"):
        _campaign(pg_engine, clock, clusters, 200, user=user)
    # With distinct names the lease does not exclude them: only the UNIQUE task_id and the
    # FOR SHARE re-check stand between them and a task queued twice.
    schedulers = [MetaScheduler(engine=pg_engine, settings=_settings(), clock=clock,
                                stop=threading.Event(), interval=timedelta(0),
                                name="metascheduler" if same_role else f"ms{i}")
                  for i in range(4)]
    _run_concurrently(schedulers, loops=3)
    rows = _queue(pg_engine)
    assert len({r.task_id for r in rows}) == len(rows) > 0
    assert all(s.failures == 0 for s in schedulers)
    if same_role:
        assert sum(s.passes for s in schedulers) == 3  # one instance worked, the others waited
        assert max(_per_couple(rows).values()) <= 30  # so every cap of 10 x tap rate holds


def test_a_metascheduler_killed_mid_pass_leaves_nothing_stuck(engine: Engine,
                                                              clock: FakeClock) -> None:
    (c1,) = _clusters(engine, clock)
    _campaign(engine, clock, [c1], 10)
    killed = _scheduler(engine, clock)
    killed.run(loops=1)  # holds the lease now, then "dies" (SIGKILL) without releasing it
    standby = _scheduler(engine, clock)
    standby.run(loops=1)
    assert not standby.has_lease
    clock.advance(timedelta(seconds=61))
    standby.run(loops=1)
    assert standby.has_lease and standby.passes == 1


def test_candidates_follow_priority_then_affinity_then_id_without_sorting_the_bag(
        engine: Engine, clock: FakeClock) -> None:
    from cigri.storage.queue import list_unscheduled_tasks

    c1, c2 = _clusters(engine, clock, 2)
    campaign = _campaign(engine, clock, [c1], 20)
    with engine.begin() as conn:
        tasks = conn.execute(select(bag_of_tasks.c.id, bag_of_tasks.c.param_id).where(
            bag_of_tasks.c.campaign_id == campaign).order_by(bag_of_tasks.c.id)).all()
        # The first ten failed here; the last one is a resubmission that failed twice.
        conn.execute(insert(tasks_affinity), [
            {"param_id": t.param_id, "cluster_id": c1, "priority": -1} for t in tasks[:10]]
            + [{"param_id": tasks[19].param_id, "cluster_id": c1, "priority": -2},
               {"param_id": tasks[12].param_id, "cluster_id": c2, "priority": -5}])
        conn.execute(update(bag_of_tasks).where(bag_of_tasks.c.id == tasks[19].id)
                     .values(priority=20))
        found = list_unscheduled_tasks(conn, campaign_id=campaign, cluster_id=c1, limit=6)
    ids = [t.id for t in tasks]
    assert [t.task_id for t in found] == [ids[19], *ids[10:15]]
    assert [t.affinity for t in found] == [-2, 0, 0, 0, 0, 0]


def test_a_campaign_awaits_its_epilogue_until_one_terminated_on_each_cluster_it_ran_on(
        engine: Engine, clock: FakeClock) -> None:
    from cigri.domain.campaigns import is_epilogue_settled
    from cigri.storage.epilogues import list_epilogue_sites

    def awaiting(conn: Any, ids: list[int]) -> set[int]:
        return {s.campaign_id for s in list_epilogue_sites(conn, ids)
                if not is_epilogue_settled(s, now=clock.now(), blacklist_wait=timedelta(1))}

    c1, c2 = _clusters(engine, clock, 2)
    with_epilogue = _campaign(engine, clock, [c1, c2], 2, epilogue="echo done")
    plain = _campaign(engine, clock, [c1], 1)
    with engine.begin() as conn:
        assert awaiting(conn, [with_epilogue, plain]) == set()  # it ran nowhere yet
        params = conn.execute(select(bag_of_tasks.c.param_id).where(
            bag_of_tasks.c.campaign_id == with_epilogue)).scalars().all()
        conn.execute(insert(jobs), [{"campaign_id": with_epilogue, "cluster_id": c,
                                     "param_id": p, "state": JobState.TERMINATED.value}
                                    for c, p in zip((c1, c2), params, strict=True)])
        assert awaiting(conn, [with_epilogue, plain]) == {with_epilogue}
        conn.execute(insert(jobs), [{"campaign_id": with_epilogue, "cluster_id": c, "tag": "epilogue",
                                     "state": JobState.TERMINATED.value} for c in (c1,)])
        assert awaiting(conn, [with_epilogue]) == {with_epilogue}
        conn.execute(insert(jobs).values(campaign_id=with_epilogue, cluster_id=c2,
                                         tag="epilogue", state=JobState.TERMINATED.value))
        assert awaiting(conn, [with_epilogue, plain]) == set()
