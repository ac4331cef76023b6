"""A campaign as the rest of cigri sees it (one `campaigns` row), the rule deciding on which
clusters a finished campaign's epilogue still has to run (`next_epilogue_step`), and when a
campaign left without any usable cluster is reported (`plan_stranded_events`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from cigri.domain.event_codes import EventCode
from cigri.domain.states import CampaignState


@dataclass(frozen=True, kw_only=True)
class Campaign:
    id: int
    grid_user: str
    state: CampaignState
    jobs_type: str
    name: str | None
    submission_time: datetime | None
    completion_time: datetime | None
    nb_jobs: int  # number of parameters (tasks) of the campaign
    jdl: str | None  # the expanded JDL as JSON text


# --- where a campaign's epilogue runs ------------------------------------------------------------

EPILOGUE_SKIPPED: Final = EventCode.EPILOGUE_SKIPPED


@dataclass(frozen=True, kw_only=True)
class EpilogueSite:
    """A cluster where a campaign defines an epilogue, with the facts that decide whether (and
    when) it runs there. A removed cluster takes its campaign properties with it: never a site."""

    campaign_id: int
    cluster_id: int
    cluster_name: str
    has_worked: bool  # a task job of the campaign went there, or a prologue terminated there
    has_terminated: bool  # an epilogue job terminated there
    is_in_flight: bool  # an epilogue job is on OAR (launching, submitted, waiting or running)
    is_to_launch: bool  # an epilogue job was created there but no runner took it yet
    is_enabled: bool
    is_blacklisted: bool  # any open BLACKLIST holds the campaign off the cluster
    blocked_since: datetime | None  # oldest of those whose cause is still open (not lifting)


class EpilogueStep(StrEnum):
    NOT_NEEDED = "not_needed"  # nothing of the campaign ran there
    DONE = "done"
    PENDING = "pending"  # created or on OAR: wait for it
    RUN = "run"  # create it now
    WAIT = "wait"  # blacklisted there, not for long yet
    SKIP = "skip"  # cannot run there: the campaign finishes without it


SETTLED_EPILOGUE_STEPS: Final = frozenset({EpilogueStep.NOT_NEEDED, EpilogueStep.DONE,
                                           EpilogueStep.SKIP})


def next_epilogue_step(site: EpilogueSite, *, now: datetime,
                       blacklist_wait: timedelta) -> EpilogueStep:
    """What to do about a drained campaign's epilogue on one cluster.

    The epilogue runs where the campaign ran (a task job, or a terminated prologue, v3's documented
    "after the campaign's last job there"), not on every cluster of the JDL. A disabled cluster
    cannot run it: skipped at once (and a created one no runner took is withdrawn). A blacklisted
    one is waited for `blacklist_wait` from the opening of its oldest lasting blacklist (a transient
    outage lifts itself), then skipped. An epilogue already on OAR is always waited for.
    """
    if site.has_terminated:
        return EpilogueStep.DONE
    if not site.has_worked:
        return EpilogueStep.NOT_NEEDED
    if site.is_in_flight:
        return EpilogueStep.PENDING
    if not site.is_enabled or (site.blocked_since is not None
                               and now - site.blocked_since >= blacklist_wait):
        return EpilogueStep.SKIP
    if site.is_to_launch:
        return EpilogueStep.PENDING
    return EpilogueStep.WAIT if site.is_blacklisted else EpilogueStep.RUN


def is_epilogue_settled(site: EpilogueSite, *, now: datetime, blacklist_wait: timedelta) -> bool:
    """Nothing left to wait for on this cluster before the campaign may terminate."""
    return next_epilogue_step(site, now=now, blacklist_wait=blacklist_wait) \
        in SETTLED_EPILOGUE_STEPS


def epilogue_skip_message(site: EpilogueSite) -> str:
    """The EPILOGUE_SKIPPED event's message: which cluster and why."""
    if not site.is_enabled:
        why = "the cluster is disabled"
    else:
        since = site.blocked_since.isoformat(timespec="seconds") if site.blocked_since else "?"
        why = f"the campaign has been blacklisted there since {since}"
    return (f"The epilogue of campaign {site.campaign_id} did not run on {site.cluster_name}: "
            f"{why}. The campaign finished without it.")


# --- campaigns left without a cluster ------------------------------------------------------------

NO_USABLE_CLUSTER: Final = EventCode.NO_USABLE_CLUSTER


def plan_stranded_events(stranded: Collection[int], open_events: Mapping[int, Sequence[int]]
                         ) -> tuple[list[int], list[int]]:
    """Which campaigns get a NO_USABLE_CLUSTER event (stranded: tasks left, every cluster of
    theirs disabled or removed) and which open ones to close (their campaign is no longer
    stranded: a cluster came back, or it ended). One open event per campaign, never one a pass.
    `open_events` maps a campaign to its open NO_USABLE_CLUSTER events."""
    to_open = sorted(set(stranded) - set(open_events))
    to_close = sorted(event_id for campaign_id, ids in open_events.items()
                      if campaign_id not in stranded for event_id in ids)
    return to_open, to_close


def stranded_message(campaign_id: int, remaining_tasks: int) -> str:
    return (f"Campaign {campaign_id} has {remaining_tasks} task(s) left but none of its clusters "
            "is enabled any more (disabled or removed by an admin): nothing runs until one is "
            "enabled again, or cancel the campaign.")
