"""The night window arithmetic and the job mode of each campaign type (`cigri.domain.night`)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from cigri.domain.clusters import Cluster
from cigri.domain.night import (
    JobMode,
    NightWindow,
    NightWindowError,
    describe_plan,
    job_mode,
    may_submit_normal_jobs,
)

PARIS = "Europe/Paris"


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_parse_reads_hours_weekends_and_zone() -> None:
    window = NightWindow.parse("20:00-07:00 weekends", PARIS)
    assert window == NightWindow(start=time(20), end=time(7), weekends=True, zone=PARIS)
    assert window.text == "20:00-07:00 weekends"
    assert NightWindow.parse(" 8:30 - 9:15 ").text == "08:30-09:15"


@pytest.mark.parametrize(("spec", "zone"), [
    pytest.param("20-07", "UTC", id="no-minutes"),
    pytest.param("24:00-07:00", "UTC", id="hour-out-of-range"),
    pytest.param("20:00-07:60", "UTC", id="minute-out-of-range"),
    pytest.param("20:00-07:00 sundays", "UTC", id="unknown-suffix"),
    pytest.param("20:00-07:00", "Mars/Olympus", id="unknown-zone"),
    pytest.param("", "UTC", id="empty"),
])
def test_parse_refuses_what_it_cannot_read(spec: str, zone: str) -> None:
    with pytest.raises(NightWindowError):
        NightWindow.parse(spec, zone)


@pytest.mark.parametrize(("moment", "night"), [
    pytest.param(_utc(2026, 1, 1, 12), False, id="thursday-noon"),
    pytest.param(_utc(2026, 1, 1, 19, 59), False, id="thursday-19:59"),
    pytest.param(_utc(2026, 1, 1, 20), True, id="thursday-20:00"),
    pytest.param(_utc(2026, 1, 1, 23, 59), True, id="before-midnight"),
    pytest.param(_utc(2026, 1, 2, 0, 0), True, id="after-midnight"),
    pytest.param(_utc(2026, 1, 2, 6, 59), True, id="friday-06:59"),
    pytest.param(_utc(2026, 1, 2, 7), False, id="friday-07:00"),
    pytest.param(_utc(2026, 1, 3, 12), True, id="saturday-noon"),
    pytest.param(_utc(2026, 1, 4, 12), True, id="sunday-noon"),
    pytest.param(_utc(2026, 1, 5, 6, 59), True, id="monday-06:59"),
    pytest.param(_utc(2026, 1, 5, 7), False, id="monday-07:00"),
])
def test_a_window_crossing_midnight_with_weekends(moment: datetime, night: bool) -> None:
    assert NightWindow.parse("20:00-07:00 weekends").is_night(moment) is night


def test_without_weekends_a_saturday_afternoon_is_day() -> None:
    assert not NightWindow.parse("20:00-07:00").is_night(_utc(2026, 1, 3, 12))


def test_a_window_inside_one_day() -> None:
    window = NightWindow.parse("01:00-05:00")
    assert not window.is_night(_utc(2026, 1, 1, 0, 59))
    assert window.is_night(_utc(2026, 1, 1, 1))
    assert not window.is_night(_utc(2026, 1, 1, 5))


def test_the_time_zone_moves_the_window() -> None:
    paris = NightWindow.parse("20:00-07:00", PARIS)  # UTC+1 in winter, UTC+2 in summer
    assert paris.is_night(_utc(2026, 1, 1, 19))
    assert not paris.is_night(_utc(2026, 7, 1, 17, 59))
    assert paris.is_night(_utc(2026, 7, 1, 18))
    tokyo = NightWindow.parse("20:00-07:00 weekends", "Asia/Tokyo")  # Friday 15:00 UTC = Sat
    assert tokyo.is_night(_utc(2026, 1, 2, 15))
    assert not NightWindow.parse("20:00-07:00 weekends").is_night(_utc(2026, 1, 2, 15))


def test_next_change_crosses_midnight_and_weekends() -> None:
    window = NightWindow.parse("20:00-07:00 weekends", PARIS)
    assert window.next_change(_utc(2026, 1, 1, 12)) == _utc(2026, 1, 1, 19)
    assert window.next_change(_utc(2026, 1, 1, 19)) == _utc(2026, 1, 2, 6)
    # Friday evening: night until Monday 07:00 Paris
    assert window.next_change(_utc(2026, 1, 2, 19)) == _utc(2026, 1, 5, 6)


def test_dst_changes_keep_local_edges() -> None:
    """Paris moves to summer time on 2026-03-29 (02:00 -> 03:00) and back on 2026-10-25."""
    window = NightWindow.parse("20:00-07:00", PARIS)
    assert window.next_change(_utc(2026, 3, 28, 12)) == _utc(2026, 3, 28, 19)  # UTC+1
    assert window.next_change(_utc(2026, 3, 28, 19)) == _utc(2026, 3, 29, 5)  # 07:00 UTC+2
    assert window.next_change(_utc(2026, 10, 24, 19)) == _utc(2026, 10, 25, 6)  # 07:00 UTC+1
    inside_gap = NightWindow.parse("02:30-04:00", PARIS)  # 02:30 does not exist on 03-29
    assert inside_gap.is_night(_utc(2026, 3, 29, 1, 30))  # 03:30 local
    assert not inside_gap.is_night(_utc(2026, 3, 29, 2))  # 04:00 local


def test_a_window_that_never_changes() -> None:
    assert NightWindow.parse("00:00-00:00").next_change(_utc(2026, 1, 1)) is None
    assert not NightWindow.parse("00:00-00:00").is_night(_utc(2026, 1, 1))


def test_a_cluster_uses_its_own_window_else_the_default() -> None:
    plain = Cluster(id=1, name="c", api_url="http://x/")
    own = Cluster(id=2, name="d", api_url="http://x/", night_window="22:00-06:00",
                  time_zone=PARIS)
    broken = Cluster(id=3, name="e", api_url="http://x/", night_window="late")
    defaults = {"default_window": "20:00-07:00 weekends", "default_zone": "UTC"}
    assert NightWindow.for_cluster(plain, **defaults).text == "20:00-07:00 weekends"
    assert NightWindow.for_cluster(own, **defaults) == NightWindow(
        start=time(22), end=time(6), weekends=False, zone=PARIS)
    assert NightWindow.for_cluster(broken, **defaults).text == "20:00-07:00 weekends"


@pytest.mark.parametrize(("kind", "test", "night", "mode"), [
    ("best-effort", False, False, JobMode.BESTEFFORT),
    ("besteffort", False, True, JobMode.BESTEFFORT),
    ("normal", False, False, JobMode.NORMAL),
    ("semi-best-effort", False, False, JobMode.BESTEFFORT),
    ("semi-best-effort", False, True, JobMode.NORMAL),
    ("nightly", False, False, JobMode.WAIT),
    ("nightly", False, True, JobMode.NORMAL),
    ("nightly", True, False, JobMode.NORMAL),
    ("best-effort", True, False, JobMode.NORMAL),
])
def test_job_mode(kind: str, test: bool, night: bool, mode: JobMode) -> None:
    assert job_mode(kind, is_test=test, is_night=night) is mode


def test_every_type_that_can_submit_normal_jobs_needs_authorisation_except_in_test_mode() -> None:
    assert [k for k in ("best-effort", "besteffort", "normal", "nightly", "semi-best-effort")
            if may_submit_normal_jobs(k, is_test=False)] == ["normal", "nightly",
                                                             "semi-best-effort"]
    assert not may_submit_normal_jobs("normal", is_test=True)


def test_describe_plan_says_now_and_next() -> None:
    window = NightWindow.parse("20:00-07:00 weekends", PARIS)
    noon, evening = _utc(2026, 1, 1, 12), _utc(2026, 1, 1, 20)
    assert describe_plan("semi-best-effort", is_test=False, window=window, now=noon) == \
        "best-effort jobs now; normal jobs from Thu 20:00 Europe/Paris"
    assert describe_plan("semi-best-effort", is_test=False, window=window, now=evening) == \
        "normal jobs now; best-effort jobs from Fri 07:00 Europe/Paris"
    assert describe_plan("nightly", is_test=False, window=window, now=noon) == \
        "waiting for the night (nothing submitted by day); normal jobs from Thu 20:00 Europe/Paris"
    assert describe_plan("nightly", is_test=False, window=window, now=evening) == \
        "normal jobs now; nothing new from Fri 07:00 Europe/Paris (jobs started keep running)"
    assert describe_plan("normal", is_test=False, window=window, now=noon) == \
        "normal jobs, day and night"
    assert describe_plan("best-effort", is_test=False, window=window, now=noon) == \
        "best-effort jobs, day and night"
    assert describe_plan("nightly", is_test=True, window=window, now=noon) == \
        "test mode: normal jobs, one at a time"
