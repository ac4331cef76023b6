"""`temporal_grouping: auto` (pure rules of `cigri.domain.batches`): a campaign is grouped once its
measured task duration is short compared with OAR's measured start cost on the cluster, in batches
that make the start cost a small part of each; the start cost is measured on submissions made into
free resources; the JDL accepts `auto`, and a site default turns the JDL's `false` into `auto`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cigri.config import build_settings
from cigri.domain.batches import AUTO, StartCost, auto_batch_size, grouping_of
from cigri.domain.errors import ConfigError
from cigri.domain.jdl import JDLDefaults, parse_jdl
from cigri.domain.jobs import LaunchContext

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _size(task_seconds: float | None, start_cost: float | None, *, target: float = 900,
          max_size: int = 50) -> int | None:
    return auto_batch_size(task_seconds=task_seconds, start_cost=start_cost,
                           target_seconds=target, max_size=max_size)


@pytest.mark.parametrize(("task_seconds", "start_cost", "expected"), [
    pytest.param(None, 3.0, None, id="no-duration-yet-no-grouping"),
    pytest.param(2.0, None, None, id="no-start-cost-yet-no-grouping"),
    pytest.param(2.0, 0.0, None, id="free-starts-need-no-grouping"),
    pytest.param(60.0, 3.0, None, id="long-tasks-are-not-grouped"),
    pytest.param(30.0, 3.0, None, id="ten-start-costs-is-long-enough"),
    pytest.param(2.0, 3.0, 30, id="start-cost-at-most-5-percent-of-a-batch"),
    pytest.param(10.0, 3.0, 6, id="ten-second-tasks"),
    pytest.param(0.5, 3.0, 50, id="capped-by-max-size"),
    pytest.param(0.0, 3.0, 50, id="sub-second-tasks-get-max"),
])
def test_auto_groups_only_tasks_short_against_the_start_cost(
        task_seconds: float | None, start_cost: float | None, expected: int | None) -> None:
    assert _size(task_seconds, start_cost) == expected


def test_auto_batches_stay_within_the_target_duration() -> None:
    assert _size(2.0, 3.0, target=20) == 10  # 20 s ÷ 2 s, not the 30 the start cost wants
    assert _size(2.0, 3.0, target=3) is None  # a batch of one is no batch


def test_the_start_cost_is_the_first_start_of_submissions_into_free_resources() -> None:
    cost = StartCost().submitted(1, T0).submitted(2, T0 + timedelta(seconds=10))
    assert cost.seconds is None and len(cost.pending) == 2
    cost = cost.started({1: T0 + timedelta(seconds=4)})
    assert cost.seconds == 4.0
    assert [submission for submission, _at in cost.pending] == [2]  # not started yet
    cost = cost.started({2: T0 + timedelta(seconds=12)})  # 2 s: a moving average
    assert cost.seconds == pytest.approx(0.3 * 2 + 0.7 * 4)
    assert cost.pending == ()


def test_the_start_cost_keeps_only_the_newest_probes() -> None:
    cost = StartCost()
    for submission in range(100):
        cost = cost.submitted(submission, T0)
    assert [submission for submission, _at in cost.pending] == list(range(80, 100))


def _context(value: str | None) -> LaunchContext:
    properties = {} if value is None else {"temporal_grouping": value}
    return LaunchContext(campaign_id=1, grid_user="u", cluster_login="u",
                         campaign_state="in_treatment", properties=properties)


@pytest.mark.parametrize(("value", "site", "expected"), [
    pytest.param("true", "false", "true", id="true"),
    pytest.param("auto", "false", AUTO, id="auto"),
    pytest.param("AUTO", "false", AUTO, id="auto-any-case"),
    pytest.param("false", "false", "false", id="false"),
    pytest.param(None, "false", "false", id="unset"),
    pytest.param("false", "auto", AUTO, id="site-default-auto"),
    pytest.param("true", "auto", "true", id="site-default-leaves-true"),
])
def test_grouping_of_a_campaign(value: str | None, site: str, expected: str) -> None:
    assert grouping_of(_context(value), site_default=site) == expected


def test_the_jdl_accepts_auto_and_stores_it() -> None:
    spec = parse_jdl({"name": "n", "nb_jobs": 2, "exec_file": "run",
                      "clusters": {"dahu": {"temporal_grouping": "auto"}, "luke": {}}},
                     defaults=JDLDefaults())
    by_name = {cluster.name: cluster for cluster in spec.clusters}
    assert by_name["dahu"].property_row()["temporal_grouping"] == "auto"
    assert not by_name["dahu"].has_temporal_grouping  # explicit grouping only
    assert by_name["luke"].property_row()["temporal_grouping"] == "false"
    assert spec.jdl["clusters"]["dahu"]["temporal_grouping"] == "auto"


def test_the_site_default_is_false_or_auto() -> None:
    assert build_settings({}).DEFAULT_TEMPORAL_GROUPING == "false"
    assert build_settings({"DEFAULT_TEMPORAL_GROUPING": "auto"}).DEFAULT_TEMPORAL_GROUPING == "auto"
    with pytest.raises(ConfigError, match="DEFAULT_TEMPORAL_GROUPING: expected false or auto"):
        build_settings({"DEFAULT_TEMPORAL_GROUPING": "true"})
