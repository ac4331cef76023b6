"""`DELETE /campaigns/<id>/outputs` against the OAR emulator in execute mode: a finished
campaign's jobs really wrote their stdout/stderr files; the API records the request (202 with its
id, nothing removed yet), the collector removes them through OAR as the owner in bounded batches,
counts them (`GET .../outputs/<request id>`, one event), and finds them gone the second time.
Unfinished campaigns and other users are refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, update

from cigri import app as composition
from cigri.api import create_app
from cigri.config import Settings, build_settings
from cigri.daemons import collector
from cigri.daemons.collector import Collector
from cigri.domain.clock import FakeClock
from cigri.storage.tables import campaigns, events
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


def collect(grid: Grid, settings: Settings | None = None) -> None:
    """One collector pass (it carries out the recorded removal requests), its OAR clients built
    the production way: real HTTP to the emulator."""
    settings = settings or grid.settings
    Collector(grid.context(settings=settings, stop=threading.Event(),
                           oar_factory=composition.build_oar_factory(settings, grid.engine)),
              owner="test-collector").run(loops=1)


def follow(client: FlaskClient, campaign: int, request: int) -> dict[str, Any]:
    answer = client.get(f"/campaigns/{campaign}/outputs/{request}",
                        headers={"X-Cigri-User": USER})
    assert answer.status_code == 200, answer.get_json()
    body: dict[str, Any] = answer.get_json()
    return body


def outcome_events(grid: Grid, campaign: int) -> list[tuple[str, str]]:
    with grid.engine.begin() as conn:
        return [(r.code, r.message) for r in conn.execute(
            select(events.c.code, events.c.message).where(
                events.c.campaign_id == campaign, events.c.code.like("OUTPUTS_%"))
            .order_by(events.c.id))]


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
    assert (status, body["state"], body["removed"]) == (202, "pending", 0), body
    assert delete(USER)[1]["id"] == body["id"]  # asking again while it is open starts nothing
    assert len(_outputs(tmp_path)) == 6  # the API removes nothing itself: the collector does
    collect(grid)
    body = follow(client, campaign, body["id"])
    assert (body["state"], body["removed"], body["missing"], body["errors"]) == ("done", 6, 0, [])
    assert body["message"] == f"6 output files of campaign {campaign} removed"
    assert _outputs(tmp_path) == []
    assert outcome_events(grid, campaign) == [("OUTPUTS_REMOVED", body["message"])]

    status, body = delete("root")  # an admin may too; nothing is left
    assert (status, body["state"]) == (202, "pending")
    collect(grid)
    body = follow(client, campaign, body["id"])
    assert (body["state"], body["removed"], body["missing"]) == ("done", 0, 6)
    assert body["message"] == f"0 output files of campaign {campaign} removed (6 already gone)"


def test_the_collector_removes_them_in_bounded_batches(grid: Grid, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = _run_campaign(grid, ["a", "b", "c"])
    with grid.engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign)
                     .values(state="terminated"))
    client = create_app(build_settings({"API_TRUSTED_PROXIES": "127.0.0.1"}), grid.engine,
                        clock=grid.clock).test_client()
    request = client.delete(f"/campaigns/{campaign}/outputs",
                            headers={"X-Cigri-User": USER}).get_json()["id"]
    monkeypatch.setattr(collector, "PURGE_BATCH", 1)  # one OAR job between progress records
    collect(grid)
    body = follow(client, campaign, request)
    assert (body["state"], body["removed"], body["missing"]) == ("done", 6, 0)
    assert _outputs(tmp_path) == []
    assert len(outcome_events(grid, campaign)) == 1


def test_an_unreachable_cluster_is_reported_not_a_crash(grid: Grid, tmp_path: Path) -> None:
    campaign = _run_campaign(grid, ["x"])
    with grid.engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign)
                     .values(state="terminated"))
    grid.emulator.stop()
    settings = build_settings({"API_TRUSTED_PROXIES": "127.0.0.1", "REST_QUERIES_TIMEOUT": "2"})
    client = create_app(settings, grid.engine, clock=grid.clock).test_client()
    answer = client.delete(f"/campaigns/{campaign}/outputs", headers={"X-Cigri-User": USER})
    assert answer.status_code == 202
    collect(grid, settings)
    body = follow(client, campaign, answer.get_json()["id"])
    assert (body["state"], body["removed"]) == ("failed", 0)
    assert len(body["errors"]) == 1 and body["errors"][0].startswith("exec1: ")
    assert [code for code, _ in outcome_events(grid, campaign)] == ["OUTPUTS_REMOVAL_FAILED"]
