"""Rule definitions and decisions (`cigri.domain.automations`), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cigri.domain.automations import (
    Counters,
    RuleError,
    cluster_share,
    cooling_down,
    eta_too_late,
    event_matches,
    load_definition,
    metric_crossed,
    parse_definition,
    throughput_too_low,
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


def _rule(trigger: dict[str, object], actions: list[object] | None = None) -> object:
    return parse_definition({"name": "n", "trigger": trigger, "actions": actions or ["notify"]},
                            admin=False)


def test_the_new_triggers_and_actions_validate_with_one_line_per_problem() -> None:
    with pytest.raises(RuleError) as caught:
        parse_definition({"name": "n", "trigger": {"kind": "metric", "metric": "eta",
                                                   "after": "tomorrow", "above": 0.2},
                          "actions": [{"do": "blacklist"},
                                      {"do": "add_tasks", "params_file": "/etc/shadow"}]},
                         admin=False)
    problems = caught.value.problems
    assert "trigger: above does not apply to eta; give after" in problems
    assert any(p.startswith("trigger.after: an ISO date") for p in problems)
    assert any(p.startswith("actions[1].params_file: the server reads no file") for p in problems)
    assert any(p.startswith("actions: blacklist needs a cluster") for p in problems)
    with pytest.raises(RuleError, match=r"trigger\.on: one of blacklisted, stressed, back"):
        _rule({"kind": "cluster", "on": "down"})
    with pytest.raises(RuleError, match=r"trigger\.below: required for throughput"):
        _rule({"kind": "metric", "metric": "throughput"})


def test_a_cluster_trigger_carries_its_cluster_to_a_blacklist() -> None:
    rule = parse_definition({"name": "n", "trigger": {"kind": "cluster", "on": "back",
                                                      "clusters": ["a", "b"]},
                             "actions": ["blacklist", {"do": "add_tasks", "params": ["x 1"]}]},
                            admin=False)
    assert rule.trigger.codes == ("BLACKLIST", "UNDER_STRESS")
    assert rule.trigger.describe() == "cluster a,b back"
    assert rule.describe_actions() == "blacklist on the cluster, add 1 tasks"


def test_pace_and_share_decisions() -> None:
    throughput = parse_definition({"name": "n", "actions": ["notify"], "trigger": {
        "kind": "metric", "metric": "throughput", "below": 10, "window_minutes": 30}},
        admin=False).trigger
    assert throughput_too_low(throughput, 4) == 8.0
    assert throughput_too_low(throughput, 5) is None
    eta = parse_definition({"name": "n", "actions": ["notify"], "trigger": {
        "kind": "metric", "metric": "eta", "after": "2026-01-01T02:00:00+00:00",
        "window_minutes": 60}}, admin=False).trigger
    assert eta_too_late(eta, remaining=10, recent=10, now=NOW) == (False, NOW + timedelta(hours=1))
    assert eta_too_late(eta, remaining=30, recent=10, now=NOW) == (True, NOW + timedelta(hours=3))
    assert eta_too_late(eta, remaining=5, recent=0, now=NOW) == (True, None)
    assert eta_too_late(eta, remaining=0, recent=0, now=NOW) == (False, None)
    share = parse_definition({"name": "n", "actions": ["blacklist"], "trigger": {
        "kind": "metric", "metric": "cluster_error_share", "above": 0.6, "min_samples": 5}},
        admin=False).trigger
    assert cluster_share(share, {1: 10}, {1: 13, 2: 1}) is None  # 4 failures < min_samples
    assert cluster_share(share, {1: 10}, {1: 14, 2: 1}) == (1, 0.8, 5)
    assert cluster_share(share, {}, {1: 3, 2: 3}) is None
