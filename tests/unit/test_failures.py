"""Failure analysis (§3.5.4) and the retry budget, as pure functions."""

from __future__ import annotations

import pytest

from cigri.domain import failures
from cigri.domain.failures import analyze_failure, is_within_budget, stderr_path
from cigri.domain.oar import OarEvent, OarJob, OarState
from cigri.domain.states import PRIORITY_RESUBMIT, PRIORITY_RESUBMIT_END


def _job(*types: str, exit_code: int | None = None, state: OarState = OarState.ERROR) -> OarJob:
    return OarJob(id=7, state=state, exit_code=exit_code,
                  events=tuple(OarEvent(type=t, description=f"{t} happened") for t in types))


def test_exit_status_66_is_resubmitted_first_and_67_last() -> None:
    first = analyze_failure(_job(exit_code=66 * 256, state=OarState.TERMINATED))
    last = analyze_failure(_job(exit_code=67 * 256, state=OarState.TERMINATED))
    assert (first.event_code, first.resubmit, first.priority) == (
        failures.RESUBMIT, True, PRIORITY_RESUBMIT)
    assert (last.event_code, last.resubmit, last.priority) == (
        failures.RESUBMIT_END, True, PRIORITY_RESUBMIT_END)


@pytest.mark.parametrize("kill", ["BESTEFFORT_KILL", "FRAG_JOB_REQUEST", "EXTERMINATE_JOB"])
def test_kills_are_resubmitted_for_free(kill: str) -> None:
    outcome = analyze_failure(_job(kill))
    assert outcome.resubmit and not outcome.counts_against_budget
    assert outcome.priority == PRIORITY_RESUBMIT and outcome.affinity_penalty == 1


def test_walltime_kill_is_resubmitted_against_the_budget_with_double_penalty() -> None:
    outcome = analyze_failure(_job("WALLTIME"))
    assert outcome.resubmit and outcome.counts_against_budget and outcome.affinity_penalty == 2


def test_every_oar_event_is_scanned_not_only_the_first() -> None:
    # v3 stopped at the first recognised type; a best-effort kill is free whatever precedes it
    outcome = analyze_failure(_job("SWITCH_INTO_ERROR_STATE", "WALLTIME", "BESTEFFORT_KILL"))
    assert outcome.cause == "BESTEFFORT_KILL" and not outcome.counts_against_budget


def test_walltime_kill_implemented_by_a_frag_request_still_counts_as_walltime() -> None:
    outcome = analyze_failure(_job("WALLTIME", "FRAG_JOB_REQUEST", "SWITCH_INTO_ERROR_STATE"))
    assert outcome.cause == "WALLTIME" and outcome.counts_against_budget


def test_exit_error_blacklists_and_wants_the_stderr_tail() -> None:
    outcome = analyze_failure(_job(exit_code=256, state=OarState.TERMINATED))
    assert outcome.event_code == failures.EXIT_ERROR
    assert outcome.blacklists_campaign and outcome.needs_stderr and not outcome.resubmit
    assert outcome.counts_against_budget
    assert "exit status 256" in outcome.message


def test_prologue_and_epilogue_errors_have_their_own_codes() -> None:
    assert analyze_failure(_job(exit_code=256), tag="prologue").event_code == "PROLOG_EXIT_ERROR"
    assert analyze_failure(_job(exit_code=256), tag="epilogue").event_code == "EPILOG_EXIT_ERROR"


def test_working_directory_and_unknown_errors() -> None:
    assert analyze_failure(_job("WORKING_DIRECTORY")).event_code == "WORKING_DIRECTORY_ERROR"
    unknown = analyze_failure(_job("SOMETHING_ODD"))
    assert unknown.event_code == "UNKNOWN_ERROR" and "SOMETHING_ODD" in unknown.message
    assert analyze_failure(_job()).event_code == "UNKNOWN_ERROR"  # no events list at all


def test_a_job_oar_could_not_launch_is_resubmitted_against_the_budget() -> None:
    # the events of such a job on a real OAR 2.5.9 (a best-effort job launched as a normal job came)
    seen = _job("SCHEDULER_PRIORITY_UPDATED_START", "SWITCH_INTO_ERROR_STATE",
                "SCHEDULER_PRIORITY_UPDATED_STOP")
    outcome = analyze_failure(seen)
    assert (outcome.event_code, outcome.cause, outcome.resubmit) == ("RESUBMIT", "LAUNCH_ERROR", True)
    assert outcome.counts_against_budget and not outcome.blacklists_campaign
    assert not is_within_budget(outcome, budget_used=3, max_resubmissions=3)
    assert failures.LAUNCH_ERROR in failures.BUDGETED_EVENT_CODES
    # anything more telling keeps its own meaning
    assert analyze_failure(_job("SWITCH_INTO_ERROR_STATE", exit_code=256)).event_code == "EXIT_ERROR"
    assert analyze_failure(_job("SWITCH_INTO_ERROR_STATE", "WORKING_DIRECTORY")).event_code == \
        "WORKING_DIRECTORY_ERROR"
    assert analyze_failure(_job("SWITCH_INTO_ERROR_STATE", "OUTPUT_FILES")).event_code == \
        "UNKNOWN_ERROR"
    assert analyze_failure(_job("SCHEDULER_PRIORITY_UPDATED_START")).event_code == "UNKNOWN_ERROR"


def test_oar_automatic_resubmission_keeps_the_job_followed() -> None:
    job = OarJob(id=7, state=OarState.ERROR, events=(OarEvent(
        type="RESUBMIT_JOB_AUTOMATICALLY", description="job resubmitted (new id = 1234)"),))
    outcome = analyze_failure(job)
    assert outcome.event_code == failures.OAR_AUTO_RESUBMIT and outcome.new_remote_id == 1234


def test_budget_allows_free_kills_for_ever_and_caps_the_others() -> None:
    free = analyze_failure(_job("BESTEFFORT_KILL"))
    walltime = analyze_failure(_job("WALLTIME"))
    assert is_within_budget(free, budget_used=1000, max_resubmissions=0)
    assert is_within_budget(walltime, budget_used=2, max_resubmissions=3)
    assert not is_within_budget(walltime, budget_used=3, max_resubmissions=3)


def test_stderr_path_expands_the_job_id_in_the_launching_directory() -> None:
    job = OarJob(id=42, state=OarState.TERMINATED, launching_directory="/home/u",
                 stderr_file="OAR.%jobid%.stderr")
    assert stderr_path(job) == "/home/u/OAR.42.stderr"
    assert stderr_path(OarJob(id=1, state=OarState.ERROR)) is None
