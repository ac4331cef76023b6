"""Event analysis rules (v3 Colombo, server §3.5.1–3.5.3 and §3.3.3) as a pure library the daemons
and the API call: what each cluster event code does, aggregation of identical job failures, when a
campaign blacklist is opened and lifted, which transient errors autofix re-probes, and what
`gridevents --fix [--resubmit]` closes and resubmits.

Per-job failure analysis (what one failed OAR job means) is `cigri.domain.failures`; applying the
decisions to rows is the caller's (updater, runner, API actions).

Fixed from v3: one campaign BLACKLIST per (campaign, cluster) however many jobs fail (v3 opened one
per failing job); a blacklist is lifted only when none of its causes is still open (v3 lifted it
when the one parent event was closed); a fix with resubmission resubmits each parameter once, and
never a job Colombo already resubmitted (`RESUBMIT`/`RESUBMIT_END`) nor a parameter that has a
newer job or a task waiting (v3 could resubmit the same task twice).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from cigri.domain.event_codes import EventCode
from cigri.domain.events import BLACKLIST, USER_FRAG, Event
from cigri.domain.states import EventClass

# §3.5.1: class-`cluster` codes that blacklist (the campaign if the event has one, else the cluster).
BLACKLISTING_CLUSTER_CODES: Final = frozenset({
    EventCode.REQUEST_TOO_LARGE, EventCode.POST_TIMEOUT, EventCode.TIMEOUT, EventCode.CONNECTION_RESET,
    EventCode.SOCKET_ERROR,
    EventCode.CONNECTION_REFUSED, EventCode.HOST_UNREACHABLE, EventCode.SSL_ERROR, EventCode.GET_JOBS,
    EventCode.GET_JOB, EventCode.GET_MEDIA,
    EventCode.GET_STRESS_FACTOR, EventCode.FILL_JOBS_CACHE, EventCode.RUNNER_GET_JOB_CHUNK_ERROR,
    EventCode.TOO_MANY_RESUBMIT,
})
USER_SPECIFIC_CODES: Final = frozenset({
    EventCode.PERMISSION_DENIED, EventCode.FORBIDDEN, EventCode.JWT_TOKEN_NOT_FOUND,
})
TRANSIENT_CODES: Final = frozenset({EventCode.RUNNER_GET_JOB_SERVER_ERROR, EventCode.SUBMIT_JOB})
CLUSTER_MANUALLY_DISABLED: Final = EventCode.CLUSTER_MANUALLY_DISABLED
DELETE_JOB: Final = EventCode.DELETE_JOB
ALREADY_KILLED: Final = "This job was already killed"

# §3.3.3: transient cluster errors the updater re-probes after AUTOFIX_DELAY.
AUTOFIX_CODES: Final = frozenset({
    EventCode.TIMEOUT, EventCode.POST_TIMEOUT, EventCode.CONNECTION_REFUSED, EventCode.SOCKET_ERROR,
    EventCode.HOST_UNREACHABLE,
    EventCode.CONNECTION_RESET, EventCode.GET_STRESS_FACTOR, EventCode.SSL_ERROR,
})

# Job events Colombo handles by resubmitting (never blacklist, never resubmitted again by a fix).
RESUBMIT_CODES: Final = frozenset({EventCode.RESUBMIT, EventCode.RESUBMIT_END, EventCode.STUCK_LAUNCHING_JOB})
# Job events that are traces or handled elsewhere, not failures of the campaign on the cluster.
NON_BLACKLISTING_JOB_CODES: Final = RESUBMIT_CODES | frozenset({
    EventCode.CIGRI_WALLTIME, USER_FRAG, EventCode.REMOTE_WAITING_FRAG, EventCode.OAR_AUTO_RESUBMIT,
    EventCode.FRAG_RESUBMIT,
    EventCode.MANUAL_EVENT,
})
# Codes a campaign-wide fix leaves open (the updater lifts blacklists; nikita ends cancellations).
NEVER_CLOSED_BY_FIX: Final = frozenset({BLACKLIST, USER_FRAG})


class BlacklistScope(StrEnum):
    NONE = "none"
    CAMPAIGN = "campaign"  # this campaign on this cluster
    CLUSTER = "cluster"  # the whole cluster


@dataclass(frozen=True, kw_only=True)
class ClusterDecision:
    """What Colombo does with one class-`cluster` event (it is then marked checked)."""

    blacklist: BlacklistScope = BlacklistScope.NONE
    close: bool = False


def decide_cluster_event(event: Event) -> ClusterDecision:
    """§3.5.1 for one cluster event."""
    if event.code in BLACKLISTING_CLUSTER_CODES:
        scope = BlacklistScope.CAMPAIGN if event.campaign_id is not None else BlacklistScope.CLUSTER
        return ClusterDecision(blacklist=scope)
    if event.code == CLUSTER_MANUALLY_DISABLED:
        return ClusterDecision(blacklist=BlacklistScope.CLUSTER)
    if event.code in TRANSIENT_CODES:
        return ClusterDecision(close=True)
    if event.code == DELETE_JOB:
        if ALREADY_KILLED in (event.message or ""):
            return ClusterDecision(close=True)
        scope = BlacklistScope.CAMPAIGN if event.campaign_id is not None else BlacklistScope.CLUSTER
        return ClusterDecision(blacklist=scope)
    return ClusterDecision()


def is_blacklisting_job_event(event: Event) -> bool:
    """§3.5.3: an open job failure that blacklists its campaign on its cluster."""
    return (event.class_ is EventClass.JOB and event.is_open
            and event.code not in NON_BLACKLISTING_JOB_CODES
            and event.campaign_id is not None and event.cluster_id is not None)


def plan_campaign_blacklist(failure: Event, *, has_open_blacklist: bool) -> bool:
    """Open a campaign BLACKLIST for this failure? Only if it blacklists and none is open yet for
    its (campaign, cluster): one blacklist aggregates every failure of the pair."""
    return is_blacklisting_job_event(failure) and not has_open_blacklist


@dataclass(frozen=True, kw_only=True)
class FailureGroup:
    """Identical failures: one campaign, one cluster, one code."""

    campaign_id: int
    cluster_id: int | None
    code: str
    event_ids: tuple[int, ...]
    first_message: str

    @property
    def count(self) -> int:
        return len(self.event_ids)


def aggregate_failures(events: Iterable[Event]) -> list[FailureGroup]:
    """Group job failures by (campaign, cluster, code), oldest event first in each group; the
    first message is the group's own (v3 took the first across campaigns)."""
    groups: dict[tuple[int, int | None, str], list[Event]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.id):
        if event.class_ is EventClass.JOB and event.campaign_id is not None \
                and event.code not in NON_BLACKLISTING_JOB_CODES:
            groups[(event.campaign_id, event.cluster_id, event.code)].append(event)
    return [FailureGroup(campaign_id=campaign, cluster_id=cluster, code=code,
                         event_ids=tuple(e.id for e in group),
                         first_message=group[0].message or "")
            for (campaign, cluster, code), group in groups.items()]


@dataclass(frozen=True, kw_only=True)
class ClusterErrorPlan:
    """What a failed call to a cluster's API records (runner and updater alike)."""

    code: EventCode  # the client's code, or CLUSTER_API_ERROR when it gave none
    # a transient network code (AUTOFIX_CODES): an open event with a whole-cluster BLACKLIST child,
    # unless the same code is open already (autofix lifts it); otherwise a closed trace event
    blacklists_cluster: bool


def plan_cluster_error(error_code: EventCode | None) -> ClusterErrorPlan:
    """§3.3.3: a failed cluster call blacklists the cluster only for a transient network code."""
    code = error_code or EventCode.CLUSTER_API_ERROR
    return ClusterErrorPlan(code=code, blacklists_cluster=code in AUTOFIX_CODES)


def select_autofix(events: Iterable[Event], *, now: datetime, delay: timedelta) -> list[Event]:
    """Open transient cluster errors whose last check is at least `delay` old (§3.3.3 step 1)."""
    return [e for e in events
            if e.is_open and e.class_ is EventClass.CLUSTER and e.code in AUTOFIX_CODES
            and e.date_update is not None and now - e.date_update >= delay]


def select_blacklists_to_lift(blacklists: Iterable[Event], *,
                              open_event_ids: Collection[int],
                              open_causes: Collection[tuple[int, int]]) -> list[int]:
    """Ids of open BLACKLIST events to close (§3.3.3 step 2, fixed).

    A blacklist is lifted when its parent is no longer open and, for a campaign blacklist, no other
    blacklisting failure of that campaign is still open on that cluster (`open_causes` holds the
    (campaign id, cluster id) pairs that have one). A blacklist without a parent stays (the admin's).
    """
    lifted = []
    for blacklist in blacklists:
        if not blacklist.is_open or blacklist.code != BLACKLIST or blacklist.parent is None:
            continue
        if blacklist.parent in open_event_ids:
            continue
        if (blacklist.campaign_id is not None and blacklist.cluster_id is not None
                and (blacklist.campaign_id, blacklist.cluster_id) in open_causes):
            continue
        lifted.append(blacklist.id)
    return lifted


@dataclass(frozen=True, kw_only=True)
class FixPlan:
    """What `gridevents --fix [--resubmit]` does: events to close, jobs whose task to resubmit."""

    close_event_ids: tuple[int, ...]
    resubmit_job_ids: tuple[int, ...]


def plan_fix(events: Sequence[Event], *, resubmit: bool, campaign_wide: bool,
             job_params: Mapping[int, int | None] | None = None,
             busy_params: Collection[int] = ()) -> FixPlan:
    """Close the given open events (a campaign-wide fix leaves BLACKLIST and USER_FRAG open); with
    `resubmit`, resubmit each failed job's parameter once.

    `job_params` maps job id → parameter id (None for prologue/epilogue jobs, never resubmitted);
    `busy_params` are parameters that already have a task waiting in the bag or a job newer than the
    failed one (resubmitted by Colombo or by an earlier fix): those are not resubmitted again.
    """
    to_close = [e for e in events if e.is_open
                and not (campaign_wide and e.code in NEVER_CLOSED_BY_FIX)]
    if not resubmit:
        return FixPlan(close_event_ids=tuple(e.id for e in to_close), resubmit_job_ids=())
    params = job_params or {}
    seen: set[int] = set(busy_params)
    jobs: list[int] = []
    for event in sorted(to_close, key=lambda e: e.id):
        if event.job_id is None or event.code in RESUBMIT_CODES or event.code == USER_FRAG:
            continue
        param = params.get(event.job_id) if job_params is not None else event.job_id
        if param is None or param in seen:
            continue
        seen.add(param)
        jobs.append(event.job_id)
    return FixPlan(close_event_ids=tuple(e.id for e in to_close), resubmit_job_ids=tuple(jobs))
