"""Failure analysis (v3 "Colombo", §3.5.4–3.5.5): what a failed OAR job means for cigri.

Pure: takes the OAR record of a failed job and returns an outcome (resubmit or not, with which
priority, which event code, which affinity penalty, whether it counts against the campaign's retry
budget). The updater applies it. Fixed from v3: every OAR event is considered (not only up to the
first recognised one), `EXTERMINATE_JOB` is recognised, an OAR automatic resubmission keeps being
tracked, and walltime kills / exit errors are capped by a retry budget (`TOO_MANY_RESUBMIT`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from cigri.domain.event_codes import EventCode
from cigri.domain.oar import OarEventType, OarJob
from cigri.domain.states import (
    EXIT_RESUBMIT_FIRST,
    EXIT_RESUBMIT_LAST,
    PRIORITY_RESUBMIT,
    PRIORITY_RESUBMIT_END,
)

LAUNCH_ERROR: Final = EventCode.LAUNCH_ERROR.value  # the cause of a failure OAR never launched

# Event codes that count against the retry budget of a parameter (one per budgeted failure).
BUDGETED_EVENT_CODES: Final = frozenset({
    EventCode.WALLTIME_WARNING, EventCode.EXIT_ERROR, EventCode.LAUNCH_ERROR})

# OAR events that say nothing about why a job failed (the scheduler's bookkeeping).
_NOISE_PREFIXES: Final = ("SCHEDULER_PRIORITY_UPDATED",)

# Outcomes whose cause keeps polling going on a campaign blacklisted on the cluster (v3 §3.1.2).
EXIT_ERROR_CODES: Final = frozenset({EventCode.EXIT_ERROR, EventCode.WORKING_DIRECTORY_ERROR})

# OAR implements its kills with a frag request (and sometimes an exterminate), so those two only
# decide when no stronger reason is logged: a best-effort kill is never the task's fault (free),
# a walltime kill is (budgeted), a bare frag (nikita, an admin) is not (free).
_OTHER_KILLS: Final = (OarEventType.FRAG_JOB_REQUEST, OarEventType.EXTERMINATE_JOB)

_NEW_ID = re.compile(r"new id\s*=\s*(\d+)")
_ID_BEFORE_PAREN = re.compile(r"(\d+)\)")


@dataclass(frozen=True, kw_only=True)
class FailureOutcome:
    """What to do with a failed job. `event_code` is the job event to record."""

    event_code: EventCode
    cause: str  # the OAR event type or exit status that decided, for messages
    resubmit: bool = False
    priority: int = PRIORITY_RESUBMIT
    counts_against_budget: bool = False  # walltime kills and exit errors; preemption is free
    affinity_penalty: int = 1  # how much the parameter's affinity for the cluster drops
    blacklists_campaign: bool = False  # opens a campaign BLACKLIST on the cluster
    needs_stderr: bool = False  # message wants the stderr tail
    new_remote_id: int | None = None  # OAR resubmitted the job itself under this id
    message: str = ""


def _auto_resubmit_id(description: str) -> int | None:
    found = _NEW_ID.search(description) or _ID_BEFORE_PAREN.search(description)
    return int(found.group(1)) if found else None


def analyze_failure(oar_job: OarJob, *, tag: str | None = None) -> FailureOutcome:
    """Decide the outcome of a failed OAR job (state Error, or Terminated with exit code > 0)."""
    exit_status = oar_job.exit_status
    if exit_status == EXIT_RESUBMIT_FIRST:
        return FailureOutcome(event_code=EventCode.RESUBMIT, cause="Special_exit_status_66", resubmit=True,
                              message="Resubmit cause: Special_exit_status_66")
    if exit_status == EXIT_RESUBMIT_LAST:
        return FailureOutcome(event_code=EventCode.RESUBMIT_END, cause="Special_exit_status_67",
                              resubmit=True, priority=PRIORITY_RESUBMIT_END,
                              message="Resubmit cause: Special_exit_status_67")
    types = [event.type for event in oar_job.events]
    if OarEventType.BESTEFFORT_KILL in types:
        return FailureOutcome(event_code=EventCode.RESUBMIT, cause=OarEventType.BESTEFFORT_KILL,
                              resubmit=True,
                              message=f"Resubmit cause: {OarEventType.BESTEFFORT_KILL}")
    if OarEventType.WALLTIME in types:
        return FailureOutcome(event_code=EventCode.RESUBMIT, cause=OarEventType.WALLTIME,
                              resubmit=True, counts_against_budget=True, affinity_penalty=2,
                              message=f"Resubmit cause: {OarEventType.WALLTIME}")
    for kill in _OTHER_KILLS:
        if kill in types:
            return FailureOutcome(event_code=EventCode.RESUBMIT, cause=kill, resubmit=True,
                                  message=f"Resubmit cause: {kill}")
    if oar_job.exit_code is not None and oar_job.exit_code > 0:
        code = {"prologue": EventCode.PROLOG_EXIT_ERROR,
                "epilogue": EventCode.EPILOG_EXIT_ERROR}.get(tag or "", EventCode.EXIT_ERROR)
        return FailureOutcome(event_code=code, cause=f"exit status {exit_status}",
                              counts_against_budget=code == EventCode.EXIT_ERROR, blacklists_campaign=True,
                              needs_stderr=True,
                              message=f"The job exited with exit status {oar_job.exit_code};")
    if _is_launch_failure(oar_job, types):
        return FailureOutcome(event_code=EventCode.RESUBMIT, cause=LAUNCH_ERROR, resubmit=True,
                              counts_against_budget=True,
                              message=f"Resubmit cause: {EventCode.LAUNCH_ERROR} (OAR switched the job into "
                                      "Error before it ran, with no other reason)")
    if OarEventType.WORKING_DIRECTORY in types:
        return FailureOutcome(event_code=EventCode.WORKING_DIRECTORY_ERROR,
                              cause=OarEventType.WORKING_DIRECTORY, blacklists_campaign=True,
                              message="The working directory of the job could not be used.")
    for event in oar_job.events:
        if event.type == OarEventType.RESUBMIT_JOB_AUTOMATICALLY:
            new_id = _auto_resubmit_id(event.description)
            if new_id is not None:
                return FailureOutcome(event_code=EventCode.OAR_AUTO_RESUBMIT, cause=event.type,
                                      new_remote_id=new_id, affinity_penalty=0,
                                      message=f"OAR resubmitted the job: change the remote_id "
                                              f"from {oar_job.id} to {new_id}")
    raw = "; ".join(f"{event.type}: {event.description}" for event in oar_job.events)
    return FailureOutcome(event_code=EventCode.UNKNOWN_ERROR, cause="unknown", blacklists_campaign=True,
                          message=f"Unknown error; OAR events: {raw or 'none'}")


def _is_launch_failure(oar_job: OarJob, types: list[str]) -> bool:
    """OAR gave up launching the job (bipbip's SWITCH_INTO_ERROR_STATE and nothing else, no exit
    code): seen on real OAR 2.5.9 when a best-effort job is being launched as a normal job takes
    its cores. Not the task's fault, but budgeted so a cluster that never launches cannot loop."""
    if oar_job.exit_code is not None:
        return False
    telling = [t for t in types if not t.startswith(_NOISE_PREFIXES)]
    return bool(telling) and set(telling) == {OarEventType.SWITCH_INTO_ERROR_STATE}


def is_within_budget(outcome: FailureOutcome, *, budget_used: int, max_resubmissions: int) -> bool:
    """Whether a resubmitting outcome may still resubmit, given the budgeted failures already seen
    for this parameter (not counting this one). Free outcomes always may."""
    if not outcome.counts_against_budget:
        return True
    return budget_used < max_resubmissions


def stderr_path(oar_job: OarJob) -> str | None:
    """Absolute path of the job's stderr file, `%jobid%` expanded, or None if OAR did not say."""
    if not oar_job.stderr_file:
        return None
    return oar_job.path_of(oar_job.stderr_file.replace("%jobid%", str(oar_job.id)))


@dataclass(frozen=True, kw_only=True)
class Notice:
    """A closed `notify` event recorded beside a resubmission (a trace, budgeted or not)."""

    code: EventCode
    message: str


@dataclass(frozen=True, kw_only=True)
class FailurePlan:
    """What the updater writes for one failed job once it is in `event`: the affinity penalty,
    then either a resubmission (notices, the task back in the bag with `priority`, a closed
    job event) or an open job event (with a campaign blacklist if `blacklists_campaign`)."""

    event_code: EventCode
    message: str
    cause: str = ""  # the outcome's, for the resubmission counter
    affinity_penalty: int = 0
    resubmit: bool = False
    priority: int = PRIORITY_RESUBMIT
    notices: tuple[Notice, ...] = ()
    blacklists_campaign: bool = False

    @property
    def not_resubmitted_message(self) -> str:
        """The job event's message when the bag refused the task (campaign finished, or a
        prologue/epilogue job)."""
        return f"{self.message} (not resubmitted: campaign finished or prologue/epilogue job)"


def plan_failure(outcome: FailureOutcome, oar_job: OarJob, *, message: str,
                 budget_used: int | None = None,
                 max_resubmissions: int | None = None) -> FailurePlan:
    """The writes for a failed job whose OAR job did not come back by itself (`new_remote_id`).
    `message` is the outcome's, with the stderr tail if it wanted one; `budget_used` and
    `max_resubmissions` are given when the outcome counts against the parameter's budget."""
    penalty = outcome.affinity_penalty
    if not outcome.resubmit:
        return FailurePlan(event_code=outcome.event_code, message=message,
                           affinity_penalty=penalty,
                           blacklists_campaign=outcome.blacklists_campaign)
    if budget_used is not None and max_resubmissions is not None and not is_within_budget(
            outcome, budget_used=budget_used, max_resubmissions=max_resubmissions):
        return FailurePlan(event_code=EventCode.TOO_MANY_RESUBMIT, affinity_penalty=penalty,
                           message=f"{message}; {budget_used} budgeted failures already, the "
                                   f"campaign allows {max_resubmissions}: not resubmitted")
    notices: list[Notice] = []
    if outcome.cause == LAUNCH_ERROR:  # the budget counts these
        notices.append(Notice(code=EventCode.LAUNCH_ERROR,
                              message=f"OAR job {oar_job.id} was switched into Error before it "
                                      "ran; resubmitted"))
    if OarEventType.WALLTIME in oar_job.event_types:
        notices.append(Notice(code=EventCode.WALLTIME_WARNING,
                              message="resubmitted with modified affinity because of walltime "
                                      "reached"))
    return FailurePlan(event_code=outcome.event_code, message=message, cause=outcome.cause,
                       affinity_penalty=penalty, resubmit=True, priority=outcome.priority,
                       notices=tuple(notices))
