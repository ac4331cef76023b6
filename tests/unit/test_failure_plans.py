"""`cigri.domain.failures.plan_failure`: what the updater writes for a failed job (pure), and the
one rule for where a file an OAR job names lives (`OarJob.path_of`)."""

from __future__ import annotations

from datetime import UTC, datetime

from cigri.domain import failures
from cigri.domain.jobs import KEEP, JobChange, JobUpdate, UpdateKind
from cigri.domain.oar import OarEvent, OarJob, OarState
from cigri.domain.states import JobState


def oar_job(*events: str, exit_code: int | None = None, directory: str | None = None) -> OarJob:
    return OarJob(id=7, state=OarState.ERROR, exit_code=exit_code, launching_directory=directory,
                  events=tuple(OarEvent(type=e) for e in events))


def plan(job: OarJob, **budget: int) -> failures.FailurePlan:
    outcome = failures.analyze_failure(job)
    return failures.plan_failure(outcome, job, message=outcome.message, **budget)


def test_an_exit_error_is_an_open_event_that_blacklists_the_campaign() -> None:
    got = plan(oar_job(exit_code=256))
    assert (got.event_code, got.resubmit, got.blacklists_campaign) == ("EXIT_ERROR", False, True)
    assert got.affinity_penalty == 1


def test_a_walltime_kill_within_budget_is_resubmitted_with_a_warning() -> None:
    got = plan(oar_job("WALLTIME"), budget_used=0, max_resubmissions=3)
    assert got.resubmit and got.event_code == "RESUBMIT" and got.affinity_penalty == 2
    assert [n.code for n in got.notices] == ["WALLTIME_WARNING"]


def test_a_walltime_kill_over_budget_is_too_many_resubmit_and_not_resubmitted() -> None:
    got = plan(oar_job("WALLTIME"), budget_used=3, max_resubmissions=3)
    assert (got.event_code, got.resubmit, got.blacklists_campaign) == (
        "TOO_MANY_RESUBMIT", False, False)
    assert got.message.endswith("3 budgeted failures already, the campaign allows 3: "
                                "not resubmitted")


def test_a_launch_failure_leaves_a_notice() -> None:
    got = plan(oar_job("SWITCH_INTO_ERROR_STATE"), budget_used=0, max_resubmissions=3)
    assert got.resubmit and [n.code for n in got.notices] == ["LAUNCH_ERROR"]
    assert got.not_resubmitted_message.endswith("(not resubmitted: campaign finished or "
                                                "prologue/epilogue job)")


def test_a_relative_file_lives_in_the_launching_directory() -> None:
    assert oar_job(directory="/home/u/run/").path_of("out.7") == "/home/u/run/out.7"
    assert oar_job(directory="/home/u/run").path_of("/tmp/out") == "/tmp/out"
    assert oar_job().path_of("out.7") == "out.7"


def test_a_job_update_writes_only_what_oar_gave() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    running = JobUpdate(kind=UpdateKind.RUNNING, state=JobState.RUNNING, start_time=start)
    assert running.change(3) == JobChange(job_id=3, state=JobState.RUNNING, start_time=start)
    done = JobUpdate(kind=UpdateKind.TERMINATED, state=JobState.TERMINATED)
    assert done.change(3) == JobChange(job_id=3, state=JobState.TERMINATED, return_code=None)
    change = done.change(3)
    assert change is not None and change.start_time is KEEP
    assert JobUpdate(kind=UpdateKind.FAILED).change(3) is None
