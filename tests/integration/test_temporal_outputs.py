"""Temporal grouping: a sub-job's own output (PostgreSQL and SQLite, the OAR emulator in execute
mode, so the batch script really runs). Its task wrote `cigri_batch_stdout_<job id>` and
`cigri_batch_stderr_<job id>`, not the batch's OAR files: `GET /jobs/<id>/stdout|stderr` (what
`gridstat -j <id> -O/-E` calls) and the collector both find those."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cigri.api import create_app
from cigri.config import build_settings
from cigri.daemons.collector import Collector
from cigri.domain.clock import FakeClock
from cigri.emulator import ManualClock, run_in_thread
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import jobs, parameters
from tests.integration.engine_helpers import (
    USER,
    Grid,
    job_rows,
    make_settings,
    new_campaign,
    queue_tasks,
    states,
)
from tests.integration.unix_helpers import root

# OAR's oarsub shell evaluates the command once at submission (the emulator too): escape $0.
SCRIPT = r"sh -c 'echo out-\$0; echo err-\$0 >&2'"

__all__ = ["root"]  # fixtures


@pytest.fixture
def grid(engine: Engine, clock: FakeClock, tmp_path: Path, root: Path) -> Iterator[Grid]:
    # results where their owner (testuser, a Unix account once real OAR is set up) can reach them
    emulator = run_in_thread(allow_root_jobs=True, clusters=1, nodes=1, cores=2, mode="execute",
                             workdir=str(tmp_path / "oar"))
    try:
        with engine.begin() as conn:
            cluster = add_cluster(conn, name="exec1", api_url=emulator.urls[0], now=clock.now())
        yield Grid(engine=engine, clock=clock, emulator=emulator, emu_clock=ManualClock(),
                   settings=make_settings(COLLECTOR_DIRECTORY=str(root / "results"),
                                          RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=3),
                   clusters=[cluster])
    finally:
        emulator.stop()


def _run_grouped(grid: Grid, params: list[str], **props: str) -> int:
    campaign = new_campaign(grid, params, exec_file=SCRIPT, type="normal",
                            temporal_grouping="true", **props)
    queue_tasks(grid, campaign, besteffort=False)
    grid.runner().run(loops=1)
    updater = grid.updater()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and states(grid.engine, campaign) != {
            "terminated": len(params)}:
        updater.run(loops=1)
        time.sleep(0.2)
    assert states(grid.engine, campaign) == {"terminated": len(params)}
    return campaign


def _params(grid: Grid, campaign: int) -> dict[int, str]:
    """Job id -> its parameter line."""
    with grid.engine.begin() as conn:
        by_param = dict(conn.execute(select(parameters.c.id, parameters.c.param).where(
            parameters.c.campaign_id == campaign)).all())
    return {row.id: by_param[row.param_id] for row in job_rows(grid.engine, campaign)}


def test_a_sub_jobs_stdout_and_stderr_through_the_api_are_its_own(grid: Grid) -> None:
    campaign = _run_grouped(grid, ["a", "b", "c"])
    rows = job_rows(grid.engine, campaign)
    assert len({row.remote_id for row in rows}) == 1 and {row.tag for row in rows} == {"batch"}
    client = create_app(build_settings({"API_TRUSTED_PROXIES": "127.0.0.1"}), grid.engine,
                        clock=grid.clock).test_client()  # the default factory: HTTP to OAR
    for job_id, param in _params(grid, campaign).items():
        for which, expected in (("stdout", f"out-{param}\n"), ("stderr", f"err-{param}\n")):
            answer = client.get(f"/jobs/{job_id}/{which}", headers={"X-Cigri-User": USER})
            assert answer.status_code == 200, answer.get_json()
            assert answer.get_json()["output"] == expected
    other = client.get(f"/jobs/{rows[0].id}/stdout", headers={"X-Cigri-User": "mallory"})
    assert other.status_code == 403


def test_the_collector_fetches_each_sub_jobs_own_output(grid: Grid, tmp_path: Path) -> None:
    campaign = _run_grouped(grid, ["p1", "p2", "p3"], output_gathering_method="collector",
                            output_file="OAR.%jobid%.stdout {STDERR} {TASK}.none")
    collector = Collector(grid.context(stop=threading.Event()), owner="test-collector",
                          interval=timedelta(0))
    collector.run(loops=1)
    results = Path(grid.settings.COLLECTOR_DIRECTORY) / str(campaign)
    for job_id, param in _params(grid, campaign).items():
        assert (results / f"cigri_batch_stdout_{job_id}").read_text() == f"out-{param}\n"
        assert (results / f"cigri_batch_stderr_{job_id}").read_text() == f"err-{param}\n"
    assert not list(results.glob("OAR.*"))  # never the batch's own (shared) OAR output


def test_the_dashboard_shows_a_jobs_output_to_its_owner_only(grid: Grid) -> None:
    """The task history links each job's stdout/stderr; the page reads it through the OAR client
    (the API's own code, `cigri.api.job_output`) and refuses another user's job."""
    campaign = _run_grouped(grid, ["a", "b"])
    client = create_app(build_settings({"API_TRUSTED_PROXIES": "127.0.0.1"}), grid.engine,
                        clock=grid.clock).test_client()  # the default factory: HTTP to OAR
    params = _params(grid, campaign)
    job_id, param = next(iter(params.items()))
    with grid.engine.begin() as conn:
        task_id = conn.execute(select(jobs.c.param_id).where(jobs.c.id == job_id)).scalar_one()
    history = client.get(f"/ui/campaigns/{campaign}/tasks/{task_id}",
                         headers={"X-Cigri-User": USER})
    assert history.status_code == 200
    assert f'href="/ui/jobs/{job_id}/stdout"' in history.text
    for which, expected in (("stdout", f"out-{param}"), ("stderr", f"err-{param}")):
        page = client.get(f"/ui/jobs/{job_id}/{which}", headers={"X-Cigri-User": USER})
        assert page.status_code == 200
        assert f'<pre class="jdl" id="output">{expected}\n</pre>' in page.text
    other = client.get(f"/ui/jobs/{job_id}/stdout", headers={"X-Cigri-User": "mallory"})
    assert other.status_code == 403
