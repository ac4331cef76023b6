"""The API's follow-ups for the notifier, Colombo and statistics: the NEW_CAMPAIGN event at
submission, the `log` subscription type, a fix with resubmission that never resubmits a task twice,
per-cluster statistics with a forecast and collection counts, each cluster's newest usage sample."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select

from cigri.domain.clock import FakeClock
from cigri.domain.notifications import NEW_CAMPAIGN
from cigri.domain.stats import UsageSample
from cigri.storage import collected
from cigri.storage.stats import record_grid_usage
from cigri.storage.tables import bag_of_tasks, collected_files, events, parameters
from tests.integration.api_helpers import Api, jdl, make_api


@pytest.fixture
def api(engine: Engine, clock: FakeClock) -> Iterator[Api]:
    yield make_api(engine, clock)


def _task_ids(api: Api, campaign_id: int) -> list[int]:
    with api.engine.begin() as conn:
        return list(conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == campaign_id).order_by(parameters.c.id)).scalars())


def _bag(api: Api) -> list[int]:
    with api.engine.begin() as conn:
        return sorted(conn.execute(select(bag_of_tasks.c.param_id)).scalars())


def _event(api: Api, campaign_id: int, job_id: int, code: str = "EXIT_ERROR") -> int:
    with api.engine.begin() as conn:
        return int(conn.execute(insert(events).values(
            class_="job", code=code, state="open", job_id=job_id, campaign_id=campaign_id,
            cluster_id=1).returning(events.c.id)).scalar_one())


def test_submission_records_a_closed_new_campaign_notify_event(api: Api) -> None:
    campaign_id = api.submit(jdl("povray", nb_jobs=3))
    with api.engine.begin() as conn:
        rows = conn.execute(select(events).where(events.c.code == NEW_CAMPAIGN)).all()
    assert [(r.class_, r.state, r.campaign_id, r.message, r.notified) for r in rows] == [
        ("notify", "closed", campaign_id, f"Campaign {campaign_id} (povray) submitted with 3 tasks",
         False)]
    assert rows[0].date_closed is not None
    summary = api.call("GET", f"/campaigns/{campaign_id}").get_json()
    assert summary["has_events"] is False  # a closed notice is not a problem of the campaign


def test_a_refused_submission_records_no_event(api: Api) -> None:
    assert api.call("POST", "/campaigns", json={"name": "n"}).status_code == 400
    with api.engine.begin() as conn:
        assert conn.execute(select(events.c.id)).all() == []


def test_log_subscriptions_are_accepted(api: Api) -> None:
    created = api.call("POST", "/notifications/log", json={"identity": "cigri-alice",
                                                            "severity": "low"})
    assert created.status_code == 201, created.get_json()
    items = api.call("GET", "/notifications").get_json()["items"]
    assert [(i["type"], i["identity"], i["severity"]) for i in items] == [
        ("log", "cigri-alice", "low")]
    assert api.call("DELETE", "/notifications/log?identity=cigri-alice").status_code == 202
    assert api.call("GET", "/notifications").get_json()["items"] == []


def test_fixing_an_old_failure_does_not_resubmit_a_task_that_already_has_a_newer_job(
        api: Api) -> None:
    """v3's double resubmission: job A failed, Colombo resubmitted its task, the runner took it
    (the bag is empty again) as job B; fixing A's event with resubmission must not add it again."""
    campaign_id = api.submit(jdl(nb_jobs=2))
    first, second = _task_ids(api, campaign_id)
    with api.engine.begin() as conn:
        conn.execute(bag_of_tasks.delete())
    failed = api.add_job(campaign_id, param_id=first, cluster_id=1, state="event")
    event = _event(api, campaign_id, failed)
    api.add_job(campaign_id, param_id=first, cluster_id=1, state="running")  # the rerun
    other = api.add_job(campaign_id, param_id=second, cluster_id=1, state="event")
    other_event = _event(api, campaign_id, other)
    assert api.call("DELETE", f"/events/{event}?resubmit=1").status_code == 202
    assert _bag(api) == []
    assert api.call("DELETE", f"/events/{other_event}?resubmit=1").status_code == 202
    assert _bag(api) == [second]


def test_fixing_a_campaign_resubmits_each_task_once_from_its_newest_failure(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=1))
    (task,) = _task_ids(api, campaign_id)
    with api.engine.begin() as conn:
        conn.execute(bag_of_tasks.delete())
    old = api.add_job(campaign_id, param_id=task, cluster_id=1, state="event")
    new = api.add_job(campaign_id, param_id=task, cluster_id=1, state="event")
    prologue = api.add_job(campaign_id, param_id=None, cluster_id=1, state="event")
    for job in (old, new, prologue):
        _event(api, campaign_id, job)
    _event(api, campaign_id, new, "RESUBMIT")
    assert api.call("DELETE", f"/campaigns/{campaign_id}/events?resubmit=1").status_code == 202
    assert _bag(api) == [task]
    assert api.call("GET", f"/campaigns/{campaign_id}/events").get_json()["items"] == []
    # A second fix finds the task in the bag: nothing more.
    _event(api, campaign_id, new, "WALLTIME")
    assert api.call("DELETE", f"/campaigns/{campaign_id}/events?resubmit=1").status_code == 202
    assert _bag(api) == [task]


def test_stats_give_per_cluster_figures_a_forecast_and_no_collection_without_gathering(
        api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=4, clusters={"dahu": {"exec_file": "e"},
                                                      "luke": {"exec_file": "e"}}))
    tasks = _task_ids(api, campaign_id)
    now = api.clock.now()
    for task, cluster, seconds in ((tasks[0], 1, 50), (tasks[1], 1, 70), (tasks[2], 2, 60)):
        api.add_job(campaign_id, param_id=task, cluster_id=cluster, state="terminated",
                    start_time=now - timedelta(seconds=seconds + 10),
                    stop_time=now - timedelta(seconds=10))
    api.add_job(campaign_id, param_id=tasks[3], cluster_id=2, state="running")
    stats = api.call("GET", f"/campaigns/{campaign_id}/stats").get_json()
    assert {"average_jobs_duration", "remaining_time", "failures_rate"} <= set(stats)
    by_name = {c["cluster_name"]: c for c in stats["clusters"]}
    assert (by_name["dahu"]["terminated"], by_name["dahu"]["active"]) == (2, 0)
    assert (by_name["luke"]["terminated"], by_name["luke"]["active"]) == (1, 1)
    assert by_name["dahu"]["average_duration"] == pytest.approx(60.0)
    assert by_name["dahu"]["jobs_per_hour"] > 0 and by_name["dahu"]["failure_rate"] == 0.0
    assert stats["campaign"]["terminated"] == 3 and stats["campaign"]["cluster_id"] is None
    ahead = stats["forecast"]
    assert (ahead["total_tasks"], ahead["finished_tasks"]) == (4, 3)
    assert ahead["progress"] == pytest.approx(0.75)
    assert ahead["eta_seconds"] == pytest.approx(3600 / ahead["jobs_per_hour"])
    assert stats["collection"] is None


def test_stats_count_the_collected_files_of_a_gathering_campaign(api: Api) -> None:
    campaign_id = api.submit(jdl(clusters={"dahu": {
        "exec_file": "e", "output_gathering_method": "collector", "output_file": "o"}}))
    task = _task_ids(api, campaign_id)[0]
    job = api.add_job(campaign_id, param_id=task, cluster_id=1, state="terminated")
    record_pending_files_rows = [(campaign_id, job, f"/r/{n}", f"/l/{n}") for n in range(3)]
    with api.engine.begin() as conn:
        collected.record_pending_files(conn, record_pending_files_rows)
        ids = sorted(conn.execute(select(collected_files.c.id)).scalars())
        collected.mark_collected(conn, ids[0], size=100, now=api.clock.now())
        collected.mark_missing(conn, ids[1], message="gone")
    stats = api.call("GET", f"/campaigns/{campaign_id}/stats").get_json()
    assert stats["collection"] == {"pending": 1, "collected": 1, "missing": 1, "failed": 0,
                                   "bytes": 100}


def test_gridusage_gives_each_clusters_newest_sample(api: Api) -> None:
    assert api.call("GET", "/gridusage").get_json()["items"] == []
    first, second = api.clock.now(), api.clock.now() + timedelta(minutes=5)
    with api.engine.begin() as conn:
        record_grid_usage(conn, [UsageSample(cluster_id=1, max_resources=8, used_resources=2,
                                             unavailable_resources=0, used_by_cigri=1),
                                 UsageSample(cluster_id=2, max_resources=4, used_resources=4,
                                             unavailable_resources=1, used_by_cigri=3)],
                          now=first)
        record_grid_usage(conn, [UsageSample(cluster_id=1, max_resources=8, used_resources=6,
                                             unavailable_resources=0, used_by_cigri=5)],
                          now=second)  # luke missed this pass: its last sample still counts
    items = api.call("GET", "/gridusage").get_json()["items"]
    assert [i["date"] for i in items] == [int(second.timestamp())]
    assert [(c["cluster_name"], c["used_resources"], c["used_by_cigri"])
            for c in items[0]["clusters"]] == [("dahu", 6, 5), ("luke", 4, 3)]
    ranged = api.call("GET", f"/gridusage?from={int(first.timestamp()) - 1}").get_json()["items"]
    assert len(ranged) == 2
