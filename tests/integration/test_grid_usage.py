"""Grid-usage sampling (`cigri.daemons.maintenance.sample_grid_usage`, v3 §3.3.4) against the OAR
emulator: `used_resources` counts the resources of every running job, other users' included,
`used_by_cigri` only those of cigri's jobs; a cluster that cannot list its jobs gets no sample."""

from __future__ import annotations

from sqlalchemy import Engine

from cigri.daemons.maintenance import sample_grid_usage
from cigri.domain.clock import FakeClock
from cigri.domain.oar import SubmitRequest
from cigri.oar.client import OarClient
from cigri.storage import stats
from cigri.storage.clusters import add_cluster
from tests.integration.engine_helpers import new_campaign, queue_tasks, start_grid, states


def test_other_users_jobs_count_as_used_but_not_by_cigri(engine: Engine,
                                                          clock: FakeClock) -> None:
    grid = start_grid(engine, clock, clusters=1, nodes=2, cores=4)
    try:
        campaign = new_campaign(grid, ["10", "20", "30"])
        queue_tasks(grid, campaign)
        grid.runner().run(loops=1)
        grid.advance(1)
        grid.updater().run(loops=1)
        assert states(engine, campaign) == {"running": 3}
        # someone else's job, submitted straight to OAR, holds two more cores
        other = OarClient(grid.clusters[0].api_url)
        other.submit(SubmitRequest(command="sleep 600", resources="/core=2",
                                   walltime="00:20:00"), user="bob")
        grid.advance(1)
        assert sample_grid_usage(engine, grid.factory, now=clock.now(), period_seconds=60) == 1
        with engine.begin() as conn:
            [sample] = stats.latest_grid_usage(conn)
    finally:
        grid.emulator.stop()
    assert (sample.max_resources, sample.unavailable_resources) == (8, 0)
    assert (sample.used_resources, sample.used_by_cigri) == (5, 3)


def test_a_cluster_that_cannot_answer_gets_no_sample(engine: Engine, clock: FakeClock) -> None:
    grid = start_grid(engine, clock, clusters=1, nodes=1, cores=2)
    try:
        with engine.begin() as conn:  # nothing listens on port 9 (discard): connection refused
            add_cluster(conn, name="gone", api_url="http://127.0.0.1:9/oarapi/", now=clock.now())
        written = sample_grid_usage(engine, grid.factory, now=clock.now(), period_seconds=60)
        with engine.begin() as conn:
            samples = stats.latest_grid_usage(conn)
    finally:
        grid.emulator.stop()
    assert written == 1
    assert [(s.cluster_id, s.max_resources, s.used_resources) for s in samples] == [
        (grid.clusters[0].id, 2, 0)]
