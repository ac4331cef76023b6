"""Nikita's overdue rule for a sub-job of a temporal-grouping batch: the batch as a whole, its
walltime scaled by its number of tasks (pure rule of `cigri.domain.kills`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cigri.domain.kills import KillTarget, is_overdue
from cigri.domain.states import JobState

START = datetime(2026, 1, 1, tzinfo=UTC)


def _target(*, tag: str | None, batch_size: int | None) -> KillTarget:
    return KillTarget(job_id=1, campaign_id=1, cluster_id=1, state=JobState.RUNNING, remote_id=7,
                      login="u", tag=tag, start_time=START, walltime="00:10:00",
                      batch_size=batch_size)


@pytest.mark.parametrize(("tag", "batch_size", "minutes", "overdue"), [
    pytest.param(None, None, 41, True, id="single-job-past-walltime-and-grace"),
    pytest.param(None, 4, 41, True, id="array-job-size-ignored"),
    pytest.param("batch", 4, 41, False, id="batch-within-its-scaled-walltime"),
    pytest.param("batch", 4, 70, False, id="batch-at-scaled-walltime-in-grace"),
    pytest.param("batch", 4, 71, True, id="batch-past-scaled-walltime-and-grace"),
    pytest.param("batch", None, 41, True, id="batch-of-unknown-size-as-one-task"),
])
def test_a_batch_is_overdue_past_its_scaled_walltime(tag: str | None, batch_size: int | None,
                                                     minutes: int, overdue: bool) -> None:
    now = START + timedelta(minutes=minutes)
    assert is_overdue(_target(tag=tag, batch_size=batch_size), now, "01:00:00") is overdue
