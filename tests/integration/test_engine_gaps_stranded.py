"""A campaign with tasks left whose clusters are all disabled or removed used to sit in
`in_treatment` with nothing to show why. The meta-scheduler now opens one NO_USABLE_CLUSTER event
on it (what gridevents and gridstat read), never one per pass, and closes it once a cluster is
back or the campaign ended."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, select

from cigri.config import build_settings
from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.clock import FakeClock
from cigri.storage.actions import cancel_campaign
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster, set_cluster_enabled
from cigri.storage.queries import get_campaign_summary, list_campaign_events
from cigri.storage.tables import bag_of_tasks, clusters, events, jobs, jobs_to_launch


def _scheduler(engine: Engine, clock: FakeClock) -> MetaScheduler:
    return MetaScheduler(engine=engine, settings=build_settings({}), clock=clock,
                         stop=threading.Event(), interval=timedelta(0))


def _grid(engine: Engine, clock: FakeClock) -> tuple[list[int], int]:
    with engine.begin() as conn:
        ids = [add_cluster(conn, name=f"c{i}", api_url=f"http://127.0.0.1:9/c{i}/",
                           now=clock.now()).id for i in range(2)]
        props = {"exec_file": "true", "resources": "/resource_id=1", "walltime": "00:10:00"}
        campaign = create_campaign(conn, grid_user="alice", name="t", jobs_type="normal", jdl={},
                                   properties={c: props for c in ids},
                                   params=[f"p{i} {i}" for i in range(5)], now=clock.now())
    return ids, campaign


def _shown(engine: Engine, campaign: int) -> list[tuple[str, str, str]]:
    """What `gridevents <campaign>` lists: its open events."""
    with engine.begin() as conn:
        return [(e["code"], e["class"], e["state"]) for e in list_campaign_events(conn, campaign)]


def _count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where))
                   .scalar_one())


def test_a_campaign_whose_clusters_are_all_disabled_is_reported_once_until_one_is_back(
        engine: Engine, clock: FakeClock) -> None:
    (c1, c2), campaign = _grid(engine, clock)
    with engine.begin() as conn:
        set_cluster_enabled(conn, c1, False)
    scheduler = _scheduler(engine, clock)
    scheduler.run(loops=1)
    assert _shown(engine, campaign) == []  # c2 still takes its tasks
    with engine.begin() as conn:
        conn.execute(delete(jobs_to_launch))
        set_cluster_enabled(conn, c2, False)
    scheduler.run(loops=3)
    assert _shown(engine, campaign) == [("NO_USABLE_CLUSTER", "campaign", "open")]
    with engine.begin() as conn:
        assert get_campaign_summary(conn, campaign).has_events  # gridstat: in_treatment (events)
        (message,) = conn.execute(select(events.c.message).where(
            events.c.code == "NO_USABLE_CLUSTER")).scalars().all()
    assert "5 task(s) left" in message and "enabled" in message
    assert _count(engine, jobs_to_launch) == 0 and _count(engine, jobs) == 0  # nothing else done
    with engine.begin() as conn:
        set_cluster_enabled(conn, c2, True)
    scheduler.run(loops=1)
    assert _shown(engine, campaign) == []
    assert _count(engine, events, events.c.code == "NO_USABLE_CLUSTER",
                  events.c.state == "closed") == 1
    assert _count(engine, jobs_to_launch) == 5  # scheduled again


def test_a_campaign_whose_clusters_were_removed_is_reported_until_it_is_cancelled(
        engine: Engine, clock: FakeClock) -> None:
    (c1, c2), campaign = _grid(engine, clock)
    with engine.begin() as conn:
        conn.execute(delete(clusters).where(clusters.c.id.in_([c1, c2])))
    scheduler = _scheduler(engine, clock)
    scheduler.run(loops=2)
    assert _shown(engine, campaign) == [("NO_USABLE_CLUSTER", "campaign", "open")]
    with engine.begin() as conn:
        cancel_campaign(conn, campaign, now=clock.now())
    scheduler.run(loops=1)
    assert _count(engine, events, events.c.code == "NO_USABLE_CLUSTER",
                  events.c.state == "open") == 0


def test_a_finished_campaign_on_disabled_clusters_is_not_reported(
        engine: Engine, clock: FakeClock) -> None:
    (c1, c2), campaign = _grid(engine, clock)
    with engine.begin() as conn:
        conn.execute(delete(jobs_to_launch))
        conn.execute(delete(bag_of_tasks))  # every task taken: nothing waits for a cluster
        set_cluster_enabled(conn, c1, False)
        set_cluster_enabled(conn, c2, False)
    _scheduler(engine, clock).run(loops=1)
    assert _shown(engine, campaign) == []
