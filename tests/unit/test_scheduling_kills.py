"""Pure kill rules: walltime parsing of any length (v3 never fired at >= 23:30), overdue and
long-waiting checks, and one delete per distinct remote job or per array of a dying campaign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cigri.domain.kills import (
    KillTarget,
    has_waited_too_long,
    is_overdue,
    parse_walltime,
    plan_remote_kills,
)
from cigri.domain.states import JobState

NOW = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("00:10:00", timedelta(minutes=10), id="minutes"),
    pytest.param("23:30:00", timedelta(hours=23, minutes=30), id="v3-bug-threshold"),
    pytest.param("120:00:00", timedelta(hours=120), id="days"),
    pytest.param("2:5", timedelta(hours=2, minutes=5), id="hh-mm"),
    pytest.param("3", timedelta(hours=3), id="hours-only"),
    pytest.param("soon", None, id="garbage"),
    pytest.param("", None, id="empty"),
])
def test_parse_walltime(text: str, expected: timedelta | None) -> None:
    assert parse_walltime(text) == expected


def _target(job_id: int, **kwargs: object) -> KillTarget:
    values: dict[str, object] = {"job_id": job_id, "campaign_id": 1, "cluster_id": 1,
                                 "state": JobState.RUNNING, "remote_id": 100 + job_id,
                                 "login": "u"}
    values.update(kwargs)
    return KillTarget(**values)  # type: ignore[arg-type]


def test_overdue_only_past_walltime_plus_thirty_minutes() -> None:
    started = NOW - timedelta(hours=24, minutes=29)
    job = _target(1, start_time=started, walltime="23:59:00")
    assert not is_overdue(job, NOW, "01:00:00")
    assert is_overdue(job, NOW + timedelta(minutes=1, seconds=1), "01:00:00")
    assert not is_overdue(_target(2, start_time=started, state=JobState.REMOTE_WAITING), NOW,
                          "00:01:00")


def test_waiting_too_long_counts_from_submission() -> None:
    job = _target(1, state=JobState.REMOTE_WAITING, submission_time=NOW - timedelta(seconds=901))
    assert has_waited_too_long(job, NOW, timedelta(seconds=900))
    assert not has_waited_too_long(job, NOW, timedelta(seconds=902))


def test_one_delete_per_remote_job_or_per_array_of_a_dying_campaign() -> None:
    targets = [_target(1, remote_id=7), _target(2, remote_id=7), _target(3, remote_id=8),
               _target(4, remote_id=None), _target(5, cluster_id=2, remote_id=7),
               _target(6, campaign_id=9, remote_id=20, array_id=20),
               _target(7, campaign_id=9, remote_id=21, array_id=20)]
    kills = plan_remote_kills(targets, whole_campaigns=frozenset({9}))
    assert [(k.cluster_id, k.remote_id, k.is_array, k.job_ids) for k in kills] == [
        (1, 7, False, (1, 2)), (1, 8, False, (3,)), (1, 20, True, (6, 7)), (2, 7, False, (5,))]
