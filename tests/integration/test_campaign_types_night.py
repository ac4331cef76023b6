"""`nightly` and `semi-best-effort` campaigns (issue 9 points 1 and 3) against real PostgreSQL, the
OAR emulator over HTTP and the injectable clock: the OAR job types the emulator received say what
ran. The cluster's night is `20:00-07:00 weekends` in Europe/Paris (UTC+1 in January), so its
evening starts at 19:00 UTC and its morning at 06:00 UTC; 2026-01-01 is a Thursday."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cigri.api import create_app
from cigri.config import build_settings
from cigri.daemons.metascheduler import MetaScheduler
from cigri.daemons.nikita import Nikita
from cigri.domain.clock import FakeClock
from cigri.emulator import Workload
from cigri.storage.clusters import get_cluster, set_cluster_fields
from cigri.storage.tables import bag_of_tasks, events, jobs_to_launch
from cigri.storage.users import set_normal_authorized
from tests.integration.engine_helpers import Grid, job_rows, new_campaign, start_grid

THURSDAY_NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # 13:00 in Paris: day
PARIS_EVENING = datetime(2026, 1, 1, 19, 0, tzinfo=UTC)  # 20:00 in Paris: night starts
PARIS_MORNING = datetime(2026, 1, 2, 6, 0, tzinfo=UTC)  # Friday 07:00 in Paris: day again


@pytest.fixture
def grid(pg_engine: Engine, clock: FakeClock) -> Iterator[Grid]:
    clock.advance(THURSDAY_NOON - clock.now())
    with start_grid(pg_engine, clock, clusters=1, nodes=8, cores=2,
                    workload=Workload(duration="fixed:36000")) as grid:
        with pg_engine.begin() as conn:
            set_cluster_fields(conn, grid.clusters[0].id, night_window="20:00-07:00 weekends",
                               time_zone="Europe/Paris")
            grid.clusters[0] = get_cluster(conn, grid.clusters[0].id)
        yield grid


def _until(grid: Grid, moment: datetime) -> None:
    grid.advance((moment - grid.clock.now()).total_seconds())


def _schedule(grid: Grid) -> None:
    MetaScheduler(engine=grid.engine, settings=grid.settings, clock=grid.clock, stop=grid.stop,
                  interval=timedelta(0), owner="test-metascheduler").run(loops=1)


def _pass(grid: Grid) -> None:
    """One meta-scheduler pass, then one runner pass."""
    _schedule(grid)
    grid.runner().run(loops=1)


def _oar_types(grid: Grid, campaign: int) -> list[list[str]]:
    """The OAR job types of every job of the campaign the emulator received, in submission
    order (one entry per OAR job, array jobs included)."""
    return [list(job["types"]) for job in sorted(grid.control(0).jobs(), key=lambda j: j["id"])
            if str(job["name"]).startswith(f"cigri.{campaign}.")]


def _queued(grid: Grid, campaign: int) -> list[dict[str, Any]]:
    with grid.engine.begin() as conn:
        return [json.loads(row.runner_options) for row in conn.execute(
            select(jobs_to_launch.c.runner_options)
            .join(bag_of_tasks, bag_of_tasks.c.id == jobs_to_launch.c.task_id)
            .where(bag_of_tasks.c.campaign_id == campaign))]


def test_nightly_submits_nothing_by_day_and_normal_jobs_at_night(grid: Grid) -> None:
    campaign = new_campaign(grid, [f"p{i} {i}" for i in range(4)], type="nightly")
    _pass(grid)
    _pass(grid)
    assert _queued(grid, campaign) == [] and _oar_types(grid, campaign) == []  # tasks in the bag
    _until(grid, PARIS_EVENING - timedelta(minutes=1))
    _pass(grid)
    assert _oar_types(grid, campaign) == []
    _until(grid, PARIS_EVENING)
    _pass(grid)
    submitted = _oar_types(grid, campaign)
    assert submitted and all(types == [] for types in submitted)  # normal jobs
    assert {o["besteffort"] for o in _queued(grid, campaign)} <= {False}


def test_nightly_tasks_queued_at_night_are_not_submitted_after_dawn(grid: Grid) -> None:
    """The runner checks the window when it submits: tasks the meta-scheduler queued before
    dawn wait; normal jobs started at night keep running after it."""
    campaign = new_campaign(grid, [f"p{i} {i}" for i in range(12)], type="nightly")
    _until(grid, PARIS_MORNING - timedelta(minutes=5))
    _pass(grid)
    started = len(_oar_types(grid, campaign))
    assert started > 0 and _queued(grid, campaign)  # more queued than the tap let through
    _until(grid, PARIS_MORNING)
    grid.runner().run(loops=1)
    Nikita(grid.context(), interval=timedelta(0), owner="test-nikita").run(loops=1)
    assert len(_oar_types(grid, campaign)) == started  # nothing new by day
    running = [job for job in grid.control(0).jobs()
               if str(job["name"]).startswith(f"cigri.{campaign}.")]
    assert {job["state"] for job in running} == {"Running"}  # not killed at dawn


def test_semi_best_effort_switches_at_both_edges(grid: Grid) -> None:
    campaign = new_campaign(grid, [f"p{i} {i}" for i in range(60)], type="semi-best-effort")
    _pass(grid)
    by_day = _oar_types(grid, campaign)
    assert by_day and all(types == ["besteffort"] for types in by_day)
    _until(grid, PARIS_EVENING)
    _pass(grid)
    at_night = _oar_types(grid, campaign)[len(by_day):]
    assert at_night and all(types == [] for types in at_night)
    _until(grid, PARIS_MORNING)
    _pass(grid)
    next_day = _oar_types(grid, campaign)[len(by_day) + len(at_night):]
    assert next_day and all(types == ["besteffort"] for types in next_day)
    assert job_rows(grid.engine, campaign)  # the jobs are followed as usual


def test_a_weekend_is_night_all_day(grid: Grid) -> None:
    campaign = new_campaign(grid, ["a 1"], type="nightly")
    _until(grid, datetime(2026, 1, 3, 12, 0, tzinfo=UTC))  # Saturday noon
    _pass(grid)
    assert _oar_types(grid, campaign) == [[]]


def _api(grid: Grid) -> Any:
    settings = build_settings({"API_TRUSTED_PROXIES": "127.0.0.1", "ADMINS": "root"})
    return create_app(settings, grid.engine, clock=grid.clock).test_client()


def _submit(client: Any, user: str, **cluster: Any) -> Any:
    jdl = {"name": "n", "nb_jobs": 3, "clusters": {"c1": {"exec_file": "e", **cluster}}}
    return client.post("/campaigns", json=jdl, headers={"X-Cigri-User": user})


@pytest.mark.parametrize("kind", ["nightly", "semi-best-effort", "normal"])
def test_an_unauthorised_user_cannot_get_normal_jobs_from_any_type(grid: Grid, kind: str) -> None:
    with grid.engine.begin() as conn:
        set_normal_authorized(conn, {"c1": ["bob"]})
    client = _api(grid)
    refused = _submit(client, "alice", type=kind)
    assert refused.status_code == 400
    assert refused.get_json()["title"] == "Admission rule error"
    assert "not authorized to launch non best-effort jobs on cluster c1" in \
        refused.get_json()["message"]
    assert _submit(client, "bob", type=kind).status_code == 201
    allowed = _submit(client, "alice", type="best-effort")
    assert allowed.status_code == 201
    for moment in (THURSDAY_NOON, PARIS_EVENING):  # by day and at night
        _until(grid, moment)
        _pass(grid)
    alice = _oar_types(grid, allowed.get_json()["id"])
    assert alice and all(types == ["besteffort"] for types in alice)  # never a normal job


@pytest.mark.parametrize("kind", ["normal", "nightly", "best-effort"])
def test_test_mode_is_not_subject_to_admission_rules(grid: Grid, kind: str) -> None:
    """v3: a user may try a campaign in test mode where they may not run normal jobs; it runs
    one normal job at a time."""
    with grid.engine.begin() as conn:
        set_normal_authorized(conn, {"c1": ["bob"]})
    response = _submit(_api(grid), "alice", type=kind, test_mode="true")
    assert response.status_code == 201, response.get_json()
    campaign = response.get_json()["id"]
    _pass(grid)
    _pass(grid)
    assert _oar_types(grid, campaign) == [[]]  # one normal job, by day too


def test_the_api_says_what_a_campaign_runs_now_and_next_and_the_cluster_window(
        grid: Grid) -> None:
    """What gridstat -c and gridclusters -i print, from the clock the API was given."""
    client = _api(grid)
    campaign = _submit(client, "alice", type="semi-best-effort").get_json()["id"]
    headers = {"X-Cigri-User": "alice"}
    cluster = client.get(f"/campaigns/{campaign}", headers=headers).get_json()["clusters"]["1"]
    assert (cluster["type"], cluster["plan"]) == (
        "semi-best-effort", "best-effort jobs now; normal jobs from Thu 20:00 Europe/Paris")
    detail = client.get("/clusters/1", headers=headers).get_json()
    assert {key: detail[key] for key in ("night_window", "time_zone", "is_night",
                                         "night_changes_at")} == {
        "night_window": "20:00-07:00 weekends", "time_zone": "Europe/Paris", "is_night": False,
        "night_changes_at": PARIS_EVENING.isoformat()}
    _until(grid, PARIS_EVENING)
    cluster = client.get(f"/campaigns/{campaign}", headers=headers).get_json()["clusters"]["1"]
    assert cluster["plan"] == "normal jobs now; best-effort jobs from Fri 07:00 Europe/Paris"
    assert client.get("/clusters/1", headers=headers).get_json()["is_night"] is True


def test_the_new_campaign_notification_says_what_a_timed_campaign_runs(grid: Grid) -> None:
    campaign = _submit(_api(grid), "alice", type="nightly").get_json()["id"]
    with grid.engine.begin() as conn:
        message = conn.execute(select(events.c.message).where(
            events.c.campaign_id == campaign, events.c.code == "NEW_CAMPAIGN")).scalar_one()
    assert message == (f"Campaign {campaign} (n) submitted with 3 tasks; on c1 (nightly): "
                       "waiting for the night (nothing submitted by day); normal jobs from "
                       "Thu 20:00 Europe/Paris")


@pytest.mark.parametrize("kind", ["nightly", "semi-best-effort", "normal"])
def test_a_campaign_accepted_before_the_list_runs_best_effort_once_it_is_set(
        grid: Grid, kind: str) -> None:
    """The runner asks the admission rule before each normal submission: a campaign accepted
    before the cluster got a list (or whose owner left it) never gets a normal job."""
    campaign = new_campaign(grid, ["a 1", "b 2"], type=kind)  # owner: testuser
    with grid.engine.begin() as conn:
        set_normal_authorized(conn, {"c1": ["bob"]})
    _until(grid, PARIS_EVENING)
    _pass(grid)
    received = _oar_types(grid, campaign)
    assert received and all(types == ["besteffort"] for types in received)
