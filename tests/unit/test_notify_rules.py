"""Notification decisions: selection, severity, aggregation, recipients and thresholds, the rate
cap, back-off; and every template renders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cigri.domain import notifications as rules
from cigri.domain.notifications import NotifiedEvent, OutgoingMessage, Subscription
from cigri.domain.states import EventClass, EventState, NotificationType, Severity
from cigri.notify.templates import render, template_names

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def ev(id_: int, code: str, class_: EventClass = EventClass.JOB, *,
       state: EventState = EventState.OPEN, **kw: Any) -> NotifiedEvent:
    kw.setdefault("campaign_owner", "alice" if kw.get("campaign_id") else None)
    return NotifiedEvent(id=id_, class_=class_, code=code, state=state, **kw)


def sub(id_: int, user: str, severity: Severity = Severity.LOW,
        type_: NotificationType = NotificationType.MAIL) -> Subscription:
    return Subscription(id=id_, grid_user=user, type=type_, identity=f"{user}{id_}@x",
                        severity=severity)


def test_failures_aggregate_per_campaign_and_code_with_their_own_first_message() -> None:
    events = [ev(1, "EXIT_ERROR", campaign_id=7, message="seven"),
              ev(2, "EXIT_ERROR", campaign_id=8, message="eight"),
              ev(3, "EXIT_ERROR", campaign_id=7, message="seven again"),
              ev(4, "RESUBMIT", campaign_id=7), ev(5, "RESUBMIT_END", campaign_id=7)]
    plan = rules.plan_notifications(events)
    assert [(d.context["campaign_id"], d.context["count"], d.context["message"])
            for d in plan.drafts] == [(7, 2, "seven"), (8, 1, "eight")]
    assert plan.notified_event_ids == (1, 2, 3, 4, 5)


def test_an_open_report_absorbs_new_failures() -> None:
    plan = rules.plan_notifications([ev(9, "EXIT_ERROR", campaign_id=7)],
                                    open_reported={(7, "EXIT_ERROR")})
    assert plan.drafts == () and plan.notified_event_ids == (9,)


def test_closed_job_events_are_not_notified_but_notify_and_log_events_are() -> None:
    plan = rules.plan_notifications([
        ev(1, "OAR_AUTO_RESUBMIT", state=EventState.CLOSED, campaign_id=1),
        ev(2, "FINISHED_CAMPAIGN", EventClass.NOTIFY, state=EventState.CLOSED, campaign_id=1),
        ev(3, "RUNNER_FAILED", EventClass.LOG, state=EventState.CLOSED)])
    assert [(d.template, d.recipient, d.severity) for d in plan.drafts] == [
        ("log_event", rules.ADMIN, Severity.HIGH),
        ("campaign_finished", "alice", Severity.HIGH)]


def test_severity_rules() -> None:
    assert rules.event_severity(ev(1, "TIMEOUT", EventClass.CLUSTER)) is Severity.MEDIUM
    assert rules.event_severity(ev(1, "NEW_CAMPAIGN", EventClass.NOTIFY)) is Severity.LOW
    assert rules.event_severity(ev(1, "USER_FRAG", EventClass.CAMPAIGN)) is Severity.HIGH
    assert rules.event_severity(ev(1, "SOMETHING", EventClass.LOG)) is Severity.LOW


def test_campaign_blacklist_goes_to_owner_high_and_admins_medium_once() -> None:
    blacklist = ev(4, "BLACKLIST", EventClass.CAMPAIGN, campaign_id=7, cluster_id=2)
    duplicate = ev(5, "BLACKLIST", EventClass.CAMPAIGN, campaign_id=7, cluster_id=2)
    plan = rules.plan_notifications([blacklist, duplicate])
    [draft] = plan.drafts
    subscriptions = {"alice": [sub(1, "alice", Severity.HIGH)],
                     rules.ADMIN: [sub(2, rules.ADMIN, Severity.MEDIUM)],
                     "root": [sub(3, "root", Severity.HIGH)]}
    messages = rules.fan_out(draft, "s", "b", subscriptions=subscriptions, admins=["root"])
    assert [(m.grid_user, m.severity) for m in messages] == [
        ("alice", Severity.HIGH), (rules.ADMIN, Severity.MEDIUM)]  # root wants high only
    assert [m.dedup_key for m in messages] == ["ev4:s1", "ev4:s2"]


def test_fan_out_skips_disabled_channels() -> None:
    draft = rules.Draft(key="k", recipient="alice", severity=Severity.HIGH, template="event")
    subscriptions = {"alice": [sub(1, "alice"), sub(2, "alice", type_=NotificationType.XMPP)]}
    messages = rules.fan_out(draft, "s", "b", subscriptions=subscriptions,
                             channels=[NotificationType.XMPP])
    assert [m.type for m in messages] == [NotificationType.XMPP]


def _message(key: str, identity: str = "a@x") -> OutgoingMessage:
    return OutgoingMessage(dedup_key=key, grid_user="a", type=NotificationType.MAIL,
                           identity=identity, format=None, severity=Severity.LOW, subject=key,
                           body="")


def test_rate_cap_keeps_room_and_summarises_the_rest() -> None:
    messages = [_message(f"m{i}") for i in range(5)] + [_message("other", "b@x")]
    kept = rules.apply_rate_cap(messages, sent_last_hour={"mail:a@x": 1}, cap=3,
                                summary_key="cap")
    assert [m.subject for m in kept] == ["m0", "4 more notifications held back", "other"]
    assert rules.apply_rate_cap(messages, sent_last_hour={"mail:a@x": 3}, cap=3,
                                summary_key="cap") == [messages[-1]]
    assert rules.apply_rate_cap(messages, sent_last_hour={}, cap=0, summary_key="c") == messages


def test_too_many_generic_events_are_capped() -> None:
    events = [ev(i, "UNDER_STRESS", EventClass.CLUSTER, cluster_id=1) for i in range(1, 21)]
    plan = rules.plan_notifications(events)
    assert len(plan.drafts) == rules.MAX_GENERIC_MESSAGES
    assert plan.drafts[-1].template == "too_many" and plan.drafts[-1].context["count"] == 6


def test_back_off_doubles_and_is_capped() -> None:
    assert rules.next_attempt(1, NOW) == NOW + timedelta(seconds=30)
    assert rules.next_attempt(3, NOW) == NOW + timedelta(seconds=120)
    assert rules.next_attempt(30, NOW) == NOW + timedelta(hours=1)


@pytest.mark.parametrize("name", template_names())
def test_every_template_renders_a_subject_and_a_body(name: str) -> None:
    context = {"event_id": 1, "code": "EXIT_ERROR", "class": "job", "campaign_id": 3,
               "campaign_name": "n", "cluster_id": 2, "cluster_name": "c", "job_id": 4,
               "parent": 9, "message": "m", "date_open": "", "owner": "alice", "count": 2,
               "clusters": ["c"], "kind": "log", "codes": ["X"], "blacklists": True}
    subject, body = render(name, context)
    assert subject and body and "\n" not in subject
