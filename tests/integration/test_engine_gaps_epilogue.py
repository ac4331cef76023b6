"""A finished campaign's epilogue runs on the clusters where the campaign ran and can still run it;
a cluster that cannot (disabled, removed, or blacklisted for longer than
EPILOGUE_BLACKLIST_TIMEOUT) no longer holds the campaign for ever: the campaign terminates, with
an EPILOGUE_SKIPPED notification per such cluster. Meta-scheduler, runners and updater on a real
database and two emulated clusters, the clock moved by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, delete, select

from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.clock import FakeClock
from cigri.domain.events import BLACKLIST
from cigri.domain.states import EventClass, EventState
from cigri.storage import events as event_store
from cigri.storage.clusters import set_cluster_enabled
from cigri.storage.queries import list_campaign_events
from cigri.storage.tables import campaigns, clusters
from tests.integration.engine_helpers import (
    Grid,
    event_rows,
    job_rows,
    make_settings,
    new_campaign,
    start_grid,
)

WAIT = 600  # EPILOGUE_BLACKLIST_TIMEOUT of these tests


@pytest.fixture
def grid(engine: Engine, clock: FakeClock) -> Iterator[Grid]:
    grid = start_grid(engine, clock, clusters=2, nodes=2, cores=2,
                      settings=make_settings(EPILOGUE_BLACKLIST_TIMEOUT=WAIT))
    try:
        yield grid
    finally:
        grid.emulator.stop()


def _schedule(grid: Grid) -> None:
    MetaScheduler(engine=grid.engine, settings=grid.settings, clock=grid.clock, stop=grid.stop,
                  interval=timedelta(0), owner="test-metascheduler").run(loops=1)


def _cycle(grid: Grid, *, runners: tuple[int, ...] = (0, 1), seconds: float = 15) -> None:
    """One turn of the engine: schedule, submit on each cluster that has a runner, let the
    emulated jobs (10 s each) run, follow them."""
    _schedule(grid)
    for index in runners:
        grid.runner(index).run(loops=1)
    grid.advance(seconds)
    grid.updater().run(loops=1)


def _campaign_state(grid: Grid, campaign: int) -> str:
    with grid.engine.begin() as conn:
        return str(conn.execute(select(campaigns.c.state)
                                .where(campaigns.c.id == campaign)).scalar_one())


def _epilogues(grid: Grid, campaign: int) -> dict[int, str]:
    return {row.cluster_id: row.state for row in job_rows(grid.engine, campaign)
            if row.tag == "epilogue"}


def _run_tasks_on_both_clusters(grid: Grid) -> int:
    campaign = new_campaign(grid, ["a 1", "b 2", "c 3", "d 4"], clusters=(0, 1),
                            epilogue="echo bye")
    _cycle(grid)
    tasks = [row for row in job_rows(grid.engine, campaign) if row.param_id is not None]
    assert {row.state for row in tasks} == {"terminated"}
    assert {row.cluster_id for row in tasks} == {c.id for c in grid.clusters}
    assert _campaign_state(grid, campaign) == "in_treatment"  # its epilogues are due
    return campaign


def _skips(grid: Grid) -> list[tuple[int, int, str, str]]:
    return [(row.campaign_id, row.cluster_id, row.class_, row.state)
            for row in event_rows(grid.engine, "EPILOGUE_SKIPPED")]


def _blacklist(grid: Grid, campaign: int | None, *, cause: str | None) -> int | None:
    """An open BLACKLIST on the second cluster: for the campaign, or the whole cluster; with an
    open cause, or none (an admin's, which nothing lifts). Returns the cause's id."""
    cluster_id = grid.clusters[1].id
    with grid.engine.begin() as conn:
        parent = None
        if cause is not None:
            parent = event_store.record_event(conn, class_=EventClass.CLUSTER, code=cause,
                                              cluster_id=cluster_id, now=grid.clock.now())
        event_store.record_event(
            conn, class_=EventClass.CAMPAIGN if campaign else EventClass.CLUSTER,
            code=BLACKLIST, campaign_id=campaign, cluster_id=cluster_id, parent=parent,
            now=grid.clock.now())
    return parent


@pytest.mark.parametrize("scope", [
    pytest.param("campaign", id="campaign-blacklisted-by-an-admin"),
    pytest.param("cluster", id="cluster-disabled-by-an-admin-event"),
])
def test_a_cluster_blacklisted_for_good_is_skipped_after_the_wait(grid: Grid, scope: str) -> None:
    campaign = _run_tasks_on_both_clusters(grid)
    c1, c2 = (c.id for c in grid.clusters)
    if scope == "campaign":
        _blacklist(grid, campaign, cause=None)
    else:
        _blacklist(grid, None, cause="CLUSTER_MANUALLY_DISABLED")
    _cycle(grid)
    assert _epilogues(grid, campaign) == {c1: "terminated"}  # none created on c2
    assert _campaign_state(grid, campaign) == "in_treatment"  # c2 may come back
    grid.advance(WAIT - 30)
    grid.updater().run(loops=1)
    assert _campaign_state(grid, campaign) == "in_treatment"
    assert _skips(grid) == []
    grid.advance(30)
    _cycle(grid, runners=(0,))
    assert _campaign_state(grid, campaign) == "terminated"
    assert _epilogues(grid, campaign) == {c1: "terminated"}
    assert _skips(grid) == [(campaign, c2, "notify", "closed")]
    (skip,) = event_rows(grid.engine, "EPILOGUE_SKIPPED")
    assert "did not run on c2" in skip.message and "blacklisted" in skip.message
    assert len(event_rows(grid.engine, "FINISHED_CAMPAIGN")) == 1


def test_a_cluster_back_within_the_wait_runs_its_epilogue(grid: Grid) -> None:
    campaign = _run_tasks_on_both_clusters(grid)
    c1, c2 = (c.id for c in grid.clusters)
    _blacklist(grid, None, cause="CONNECTION_REFUSED")  # a transient outage
    _cycle(grid)
    assert _epilogues(grid, campaign) == {c1: "terminated"}
    grid.advance(60)
    grid.updater().run(loops=2)  # the autofix probe answers: the blacklist is lifted
    assert _campaign_state(grid, campaign) == "in_treatment"
    _cycle(grid)
    assert _epilogues(grid, campaign) == {c1: "terminated", c2: "terminated"}
    assert _campaign_state(grid, campaign) == "terminated"
    assert _skips(grid) == []


def test_a_disabled_cluster_is_skipped_at_once_and_its_untaken_epilogue_withdrawn(
        grid: Grid) -> None:
    campaign = _run_tasks_on_both_clusters(grid)
    c1, c2 = (c.id for c in grid.clusters)
    _schedule(grid)
    assert _epilogues(grid, campaign) == {c1: "to_launch", c2: "to_launch"}
    with grid.engine.begin() as conn:
        set_cluster_enabled(conn, c2, False)  # its runner stops: nobody will take that job
    _cycle(grid, runners=(0,))
    assert _epilogues(grid, campaign) == {c1: "terminated"}
    grid.updater().run(loops=1)
    assert _campaign_state(grid, campaign) == "terminated"
    assert _skips(grid) == [(campaign, c2, "notify", "closed")]
    (skip,) = event_rows(grid.engine, "EPILOGUE_SKIPPED")
    assert "the cluster is disabled" in skip.message
    with grid.engine.begin() as conn:  # `gridevents --all <campaign>` shows it
        shown = list_campaign_events(conn, campaign, include_closed=True)
    assert [e["cluster_name"] for e in shown if e["code"] == "EPILOGUE_SKIPPED"] == ["c2"]


def test_a_removed_cluster_holds_nothing(grid: Grid) -> None:
    campaign = _run_tasks_on_both_clusters(grid)
    c1, c2 = (c.id for c in grid.clusters)
    with grid.engine.begin() as conn:
        conn.execute(delete(clusters).where(clusters.c.id == c2))
    _cycle(grid, runners=(0,))
    grid.updater().run(loops=1)
    assert _epilogues(grid, campaign) == {c1: "terminated"}
    assert _campaign_state(grid, campaign) == "terminated"


def test_no_epilogue_where_the_campaign_never_ran(grid: Grid) -> None:
    c1, c2 = (c.id for c in grid.clusters)
    with grid.engine.begin() as conn:
        set_cluster_enabled(conn, c2, False)  # all tasks go to c1
    campaign = new_campaign(grid, ["a 1", "b 2"], clusters=(0, 1), epilogue="echo bye")
    _cycle(grid, runners=(0,))
    with grid.engine.begin() as conn:
        set_cluster_enabled(conn, c2, True)
    _cycle(grid)
    _cycle(grid)
    assert _epilogues(grid, campaign) == {c1: "terminated"}
    assert _campaign_state(grid, campaign) == "terminated"
    assert _skips(grid) == []  # nothing to clean there, nothing to report


def test_a_failed_epilogue_still_holds_the_campaign_until_the_user_fixes_it(grid: Grid) -> None:
    campaign = new_campaign(grid, ["a 1"], epilogue="exit 3")
    _cycle(grid, runners=(0,))
    _cycle(grid, runners=(0,))
    (failure,) = event_rows(grid.engine, "EPILOG_EXIT_ERROR")
    assert failure.state == EventState.OPEN
    grid.advance(WAIT * 2)  # the campaign blacklist it opened is old, but its cause is open
    _cycle(grid, runners=(0,))
    assert _campaign_state(grid, campaign) == "in_treatment"
    assert _skips(grid) == []
