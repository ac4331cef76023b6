"""OAR → cigri job state mapping (behaviour 15)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cigri.domain.jobs import Job, LaunchContext, RunnerOptions, UpdateKind, plan_job_update
from cigri.domain.oar import OarJob, OarState
from cigri.domain.states import JobState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _job(state: JobState = JobState.SUBMITTED) -> Job:
    return Job(id=1, campaign_id=1, cluster_id=1, state=state, param_id=1, remote_id=10)


def test_waiting_maps_to_remote_waiting_and_closes_the_tap() -> None:
    update = plan_job_update(_job(), OarJob(id=10, state=OarState.WAITING))
    assert update.state is JobState.REMOTE_WAITING and update.closes_tap


@pytest.mark.parametrize("state", [OarState.RUNNING, OarState.FINISHING, OarState.LAUNCHING],
                         ids=["running", "finishing", "launching"])
def test_running_states_map_to_running_with_start_time(state: OarState) -> None:
    update = plan_job_update(_job(), OarJob(id=10, state=state, start_time=T0))
    assert update.state is JobState.RUNNING and update.start_time == T0


def test_terminated_with_status_zero_terminates_with_stop_time_and_return_code() -> None:
    update = plan_job_update(_job(JobState.RUNNING),
                             OarJob(id=10, state=OarState.TERMINATED, exit_code=0, stop_time=T0))
    assert (update.kind, update.state, update.stop_time, update.return_code) == (
        UpdateKind.TERMINATED, JobState.TERMINATED, T0, 0)


def test_terminated_with_an_exit_code_and_error_ask_for_failure_analysis() -> None:
    assert plan_job_update(_job(), OarJob(id=10, state=OarState.TERMINATED, exit_code=256)
                           ).kind is UpdateKind.FAILED
    assert plan_job_update(_job(), OarJob(id=10, state=OarState.ERROR)).kind is UpdateKind.FAILED


@pytest.mark.parametrize("state", [OarState.HOLD, OarState.SUSPENDED, OarState.TO_LAUNCH],
                         ids=["hold", "suspended", "tolaunch"])
def test_other_states_change_nothing_but_close_the_tap(state: OarState) -> None:
    update = plan_job_update(_job(), OarJob(id=10, state=state))
    assert update.kind is UpdateKind.NONE and update.closes_tap


def test_runner_options_round_trip_and_tolerate_v3_strings() -> None:
    assert RunnerOptions.parse('{"besteffort": "true", "batch_id": 4}') == RunnerOptions(
        besteffort=True, batch_id=4)
    assert RunnerOptions.parse(RunnerOptions(besteffort=True).dump()).besteffort
    assert RunnerOptions.parse(None) == RunnerOptions() == RunnerOptions.parse("garbage")


def test_test_mode_is_never_best_effort() -> None:
    def context(**props: str) -> LaunchContext:
        return LaunchContext(campaign_id=1, grid_user="u", cluster_login="u",
                             campaign_state="in_treatment", properties=props)

    assert context().is_besteffort
    assert not context(type="normal").is_besteffort
    assert not context(type="best-effort", test_mode="true").is_besteffort
