"""The dashboard's wording: durations, why a job ended, and the campaign's one-line verdict."""

from __future__ import annotations

from typing import Any

from cigri.api.ui.present import duration, job_ending, percent, verdict


def _verdict(**changes: Any) -> Any:
    values: dict[str, Any] = {"state": "in_treatment", "total": 100, "finished": 10,
                              "running": 0, "waiting": 0, "queued": 0, "open_events": [],
                              "blacklisted": [], "jobs_per_hour": 0.0, "eta_seconds": None}
    values.update(changes)
    return verdict(**values)


def test_durations_are_short_and_readable() -> None:
    assert [duration(s) for s in (None, 0, 12, 247, 7500, 3 * 86400 + 4 * 3600)] == [
        "—", "0s", "12s", "4m07s", "2h05m", "3d4h"]
    assert percent(3, 8) == 37.5 and percent(1, 0) == 0.0 and percent(9, 4) == 100.0


def test_a_jobs_end_says_why() -> None:
    assert job_ending("terminated", 0, []) == "done"
    assert job_ending("event", 3, ["EXIT_ERROR"]) == "error (non-zero exit)"
    assert job_ending("event", None, ["USER_FRAG", "EXIT_ERROR"]) == "cancelled by its owner"
    assert job_ending("event", None, ["RESUBMIT"]).startswith("killed (best-effort)")
    assert job_ending("event", None, ["WALLTIME"]) == "reached its walltime"
    assert job_ending("running", None, []) == "—"


def test_the_verdict_answers_is_it_progressing_and_if_not_why() -> None:
    assert _verdict(running=4, waiting=2, jobs_per_hour=120, eta_seconds=2700).text == (
        "Progressing: 4 running, 2 waiting, 120 tasks/h, about 45m00s left.")
    failed = {"campaign_id": 1, "code": "EXIT_ERROR", "cluster_name": "dahu", "message": "exit 3"}
    stuck = _verdict(open_events=[failed, {**failed, "code": "BLACKLIST", "message": None}])
    assert stuck.level == "warn"
    assert "2 open events need you (EXIT_ERROR on dahu: exit 3)" in stuck.text
    cluster_wide = {"campaign_id": None, "code": "CONNECTION_REFUSED", "cluster_name": "luke"}
    running = _verdict(running=3, open_events=[cluster_wide], blacklisted=["luke"])
    assert running.level == "ok" and running.text.startswith("Progressing")
    assert "Not used now: luke (CONNECTION_REFUSED); an admin must act" in running.text
    assert _verdict(blacklisted=["luke"]).level == "warn"
    assert _verdict(waiting=5).level == "wait"
    assert _verdict(state="paused", running=1).text.startswith("Paused")
    assert _verdict(state="terminated", finished=100).level == "done"
    assert "meta-scheduler" in _verdict().text


def test_the_throughput_chart_has_one_bar_per_minute() -> None:
    from datetime import UTC, datetime, timedelta

    from cigri.api.ui.present import bar_heights, minute_series

    start = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    series = minute_series({start: 4, start + timedelta(minutes=2): 1,
                            start + timedelta(minutes=9): 7}, start, 3)
    assert series == [4, 0, 1]
    assert bar_heights(series, height=36) == [36, 0, 9]
    assert bar_heights([0, 0]) == [0, 0] and bar_heights([100, 1]) == [36, 1]
