"""The `/rules` routes (issue 13): a user adds, lists, shows, tests, disables and removes their
own rules; anyone else's rule is a 403; admin rules need an admin; a bad definition is a 400
listing every problem. `/schedules` shares the owner check (in storage) and the id bounds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from cigri.domain.clock import FakeClock
from cigri.domain.states import EventClass
from cigri.storage.events import record_event
from tests.integration.api_helpers import jdl, make_api

RULE: dict[str, Any] = {"name": "stop failing", "trigger": {"kind": "event", "code": "EXIT_ERROR"},
                        "actions": ["pause", {"do": "notify", "message": "paused"}],
                        "cooldown_minutes": 30}


def test_a_user_manages_their_rules_and_no_one_elses(pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    added = api.call("POST", "/rules", json=RULE)
    assert added.status_code == 201, added.get_json()
    rule = added.get_json()
    assert (rule["owner"], rule["trigger"], rule["actions"], rule["enabled"]) == (
        "alice", "event EXIT_ERROR", "pause, notify", True)
    assert [r["id"] for r in api.call("GET", "/rules").get_json()["items"]] == [rule["id"]]
    assert api.call("GET", "/rules", user="bob").get_json()["items"] == []
    assert api.call("GET", f"/rules/{rule['id']}", user="bob").status_code == 403
    assert api.call("DELETE", f"/rules/{rule['id']}", user="bob").status_code == 403
    assert api.call("GET", f"/rules/{rule['id']}", user="root").status_code == 200  # an admin
    assert api.call("PUT", f"/rules/{rule['id']}", json={"enabled": False}).status_code == 202
    assert api.call("GET", f"/rules/{rule['id']}").get_json()["enabled"] is False
    assert api.call("DELETE", f"/rules/{rule['id']}").status_code == 202
    assert api.call("GET", f"/rules/{rule['id']}").status_code == 404


def test_bad_definitions_and_admin_rules_are_refused_with_every_reason(
        pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    bad = api.call("POST", "/rules", json={"name": "", "trigger": {"kind": "metric",
                                                                   "metric": "speed"},
                                           "actions": [{"do": "explode"}], "colour": 1})
    assert bad.status_code == 400
    message = bad.get_json()["message"]
    for part in ("unknown keys: colour", "name:", "trigger.metric: one of failure_rate",
                 "actions[0]: an object whose do is one of"):
        assert part in message, message
    everyone = {**RULE, "scope": {"all": True}}
    assert api.call("POST", "/rules?admin=1", json=everyone).status_code == 403
    assert "only an admin's rule" in api.call("POST", "/rules", json=everyone).get_json()["message"]
    assert api.call("POST", "/rules?admin=1", json=everyone, user="root").status_code == 201
    assert api.call("POST", "/rules", data="{", content_type="application/json").status_code == 400


def test_the_dry_run_says_what_the_rule_would_have_done_over_the_last_day(
        pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    campaign = api.submit(jdl("sim"))
    other = api.submit(jdl("other"), user="bob")
    with pg_engine.begin() as conn:
        for minute, target in ((0, campaign), (10, campaign), (45, campaign), (50, other)):
            clock.advance(60 * minute)
            record_event(conn, class_=EventClass.JOB, code="EXIT_ERROR", campaign_id=target,
                         now=clock.now())
    rule = api.call("POST", "/rules", json=RULE).get_json()
    found = api.call("GET", f"/rules/{rule['id']}/test").get_json()["items"]
    # the second failure falls in the cooldown; bob's campaign is not alice's rule's business
    assert [(item["campaign_id"], item["actions"]) for item in found] == [
        (campaign, "pause, notify"), (campaign, "pause, notify")]
    assert api.call("GET", f"/campaigns/{campaign}").get_json()["state"] == "in_treatment"
    assert api.call("GET", f"/rules/{rule['id']}").get_json()["firings"] == []


def test_a_schedule_is_its_owners_and_ids_past_their_column_are_404(engine: Engine,
                                                                    clock: FakeClock) -> None:
    api = make_api(engine, clock)
    added = api.call("POST", "/schedules", json={"jdl": jdl("nightly"), "cron": "0 2 * * *"})
    assert added.status_code == 201, added.get_json()
    path = f"/schedules/{added.get_json()['id']}"
    refused = api.call("PUT", path, user="bob", json={"enabled": False})
    assert refused.status_code == 403
    assert refused.get_json()["message"] == f"Schedule {added.get_json()['id']} does not belong to you"
    assert api.call("DELETE", path, user="bob").status_code == 403
    assert api.call("GET", path, user="root").status_code == 200
    assert api.call("PUT", path, json={"enabled": False}).status_code == 202
    for far in (f"/schedules/{2**31}", f"/rules/{2**31}"):
        assert api.call("GET", far).status_code == 404
        assert api.call("DELETE", far).status_code == 404
