"""The collector on a real OAR 2.5.9 cluster: a campaign with `output_gathering_method` runs through
the runner and the updater, then every declared output file of its jobs is fetched through the real
`/media` API into the campaign's result directory. Needs `CIGRI_TEST_OAR_URLS`."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cigri.daemons.collector import Collector
from cigri.domain.clock import SystemClock
from cigri.storage import collected as store
from cigri.storage.clusters import add_cluster
from tests.integration.engine_helpers import (
    CountingFactory,
    Grid,
    make_settings,
    new_campaign,
    queue_tasks,
    states,
)
from tests.integration.unix_helpers import root

__all__ = ["root"]  # fixtures


def _first_url() -> str:
    urls = [u.strip() for u in os.environ.get("CIGRI_TEST_OAR_URLS", "").split(",") if u.strip()]
    if not urls:
        pytest.fail("CIGRI_TEST_OAR_URLS is not set: this test needs the real OAR clusters")
    return urls[0]


@pytest.mark.real_oar
@pytest.mark.timeout(240)
def test_collector_fetches_every_declared_file_from_a_real_cluster(pg_engine: Engine,
                                                                    root: Path) -> None:
    # `root`: a results directory owners can traverse, as /var/lib/cigri is (pytest's tmp_path
    # is 0700, and the collector writes each file as the campaign's owner, here testuser)
    clock = SystemClock()
    with pg_engine.begin() as conn:
        cluster = add_cluster(conn, name="real1", api_url=_first_url(), now=clock.now())
    settings = make_settings(COLLECTOR_DIRECTORY=str(root / "results"), STRESS_FACTOR=1000)
    grid = Grid(engine=pg_engine, clock=clock, emulator=None, emu_clock=None,  # type: ignore[arg-type]
                settings=settings, clusters=[cluster], factory=CountingFactory())
    tag = f"cgt{uuid.uuid4().hex[:8]}"
    tasks = [f"{tag}-{i}" for i in range(3)]
    campaign = new_campaign(grid, tasks, exec_file=r"sh -c 'echo result-\$0 > \$0.out'",
                            type="normal", walltime="00:05:00",
                            output_gathering_method="collector", output_file="{TASK}.out")
    queue_tasks(grid, campaign, besteffort=False)
    grid.runner(settings=make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=10)).run(loops=1)
    updater = grid.updater()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and states(pg_engine, campaign) != {"terminated": 3}:
        updater.run(loops=1)
        time.sleep(1.0)
    assert states(pg_engine, campaign) == {"terminated": 3}

    Collector(grid.context(stop=threading.Event()), owner="test-collector").run(loops=1)

    # the OAR API runs the command through a shell first, hence the escaped \$0 above
    results = root / "results" / str(campaign)
    for task in tasks:
        assert (results / f"{task}.out").read_text() == f"result-{task}\n"
    with pg_engine.begin() as conn:
        summary = store.collection_summary(conn, campaign)
    assert summary["collected"] == 3 and summary["bytes"] == sum(
        len(f"result-{task}\n") for task in tasks)
