"""Events: what happened, to whom (cluster, campaign, job), and whether it still has effects.

An open event has effects (a `BLACKLIST` blocks, an open job event keeps its job active); a closed
one is history. Classes and codes follow CiGri v3 (`reference/cigri-v3-server.md` §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cigri.domain.event_codes import EventCode
from cigri.domain.states import EventClass, EventState


@dataclass(frozen=True, kw_only=True)
class Event:
    id: int
    class_: EventClass
    code: str
    state: EventState
    job_id: int | None = None
    cluster_id: int | None = None
    campaign_id: int | None = None
    parent: int | None = None  # for BLACKLIST: the event that caused it
    checked: bool = False
    notified: bool = False
    date_open: datetime | None = None
    date_closed: datetime | None = None
    date_update: datetime | None = None
    message: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state is EventState.OPEN


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event to record (`cigri.storage.events.record_events`); a closed one is history at
    once (`date_closed` is the recording time)."""

    class_: EventClass
    code: EventCode
    campaign_id: int | None = None
    cluster_id: int | None = None
    job_id: int | None = None
    parent: int | None = None
    message: str | None = None
    state: EventState = EventState.OPEN
    checked: bool = False
    notified: bool = False


# Codes the engine daemons raise or read (v3 names; see §6.2 of the v3 server reference).
BLACKLIST: Final = EventCode.BLACKLIST
USER_FRAG: Final = EventCode.USER_FRAG
REMOTE_WAITING_FRAG: Final = EventCode.REMOTE_WAITING_FRAG
QUEUED_FOR_TOO_LONG: Final = EventCode.QUEUED_FOR_TOO_LONG
CIGRI_WALLTIME: Final = EventCode.CIGRI_WALLTIME
NIKITA_KILL_PROBLEM: Final = EventCode.NIKITA_KILL_PROBLEM
NIKITA_CLEAN_AFFINITY: Final = EventCode.NIKITA_CLEAN_AFFINITY
ALMIGHTY_STARTING: Final = EventCode.ALMIGHTY_STARTING
ALMIGHTY_TERMINATING: Final = EventCode.ALMIGHTY_TERMINATING
RUNNER_FAILED: Final = EventCode.RUNNER_FAILED
DAEMON_RESTARTED: Final = EventCode.DAEMON_RESTARTED
CHILD_TIMEOUT: Final = EventCode.CHILD_TIMEOUT
