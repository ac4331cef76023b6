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


# The codes most layers read, by their v3 names (§6.2 of the v3 server reference); the others are
# `EventCode` members.
BLACKLIST: Final = EventCode.BLACKLIST
USER_FRAG: Final = EventCode.USER_FRAG
