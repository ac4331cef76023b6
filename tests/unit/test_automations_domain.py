"""Rule definitions and decisions (`cigri.domain.automations`), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cigri.domain.automations import (
    Counters,
    RuleError,
    cooling_down,
    event_matches,
    load_definition,
    metric_crossed,
    parse_definition,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_toml_and_a_json_rule_say_the_same() -> None:
    toml = 'name = "n"\nactions = ["cancel"]\n[trigger]\nkind = "state"\nstate = "paused"\n'
    json_ = '{"name": "n", "actions": ["cancel"], "trigger": {"kind": "state", "state": "paused"}}'
    assert load_definition(toml, admin=False)[0] == load_definition(json_, admin=False)[0]


def test_every_problem_is_listed() -> None:
    with pytest.raises(RuleError) as caught:
        parse_definition({"trigger": {"kind": "event", "on": "later"},
                          "actions": [{"do": "fix", "resubmit": "yes"}, {"do": "notify",
                                                                          "to": "admins"}],
                          "scope": {"campaign": "12", "all": True}, "cooldown_minutes": -1},
                         admin=False)
    assert caught.value.problems == [
        "name: a non-empty string of at most 255 characters",
        "trigger: an event trigger needs a code, codes or a class",
        'trigger.on: "open" or "close"',
        "actions[0].resubmit: true or false",
        'actions[1].to: "owner"',
        "scope.campaign: a campaign id",
        "scope.all: only an admin's rule covers every user's campaigns",
        "cooldown_minutes: a number at least 0, not -1",
    ]
    with pytest.raises(RuleError, match="not valid JSON or TOML"):
        load_definition("{nope", admin=False)


def test_scope_keeps_a_users_rule_on_their_own_campaigns() -> None:
    rule = parse_definition({"name": "n", "trigger": {"kind": "silence", "minutes": 5},
                             "actions": ["notify"], "scope": {"name": "night-*"}}, admin=False)
    covers = rule.scope.covers
    assert covers(campaign_id=1, name="night-1", grid_user="alice", owner="alice", admin=False)
    assert not covers(campaign_id=1, name="day-1", grid_user="alice", owner="alice", admin=False)
    assert not covers(campaign_id=1, name="night-1", grid_user="bob", owner="alice", admin=False)


def test_class_rules_never_fire_on_the_rules_own_events() -> None:
    trigger = parse_definition({"name": "n", "trigger": {"kind": "event", "class": "campaign"},
                                "actions": ["notify"]}, admin=False).trigger
    assert event_matches(trigger, code="BLACKLIST", class_="campaign")
    assert not event_matches(trigger, code="RULE_FIRED", class_="campaign")


def test_metric_and_cooldown() -> None:
    rule = parse_definition({"name": "n", "trigger": {"kind": "metric", "metric": "failure_rate",
                                                      "above": 0.5, "min_samples": 4},
                             "actions": ["pause"], "cooldown_minutes": 10}, admin=False)
    base = Counters(terminated=100, failures=10, resubmissions=0)
    assert not metric_crossed(rule.trigger, base, Counters(terminated=100, failures=13,
                                                           resubmissions=0))
    assert metric_crossed(rule.trigger, base, Counters(terminated=101, failures=14,
                                                       resubmissions=0))
    assert cooling_down(rule, NOW, NOW + timedelta(minutes=9))
    assert not cooling_down(rule, NOW, NOW + timedelta(minutes=10))
    assert not cooling_down(rule, None, NOW)
