"""`cigri maintenance` on a database with old and new campaigns (PostgreSQL and SQLite): it removes
exactly the finished campaigns older than PURGE_AFTER_DAYS, with all their rows, archives them when
asked, and the API keeps serving what remains."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, Table, func, select, update

from cigri.cli.admin import cli
from cigri.domain.clock import FakeClock
from cigri.storage.events import record_event
from cigri.storage.tables import campaigns, events, jobs, parameters
from tests.integration.api_helpers import Api, jdl, make_api

NOW = datetime.now(UTC)


def _age(engine: Engine, campaign_id: int, *, state: str, days: float | None,
         completion: bool = True) -> None:
    when = None if days is None else NOW - timedelta(days=days)
    values = {"state": state, "submission_time": when - timedelta(days=1) if when else NOW}
    if completion:
        values["completion_time"] = when
    with engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(**values))


def _count(engine: Engine, table: Table, campaign_id: int) -> int:
    with engine.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(table)
                                .where(table.c.campaign_id == campaign_id)).scalar_one())


@pytest.fixture
def populated(engine: Engine, clock: FakeClock) -> tuple[Api, dict[str, int]]:
    api = make_api(engine, clock)
    ids = {name: api.submit(jdl(name)) for name in
           ("old_done", "old_cancelled", "old_done_no_completion", "recent_done", "old_running",
            "fresh")}
    _age(engine, ids["old_done"], state="terminated", days=40)
    _age(engine, ids["old_cancelled"], state="cancelled", days=31)
    _age(engine, ids["old_done_no_completion"], state="terminated", days=45, completion=False)
    _age(engine, ids["recent_done"], state="terminated", days=29)
    _age(engine, ids["old_running"], state="in_treatment", days=90, completion=False)
    with engine.begin() as conn:
        param = conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == ids["old_done"]).limit(1)).scalar_one()
        job = conn.execute(jobs.insert().values(
            campaign_id=ids["old_done"], param_id=param, state="terminated",
            cluster_id=1).returning(jobs.c.id)).scalar_one()
        record_event(conn, class_="job", code="EXIT_ERROR", job_id=job,
                     campaign_id=ids["old_done"], cluster_id=1, now=clock.now())
    return api, ids


def test_maintenance_purges_exactly_the_old_finished_campaigns(
        db_url: str, engine: Engine, populated: tuple[Api, dict[str, int]],
        tmp_path: Path) -> None:
    api, ids = populated
    archive = tmp_path / "archive"
    result = CliRunner().invoke(
        cli, ["maintenance", "--no-usage", "--archive", str(archive), "--json"],
        env={"CIGRI_DATABASE_URL": db_url, "CIGRI_PURGE_AFTER_DAYS": "30"})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    old = sorted([ids["old_done"], ids["old_cancelled"], ids["old_done_no_completion"]])
    assert sorted(report["purged"]) == old
    assert report["errors"] == []

    with engine.begin() as conn:
        remaining = sorted(conn.execute(select(campaigns.c.id)).scalars())
    assert remaining == sorted([ids["recent_done"], ids["old_running"], ids["fresh"]])
    for table in (parameters, jobs, events):
        assert _count(engine, table, ids["old_done"]) == 0
    exported = json.loads((archive / f"campaign-{ids['old_done']}.json").read_text())
    assert exported["campaign"]["name"] == "old_done"
    assert len(exported["parameters"]) == 10 and len(exported["jobs"]) == 1
    assert {event["code"] for event in exported["events"]} == {"NEW_CAMPAIGN", "EXIT_ERROR"}

    for name in ("recent_done", "old_running", "fresh"):  # the API still serves what remains
        response = api.call("GET", f"/campaigns/{ids[name]}")
        assert response.status_code == 200 and response.get_json()["name"] == name
    assert api.call("GET", f"/campaigns/{ids['old_done']}").status_code == 404
    listed = api.call("GET", "/campaigns").get_json()
    assert {item["id"] for item in listed["items"]} >= {ids["old_running"], ids["fresh"]}


def test_dry_run_and_zero_days_purge_nothing(db_url: str, engine: Engine,
                                             populated: tuple[Api, dict[str, int]]) -> None:
    _api, ids = populated
    runner = CliRunner()
    dry = runner.invoke(cli, ["maintenance", "--no-usage", "--dry-run"],
                        env={"CIGRI_DATABASE_URL": db_url, "CIGRI_PURGE_AFTER_DAYS": "30"})
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would purge 3 campaigns")
    never = runner.invoke(cli, ["maintenance", "--no-usage"],
                          env={"CIGRI_DATABASE_URL": db_url})
    assert never.exit_code == 0 and never.output.startswith("purged 0 campaigns")
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(campaigns)).scalar_one() == len(ids)


def test_vacuum_runs_on_both_databases(db_url: str, engine: Engine) -> None:
    result = CliRunner().invoke(cli, ["maintenance", "--no-usage", "--vacuum"],
                                env={"CIGRI_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert "database vacuumed" in result.output


def test_almighty_schedule_runs_the_same_steps(engine: Engine, clock: FakeClock) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from cigri.config import build_settings
    from cigri.daemons.maintenance import schedule_maintenance

    api = make_api(engine, clock)
    old = api.submit(jdl("old"))
    _age(engine, old, state="terminated", days=10)
    scheduler = BackgroundScheduler(timezone="UTC")
    settings = build_settings({"PURGE_AFTER_DAYS": 7, "GRID_USAGE_UPDATE_PERIOD": 60})
    schedule_maintenance(scheduler, engine, settings, FakeClock(start=NOW),
                         oar_factory=lambda cluster: None)  # type: ignore[arg-type,return-value]
    jobs_by_id = {job.id: job for job in scheduler.get_jobs()}
    assert sorted(jobs_by_id) == ["cigri-grid-usage", "cigri-purge", "cigri-vacuum"]
    # the first grid-usage sample is taken at start (the capacity injection policy needs one),
    # not a period later
    first = jobs_by_id["cigri-grid-usage"].next_run_time
    assert first is not None and first <= datetime.now(UTC)
    jobs_by_id["cigri-purge"].func()
    jobs_by_id["cigri-vacuum"].func()
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(campaigns)).scalar_one() == 0
