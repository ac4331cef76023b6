"""Colombo's rules (server §3.5.1–3.5.3, §3.3.3) as pure decisions, with the v3 fixes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cigri.domain import colombo
from cigri.domain.colombo import BlacklistScope
from cigri.domain.events import Event
from cigri.domain.states import EventClass, EventState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def ev(id_: int, code: str, class_: EventClass = EventClass.JOB, *,
       state: EventState = EventState.OPEN, **kw: Any) -> Event:
    return Event(id=id_, class_=class_, code=code, state=state, **kw)


@pytest.mark.parametrize(("code", "campaign", "expected"), [
    pytest.param("TIMEOUT", None, colombo.ClusterDecision(blacklist=BlacklistScope.CLUSTER),
                 id="timeout-cluster"),
    pytest.param("GET_JOBS", 4, colombo.ClusterDecision(blacklist=BlacklistScope.CAMPAIGN),
                 id="with-campaign"),
    pytest.param("CLUSTER_MANUALLY_DISABLED", 4,
                 colombo.ClusterDecision(blacklist=BlacklistScope.CLUSTER), id="manual"),
    pytest.param("PERMISSION_DENIED", None, colombo.ClusterDecision(), id="user-specific"),
    pytest.param("SUBMIT_JOB", None, colombo.ClusterDecision(close=True), id="transient"),
    pytest.param("UNDER_STRESS", None, colombo.ClusterDecision(), id="other"),
])
def test_cluster_event_decisions(code: str, campaign: int | None,
                                 expected: colombo.ClusterDecision) -> None:
    event = ev(1, code, EventClass.CLUSTER, cluster_id=2, campaign_id=campaign)
    assert colombo.decide_cluster_event(event) == expected


def test_delete_job_already_killed_is_closed_else_blacklists() -> None:
    killed = ev(1, "DELETE_JOB", EventClass.CLUSTER, message="This job was already killed")
    other = ev(2, "DELETE_JOB", EventClass.CLUSTER, message="boom")
    assert colombo.decide_cluster_event(killed).close
    assert colombo.decide_cluster_event(other).blacklist is BlacklistScope.CLUSTER


def test_one_campaign_blacklist_per_campaign_and_cluster() -> None:
    failure = ev(1, "EXIT_ERROR", campaign_id=3, cluster_id=1, job_id=9)
    assert colombo.plan_campaign_blacklist(failure, has_open_blacklist=False)
    assert not colombo.plan_campaign_blacklist(failure, has_open_blacklist=True)
    assert not colombo.plan_campaign_blacklist(
        ev(2, "RESUBMIT", campaign_id=3, cluster_id=1), has_open_blacklist=False)


def test_identical_failures_are_aggregated_per_campaign_cluster_and_code() -> None:
    events = [ev(5, "EXIT_ERROR", campaign_id=1, cluster_id=1, message="first"),
              ev(6, "EXIT_ERROR", campaign_id=1, cluster_id=1, message="second"),
              ev(7, "EXIT_ERROR", campaign_id=2, cluster_id=1, message="other campaign"),
              ev(8, "RESUBMIT", campaign_id=1, cluster_id=1)]
    groups = colombo.aggregate_failures(events)
    assert [(g.campaign_id, g.count, g.first_message) for g in groups] == [
        (1, 2, "first"), (2, 1, "other campaign")]


def test_autofix_selects_old_transient_cluster_errors() -> None:
    old = ev(1, "TIMEOUT", EventClass.CLUSTER, date_update=NOW - timedelta(seconds=31))
    young = ev(2, "TIMEOUT", EventClass.CLUSTER, date_update=NOW - timedelta(seconds=5))
    manual = ev(3, "GET_JOBS", EventClass.CLUSTER, date_update=NOW - timedelta(days=1))
    assert colombo.select_autofix([old, young, manual], now=NOW,
                                  delay=timedelta(seconds=30)) == [old]


def test_blacklist_lifted_only_when_no_cause_is_open() -> None:
    blacklist = ev(10, "BLACKLIST", EventClass.CAMPAIGN, campaign_id=1, cluster_id=2, parent=5)
    assert colombo.select_blacklists_to_lift([blacklist], open_event_ids={5},
                                             open_causes=set()) == []
    assert colombo.select_blacklists_to_lift([blacklist], open_event_ids=set(),
                                             open_causes={(1, 2)}) == []
    assert colombo.select_blacklists_to_lift([blacklist], open_event_ids=set(),
                                             open_causes={(1, 3)}) == [10]
    admin = ev(11, "BLACKLIST", EventClass.CLUSTER, cluster_id=2)
    assert colombo.select_blacklists_to_lift([admin], open_event_ids=set(),
                                             open_causes=set()) == []


def test_fix_with_resubmit_resubmits_each_parameter_once() -> None:
    events = [ev(1, "EXIT_ERROR", job_id=100, campaign_id=1),
              ev(2, "UNKNOWN_ERROR", job_id=100, campaign_id=1),  # same job, second event
              ev(3, "EXIT_ERROR", job_id=101, campaign_id=1),  # same parameter as job 100
              ev(4, "EXIT_ERROR", job_id=102, campaign_id=1),  # parameter already waiting
              ev(5, "RESUBMIT", job_id=103, campaign_id=1),  # Colombo already resubmitted it
              ev(6, "BLACKLIST", EventClass.CAMPAIGN, campaign_id=1),
              ev(7, "USER_FRAG", EventClass.CAMPAIGN, campaign_id=1),
              ev(8, "EXIT_ERROR", job_id=104, campaign_id=1),  # prologue job
              ev(9, "EXIT_ERROR", job_id=105, state=EventState.CLOSED)]
    plan = colombo.plan_fix(events, resubmit=True, campaign_wide=True,
                            job_params={100: 50, 101: 50, 102: 51, 103: 52, 104: None},
                            busy_params={51})
    assert plan.close_event_ids == (1, 2, 3, 4, 5, 8)
    assert plan.resubmit_job_ids == (100,)
    single = colombo.plan_fix([events[5]], resubmit=False, campaign_wide=False)
    assert single.close_event_ids == (6,) and single.resubmit_job_ids == ()


def test_a_failed_cluster_call_blacklists_the_cluster_only_for_a_transient_code() -> None:
    assert colombo.plan_cluster_error("TIMEOUT") == colombo.ClusterErrorPlan(
        code="TIMEOUT", blacklists_cluster=True)
    assert colombo.plan_cluster_error("GET_JOBS") == colombo.ClusterErrorPlan(
        code="GET_JOBS", blacklists_cluster=False)
    assert colombo.plan_cluster_error(None) == colombo.ClusterErrorPlan(
        code="CLUSTER_API_ERROR", blacklists_cluster=False)
