"""`DELETE /campaigns/<id>/outputs` (gridclean --outputs) on a temporal-grouping campaign, against
the OAR emulator in execute mode so the batch script really runs: the request the API records is
carried out by the collector, which besides the batch's own OAR
stdout/stderr it removes each sub-job's `cigri_batch_stdout_<id>` / `cigri_batch_stderr_<id>` and
the batch's state file `<OAR job name>.state`, and finds them gone the second time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from cigri.api import create_app
from cigri.config import build_settings
from cigri.domain.clock import FakeClock
from cigri.storage.tables import campaigns
from tests.integration.engine_helpers import (
    USER,
    Grid,
    job_rows,
    make_settings,
    new_campaign,
    queue_tasks,
    start_exec_grid,
    states,
)
from tests.integration.test_api_outputs import collect, follow

# OAR's oarsub shell evaluates the command once at submission (the emulator too): escape $0.
SCRIPT = r"sh -c 'echo out-\$0; echo err-\$0 >&2'"
PARAMS = ["a", "b", "c"]


@pytest.fixture
def grid(pg_engine: Engine, clock: FakeClock, tmp_path: Path) -> Iterator[Grid]:
    settings = make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=len(PARAMS))
    with start_exec_grid(pg_engine, clock, workdir=str(tmp_path / "oar"), nodes=1,
                         settings=settings) as grid:
        yield grid


def _run_grouped(grid: Grid) -> int:
    """One batch of three tasks, run to the end (real time: the batch really runs)."""
    campaign = new_campaign(grid, PARAMS, exec_file=SCRIPT, type="normal",
                            temporal_grouping="true")
    queue_tasks(grid, campaign, besteffort=False)
    grid.runner().run(loops=1)
    updater = grid.updater()
    done = {"terminated": len(PARAMS)}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and states(grid.engine, campaign) != done:
        updater.run(loops=1)
        time.sleep(0.2)
    assert states(grid.engine, campaign) == done
    with grid.engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign)
                     .values(state="terminated"))
    return campaign


def _files(tmp_path: Path) -> set[str]:
    home = tmp_path / "oar" / "home" / USER
    return {p.name for p in home.iterdir() if p.is_file()} if home.exists() else set()


def test_purging_a_grouped_campaign_removes_its_sub_jobs_files_and_state_file(
        grid: Grid, tmp_path: Path) -> None:
    campaign = _run_grouped(grid)
    rows = job_rows(grid.engine, campaign)
    assert {row.tag for row in rows} == {"batch"} and len({row.remote_id for row in rows}) == 1
    sub_job_files = {f"cigri_batch_{which}_{row.id}" for row in rows
                     for which in ("stdout", "stderr")}
    before = _files(tmp_path)
    state_files = {name for name in before if name.endswith(".state")}
    oar_files = {name for name in before if name.startswith("OAR.")}
    assert sub_job_files <= before, before
    assert len(state_files) == 1 and len(oar_files) == 2, before
    client = create_app(build_settings({"API_TRUSTED_PROXIES": "127.0.0.1"}), grid.engine,
                        clock=grid.clock).test_client()  # the default factory: HTTP to OAR

    answer = client.delete(f"/campaigns/{campaign}/outputs", headers={"X-Cigri-User": USER})
    assert answer.status_code == 202
    collect(grid)
    body = follow(client, campaign, answer.get_json()["id"])
    expected = len(sub_job_files) + len(state_files) + len(oar_files)  # 6 + 1 + 2
    assert (body["state"], body["removed"], body["missing"], body["errors"]) == (
        "done", expected, 0, []), body
    assert _files(tmp_path) == before - sub_job_files - state_files - oar_files == set()

    answer = client.delete(f"/campaigns/{campaign}/outputs", headers={"X-Cigri-User": USER})
    assert answer.status_code == 202
    collect(grid)
    body = follow(client, campaign, answer.get_json()["id"])
    assert (body["state"], body["removed"], body["missing"]) == ("done", 0, expected), body
