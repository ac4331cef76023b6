"""The tap's rules (behaviour 14), as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cigri.domain.states import TapState
from cigri.domain.tap import (
    Tap,
    TapSettings,
    close_tap,
    decrease_tap,
    increase_tap,
    is_in_grace,
    new_tap,
    plan_tap,
    reset_tap,
    should_increase,
)

SETTINGS = TapSettings(initial=3, factor=1.5, maximum=100, grace=timedelta(seconds=60))
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _tap(**values: object) -> Tap:
    return Tap(cluster_id=1, campaign_id=1, **values)  # type: ignore[arg-type]


def test_a_new_tap_is_open_at_the_initial_rate() -> None:
    tap = new_tap(cluster_id=1, campaign_id=2, settings=SETTINGS)
    assert tap.is_open and tap.rate == 3


def test_rate_grows_by_the_factor_up_to_the_maximum() -> None:
    tap = _tap(rate=3)
    rates = []
    for _ in range(11):
        tap = increase_tap(tap, SETTINGS)
        rates.append(tap.rate)
    assert rates == [4, 6, 9, 13, 19, 28, 42, 63, 94, 100, 100]


def test_tap_closes_while_jobs_wait_and_keeps_its_first_close_date() -> None:
    tap = plan_tap(_tap(rate=9), has_waiting_jobs=True, now=NOW, settings=SETTINGS)
    assert tap.state is TapState.CLOSED and tap.close_date == NOW and tap.rate == 9
    later = plan_tap(tap, has_waiting_jobs=True, now=NOW + timedelta(seconds=10), settings=SETTINGS)
    assert later.close_date == NOW and later.rate == 9  # still in the grace period


def test_tap_closed_longer_than_the_grace_period_loses_a_factor_per_pass() -> None:
    tap = close_tap(_tap(rate=13), NOW)
    after = NOW + timedelta(seconds=61)
    tap = plan_tap(tap, has_waiting_jobs=True, now=after, settings=SETTINGS)
    assert tap.rate == 8
    tap = plan_tap(tap, has_waiting_jobs=True, now=after, settings=SETTINGS)
    assert tap.rate == 5
    for _ in range(5):
        tap = decrease_tap(tap, after, SETTINGS)
    assert tap.rate == 3  # never below the initial rate


def test_tap_reopens_in_a_pass_with_no_waiting_job() -> None:
    tap = plan_tap(close_tap(_tap(rate=6), NOW), has_waiting_jobs=False, now=NOW, settings=SETTINGS)
    assert tap.is_open and tap.rate == 6


def test_grace_period_is_only_for_recently_closed_taps() -> None:
    closed = close_tap(_tap(), NOW)
    assert is_in_grace(closed, NOW + timedelta(seconds=59), SETTINGS)
    assert not is_in_grace(closed, NOW + timedelta(seconds=60), SETTINGS)
    assert not is_in_grace(_tap(), NOW, SETTINGS)


def test_blacklisted_cluster_resets_taps_closed_at_the_initial_rate() -> None:
    tap = reset_tap(_tap(rate=42), NOW, SETTINGS)
    assert tap.rate == 3 and not tap.is_open


def test_tap_grows_only_after_a_pass_that_used_the_whole_rate() -> None:
    assert should_increase(_tap(rate=6), submitted=6, settings=SETTINGS)
    assert not should_increase(_tap(rate=6), submitted=2, settings=SETTINGS)
    assert not should_increase(close_tap(_tap(rate=6), NOW), submitted=6, settings=SETTINGS)
