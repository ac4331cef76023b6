"""Sizing the batches of a temporal-grouping pass: target duration ÷ average task duration, capped,
spread over the cluster's free resources (pure rules of `cigri.domain.batches`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cigri.domain.batches import (
    average_seconds,
    batch_size,
    free_resources,
    plan_batches,
    usage_max_age,
)
from cigri.domain.stats import UsageSample

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _span(seconds: float) -> tuple[datetime, datetime]:
    return T0, T0 + timedelta(seconds=seconds)


def test_average_ignores_incomplete_and_backwards_spans() -> None:
    spans = [_span(10), _span(30), (T0, None), (None, T0), (T0, T0 - timedelta(seconds=5))]
    assert average_seconds(spans) == 20
    assert average_seconds([]) is None
    assert average_seconds([(T0, None)]) is None


@pytest.mark.parametrize(("average", "expected"), [
    pytest.param(None, 2, id="unknown-starts-at-the-initial-tap"),
    pytest.param(90.0, 10, id="target-divided-by-average"),
    pytest.param(100.0, 9, id="rounded-down-to-stay-near-the-target"),
    pytest.param(1.0, 50, id="capped-by-max"),
    pytest.param(0.0, 50, id="sub-second-tasks-get-max"),
    pytest.param(5000.0, 1, id="longer-than-target-is-one"),
])
def test_batch_size_from_the_average_duration(average: float | None, expected: int) -> None:
    assert batch_size(average=average, target_seconds=900, max_size=50,
                      initial_size=2) == expected


def test_batch_size_never_below_one_nor_above_the_max() -> None:
    assert batch_size(average=None, target_seconds=900, max_size=3, initial_size=10) == 3
    assert batch_size(average=None, target_seconds=900, max_size=0, initial_size=10) == 1
    assert batch_size(average=10.0, target_seconds=900, max_size=-4, initial_size=2) == 1


@pytest.mark.parametrize(("tasks", "size", "free", "expected"), [
    pytest.param(0, 5, 10, [], id="nothing-to-do"),
    pytest.param(7, 2, None, [2, 2, 2, 1], id="no-usage-batches-of-size"),
    pytest.param(10, 10, 5, [2, 2, 2, 2, 2], id="spread-over-the-free-cores"),
    pytest.param(10, 10, 100, [1] * 10, id="more-free-cores-than-tasks"),
    pytest.param(100, 10, 3, [10] * 10, id="busy-cluster-keeps-the-size"),
    pytest.param(11, 10, 0, [6, 5], id="no-free-core-keeps-the-size-evenly"),
    pytest.param(9, 50, 4, [3, 2, 2, 2], id="uneven-largest-first"),
])
def test_plan_batches(tasks: int, size: int, free: int | None, expected: list[int]) -> None:
    plan = plan_batches(tasks, size=size, free=free)
    assert plan == expected
    assert sum(plan) == tasks and all(1 <= s <= max(1, size) for s in plan)


def test_free_resources_of_a_usage_sample() -> None:
    sample = UsageSample(cluster_id=1, max_resources=16, used_resources=5,
                         unavailable_resources=3, used_by_cigri=2)
    assert free_resources(sample) == 8
    assert free_resources(None) is None
    full = UsageSample(cluster_id=1, max_resources=4, used_resources=4,
                       unavailable_resources=2, used_by_cigri=0)
    assert free_resources(full) == 0


def test_a_usage_sample_is_trusted_for_three_periods_and_at_least_five_minutes() -> None:
    assert usage_max_age(60) == timedelta(minutes=5)
    assert usage_max_age(600) == timedelta(minutes=30)
