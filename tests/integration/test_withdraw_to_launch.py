"""Tasks queued (`jobs_to_launch`) on a cluster that then stops taking the campaign's work
(disabled, or the campaign blacklisted there) and that no runner took go back to the bag, and the
meta-scheduler places them on another cluster: the campaign finishes there and no parameter runs
twice. A task a runner is taking at that moment is either withdrawn or submitted, never both.
PostgreSQL (SKIP LOCKED decides the race), the meta-scheduler, runners and updater, and two
emulated clusters."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import Connection, select

from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.events import BLACKLIST
from cigri.domain.states import EventClass
from cigri.storage import events as event_store
from cigri.storage import jobs as job_store
from cigri.storage import queue as queue_store
from cigri.storage import submissions as submission_store
from cigri.storage.clusters import set_cluster_enabled
from cigri.storage.tables import bag_of_tasks, campaigns, jobs_to_launch
from tests.integration.engine_helpers import Grid, job_rows, new_campaign, queue_tasks

pytestmark = pytest.mark.grid(clusters=2, nodes=2, cores=2)

PARAMS = [f"{n}" for n in range(1, 9)]


def _metascheduler(grid: Grid) -> MetaScheduler:
    return MetaScheduler(engine=grid.engine, settings=grid.settings, clock=grid.clock,
                         stop=grid.stop, interval=timedelta(0), owner="test-metascheduler")


def _queued_on(grid: Grid) -> Counter[int]:
    with grid.engine.begin() as conn:
        return Counter(conn.execute(select(jobs_to_launch.c.cluster_id)).scalars())


def _campaign_state(grid: Grid, campaign: int) -> str:
    with grid.engine.begin() as conn:
        return str(conn.execute(select(campaigns.c.state)
                                .where(campaigns.c.id == campaign)).scalar_one())


@pytest.mark.parametrize("how", [
    pytest.param("disabled", id="cluster-disabled"),
    pytest.param("campaign-blacklisted", id="campaign-blacklisted-on-the-cluster"),
])
def test_tasks_queued_on_a_cluster_that_stops_taking_work_finish_on_the_other(
        grid: Grid, how: str) -> None:
    c1, c2 = (c.id for c in grid.clusters)
    campaign = new_campaign(grid, PARAMS, clusters=(0, 1))
    _metascheduler(grid).run(loops=1)
    queued = _queued_on(grid)
    assert queued[c1] > 0 and queued[c2] > 0 and sum(queued.values()) == len(PARAMS)
    with grid.engine.begin() as conn:
        if how == "disabled":
            set_cluster_enabled(conn, c2, False)
        else:
            event_store.record_event(conn, class_=EventClass.CAMPAIGN, code=BLACKLIST,
                                     campaign_id=campaign, cluster_id=c2, now=grid.clock.now())
    # Well under REMOTE_WAITING_TIMEOUT (900 s) of emulated time: nikita's expiry is not what
    # frees the tasks (and nikita does not run here).
    for _ in range(20):
        _metascheduler(grid).run(loops=1)
        assert _queued_on(grid)[c2] == 0  # withdrawn at the first pass, never queued there again
        grid.runner(0).run(loops=1)
        grid.runner(1).run(loops=1)
        grid.advance(15)
        grid.updater().run(loops=1)
        if _campaign_state(grid, campaign) == "terminated":
            break
    tasks = [row for row in job_rows(grid.engine, campaign) if row.param_id is not None]
    assert {(row.cluster_id, row.state) for row in tasks} == {(c1, "terminated")}
    assert len(tasks) == len(PARAMS)
    runs = Counter[str]()
    for (_owner, _name, command), times in grid.control(0).runs_by_command().items():
        runs[command.rsplit(";", 1)[-1]] += times  # after `export CIGRI_CAMPAIGN_ID=…;`
    assert runs == {f"sleep {param}": 1 for param in PARAMS}  # each parameter ran once
    assert grid.control(1).jobs() == []  # the other cluster was never asked
    if how == "disabled":  # a campaign blacklist holds the campaign until the user fixes it
        assert _campaign_state(grid, campaign) == "terminated"


def _claim(grid: Grid, conn: Connection, campaign: int, limit: int) -> list[int]:
    """What the runner does in its intent transaction: the submission row, then the take."""
    submission = submission_store.record_intent(
        conn, key="k", cluster_id=grid.clusters[0].id,
        campaign_id=campaign, nb_jobs=0, now=grid.clock.now())
    items = job_store.claim_queued_tasks(
        conn, cluster_id=grid.clusters[0].id, campaign_id=campaign,
        limit=limit, submission_id=submission, now=grid.clock.now())
    return [item.job_id for item in items]


def _bag(grid: Grid, campaign: int) -> int:
    with grid.engine.begin() as conn:
        return len(conn.execute(select(bag_of_tasks.c.id)
                                .where(bag_of_tasks.c.campaign_id == campaign)).all())


def test_a_task_being_taken_by_a_runner_is_not_withdrawn(grid: Grid) -> None:
    campaign = new_campaign(grid, PARAMS)
    assert queue_tasks(grid, campaign) == len(PARAMS)
    couple = [(campaign, grid.clusters[0].id)]
    with grid.engine.connect() as runner, grid.engine.connect() as scheduler, runner.begin():
        taken = _claim(grid, runner, campaign, limit=3)
        assert len(taken) == 3
        with scheduler.begin():  # the runner has not committed: its rows are skipped
            assert queue_store.withdraw_queued_tasks(scheduler, couple) == len(PARAMS) - 3
    assert [row.state for row in job_rows(grid.engine, campaign)] == ["launching"] * 3
    assert _bag(grid, campaign) == len(PARAMS) - 3 and sum(_queued_on(grid).values()) == 0


def test_a_task_being_withdrawn_is_not_taken_by_a_runner(grid: Grid) -> None:
    campaign = new_campaign(grid, PARAMS)
    assert queue_tasks(grid, campaign) == len(PARAMS)
    couple = [(campaign, grid.clusters[0].id)]
    with grid.engine.connect() as runner, grid.engine.connect() as scheduler, scheduler.begin():
        assert queue_store.withdraw_queued_tasks(scheduler, couple) == len(PARAMS)
        with runner.begin():  # the withdrawal has not committed: the runner skips its rows
            assert _claim(grid, runner, campaign, limit=3) == []
    assert job_rows(grid.engine, campaign) == []
    assert _bag(grid, campaign) == len(PARAMS) and sum(_queued_on(grid).values()) == 0
