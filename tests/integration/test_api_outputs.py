"""`DELETE /campaigns/<id>/outputs` against the OAR emulator in execute mode: a finished
campaign's jobs really wrote their stdout/stderr files; the API removes them through OAR as the
owner, counts them, and finds them gone the second time. Unfinished campaigns and other users
are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from cigri.api import create_app
from cigri.config import build_settings
from cigri.domain.clock import FakeClock
from cigri.storage.tables import campaigns
from tests.integration.engine_helpers import USER, Grid, run_to_termination, start_exec_grid


@pytest.fixture
def grid(pg_engine: Engine, clock: FakeClock, tmp_path: Path) -> Iterator[Grid]:
    with start_exec_grid(pg_engine, clock, workdir=str(tmp_path / "oar")) as grid:
        yield grid


def _run_campaign(grid: Grid, params: list[str]) -> int:
    return run_to_termination(grid, params,
                              exec_file="sh -c 'echo out-\\$0; echo err-\\$0 >&2'")


def _outputs(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "oar" / "home" / USER).glob("OAR.*.std*"))


def test_outputs_of_a_finished_campaign_are_removed_through_oar(grid: Grid,
                                                                tmp_path: Path) -> None:
    campaign = _run_campaign(grid, ["a", "b", "c"])
    assert len(_outputs(tmp_path)) == 6
    app = create_app(build_settings({"API_TRUSTED_PROXIES": "127.0.0.1", "ADMINS": "root"}),
                     grid.engine, clock=grid.clock)  # the default factory: real HTTP to OAR
    client = app.test_client()

    def delete(user: str) -> tuple[int, dict[str, object]]:
        answer = client.delete(f"/campaigns/{campaign}/outputs", headers={"X-Cigri-User": user})
        return answer.status_code, answer.get_json()

    with grid.engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign)
                     .values(state="in_treatment"))
    status, body = delete(USER)
    assert status == 400 and "only the output files of a finished campaign" in str(body["message"])
    with grid.engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign)
                     .values(state="terminated"))
    assert delete("mallory")[0] == 403
    assert _outputs(tmp_path) and len(_outputs(tmp_path)) == 6

    status, body = delete(USER)
    assert (status, body["removed"], body["missing"], body["errors"]) == (202, 6, 0, [])
    assert body["message"] == f"6 output files of campaign {campaign} removed"
    assert _outputs(tmp_path) == []

    status, body = delete("root")  # an admin may too; nothing is left
    assert (status, body["removed"], body["missing"]) == (202, 0, 6)
    assert body["message"] == f"0 output files of campaign {campaign} removed (6 already gone)"


def test_an_unreachable_cluster_is_reported_not_a_crash(grid: Grid, tmp_path: Path) -> None:
    campaign = _run_campaign(grid, ["x"])
    with grid.engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign)
                     .values(state="terminated"))
    grid.emulator.stop()
    app = create_app(build_settings({"API_TRUSTED_PROXIES": "127.0.0.1",
                                     "REST_QUERIES_TIMEOUT": "2"}), grid.engine, clock=grid.clock)
    answer = app.test_client().delete(f"/campaigns/{campaign}/outputs",
                                      headers={"X-Cigri-User": USER})
    body = answer.get_json()
    assert (answer.status_code, body["removed"]) == (202, 0)
    assert len(body["errors"]) == 1 and body["errors"][0].startswith("exec1: ")
