"""Fair share through the real pipeline: the meta-scheduler queues, the runner submits to the
emulated cluster over HTTP. Under `fair_share` two users' campaigns alternate from one runner
cycle to the next; under `fifo` (v3) the older campaign takes every cycle."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from cigri.daemons.metascheduler import MetaScheduler
from cigri.domain.clock import FakeClock
from cigri.storage.campaigns import create_campaign
from cigri.storage.tables import jobs
from tests.integration.engine_helpers import make_settings, start_grid


@pytest.mark.parametrize("policy", ["fair_share", "fifo"])
def test_users_alternate_on_a_cluster_under_fair_share_only(
        pg_engine: Engine, clock: FakeClock, policy: str) -> None:
    settings = make_settings(METASCHEDULER_POLICY=policy)
    grid = start_grid(pg_engine, clock, nodes=50, cores=2, settings=settings)
    try:
        cluster = grid.clusters[0]
        props = {"exec_file": "work", "type": "best-effort", "resources": "/resource_id=1",
                 "walltime": "01:00:00"}
        with pg_engine.begin() as conn:
            older, newer = (create_campaign(
                conn, grid_user=user, name=user, jobs_type="normal", jdl={},
                properties={cluster.id: props}, params=[f"p{i}" for i in range(60)],
                now=clock.now()) for user in ("alice", "bob"))
        scheduler = MetaScheduler(engine=pg_engine, settings=settings, clock=clock,
                                  stop=threading.Event(), interval=timedelta(0))
        runner = grid.runner()
        submitted_per_cycle = []
        for _ in range(4):
            scheduler.run(loops=1)
            before = _per_campaign(pg_engine)
            runner.run(loops=1)
            after = _per_campaign(pg_engine)
            submitted_per_cycle.append({c for c in after if after[c] > before.get(c, 0)})
        if policy == "fair_share":
            assert submitted_per_cycle == [{older}, {newer}, {older}, {newer}]
        else:
            assert submitted_per_cycle == [{older}] * 4
    finally:
        grid.emulator.stop()


def _per_campaign(engine: Engine) -> Counter[int]:
    with engine.begin() as conn:
        return Counter(conn.execute(select(jobs.c.campaign_id)).scalars())
