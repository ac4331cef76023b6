"""The API's follow-ups for the notifier and Colombo: the NEW_CAMPAIGN event at submission, the
`log` subscription type, and a fix with resubmission that never resubmits a task twice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert, select

from cigri.domain.clock import FakeClock
from cigri.domain.notifications import NEW_CAMPAIGN
from cigri.storage.tables import bag_of_tasks, events, parameters
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
