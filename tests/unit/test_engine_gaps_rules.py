"""The pure rules behind the engine-gap fixes: where a finished campaign's epilogue still has to
run (`next_epilogue_step`), which epilogue jobs the meta-scheduler creates or withdraws, and when a
campaign left without a usable cluster is reported."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cigri.domain.campaigns import (
    EpilogueSite,
    EpilogueStep,
    epilogue_skip_message,
    is_epilogue_settled,
    next_epilogue_step,
    plan_stranded_events,
)
from cigri.domain.scheduling import EPILOGUE, TaggedJobPlan, plan_epilogues

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
WAIT = timedelta(minutes=15)
SITE = EpilogueSite(campaign_id=1, cluster_id=2, cluster_name="c2", has_worked=True,
                    has_terminated=False, is_in_flight=False, is_to_launch=False, is_enabled=True,
                    is_blacklisted=False, blocked_since=None)


@pytest.mark.parametrize(("changes", "step"), [
    pytest.param({}, EpilogueStep.RUN, id="usable"),
    pytest.param({"has_terminated": True, "is_enabled": False}, EpilogueStep.DONE, id="done"),
    pytest.param({"has_worked": False}, EpilogueStep.NOT_NEEDED, id="never-ran-there"),
    pytest.param({"is_in_flight": True, "is_enabled": False}, EpilogueStep.PENDING,
                 id="on-oar-even-if-disabled"),
    pytest.param({"is_to_launch": True}, EpilogueStep.PENDING, id="created"),
    pytest.param({"is_enabled": False}, EpilogueStep.SKIP, id="disabled"),
    pytest.param({"is_enabled": False, "is_to_launch": True}, EpilogueStep.SKIP,
                 id="disabled-with-untaken-job"),
    pytest.param({"is_blacklisted": True, "blocked_since": NOW - WAIT + timedelta(seconds=1)},
                 EpilogueStep.WAIT, id="blacklisted-recently"),
    pytest.param({"is_blacklisted": True, "blocked_since": NOW - WAIT}, EpilogueStep.SKIP,
                 id="blacklisted-for-the-whole-wait"),
    pytest.param({"is_blacklisted": True, "blocked_since": None}, EpilogueStep.WAIT,
                 id="blacklist-being-lifted"),
])
def test_next_epilogue_step(changes: dict[str, object], step: EpilogueStep) -> None:
    site = replace(SITE, **changes)  # type: ignore[arg-type]
    assert next_epilogue_step(site, now=NOW, blacklist_wait=WAIT) is step
    assert is_epilogue_settled(site, now=NOW, blacklist_wait=WAIT) is (
        step in {EpilogueStep.DONE, EpilogueStep.NOT_NEEDED, EpilogueStep.SKIP})


def test_epilogue_plan_creates_usable_ones_and_withdraws_untaken_ones_that_cannot_run() -> None:
    usable = replace(SITE, cluster_id=1, cluster_name="c1")
    disabled = replace(SITE, is_enabled=False, is_to_launch=True)
    waiting = replace(SITE, campaign_id=3, is_blacklisted=True, blocked_since=NOW)
    plan = plan_epilogues([usable, disabled, waiting], now=NOW, blacklist_wait=WAIT)
    assert plan.create == [TaggedJobPlan(campaign_id=1, cluster_id=1, tag=EPILOGUE)]
    assert plan.withdraw == [(1, 2)]


def test_skip_messages_say_which_cluster_and_why() -> None:
    assert "did not run on c2: the cluster is disabled" in epilogue_skip_message(
        replace(SITE, is_enabled=False))
    assert "blacklisted there since 2026-01-01T11:00:00+00:00" in epilogue_skip_message(
        replace(SITE, is_blacklisted=True, blocked_since=NOW - timedelta(hours=1)))


def test_stranded_campaigns_get_one_event_closed_once_they_are_not_stranded() -> None:
    assert plan_stranded_events({1: 5, 2: 3}, {}) == ([1, 2], [])
    assert plan_stranded_events({1: 5}, {1: [10]}) == ([], [])  # never one a pass
    assert plan_stranded_events({}, {1: [10, 11]}) == ([], [10, 11])
