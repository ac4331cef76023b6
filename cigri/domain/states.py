"""States of campaigns, jobs, events and taps, and the rules that go with them."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class CampaignState(StrEnum):
    IN_TREATMENT = "in_treatment"
    PAUSED = "paused"
    TERMINATED = "terminated"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in {CampaignState.TERMINATED, CampaignState.CANCELLED}

    def can_move_to(self, target: CampaignState) -> bool:
        return target in CAMPAIGN_TRANSITIONS[self]


CAMPAIGN_TRANSITIONS: Final[dict[CampaignState, frozenset[CampaignState]]] = {
    CampaignState.IN_TREATMENT: frozenset(
        {CampaignState.PAUSED, CampaignState.TERMINATED, CampaignState.CANCELLED}
    ),
    CampaignState.PAUSED: frozenset({CampaignState.IN_TREATMENT, CampaignState.CANCELLED}),
    # Adding tasks to a terminated campaign revives it; nothing revives a cancelled one.
    CampaignState.TERMINATED: frozenset({CampaignState.IN_TREATMENT, CampaignState.CANCELLED}),
    CampaignState.CANCELLED: frozenset(),
}


class JobState(StrEnum):
    TO_LAUNCH = "to_launch"
    LAUNCHING = "launching"
    SUBMITTED = "submitted"
    REMOTE_WAITING = "remote_waiting"
    RUNNING = "running"
    BATCH_WAITING = "batch_waiting"
    TERMINATED = "terminated"
    EVENT = "event"

    @property
    def is_final(self) -> bool:
        return self in {JobState.TERMINATED, JobState.EVENT}

    @property
    def is_on_cluster(self) -> bool:
        """True when OAR knows the job and the updater must poll it."""
        return self in {
            JobState.SUBMITTED, JobState.REMOTE_WAITING, JobState.RUNNING, JobState.BATCH_WAITING
        }


ACTIVE_JOB_STATES: Final = frozenset(
    {JobState.TO_LAUNCH, JobState.LAUNCHING, JobState.SUBMITTED, JobState.REMOTE_WAITING,
     JobState.RUNNING, JobState.BATCH_WAITING}
)


class EventClass(StrEnum):
    CLUSTER = "cluster"
    CAMPAIGN = "campaign"
    JOB = "job"
    NOTIFY = "notify"
    LOG = "log"


class EventState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class TapState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class ClusterAPI(StrEnum):
    """REST flavour of a cluster (v3's `batch` column)."""

    OAR2_5 = "oar2_5"
    OAR3 = "oar3"
    G5K = "g5k"


class AuthType(StrEnum):
    NONE = "none"
    HEADER = "header"  # identity header on a trusted endpoint (v3 called this `none`/`password`)
    PASSWORD = "password"  # HTTP basic auth
    CERT = "cert"
    JWT = "jwt"


class NotificationType(StrEnum):
    MAIL = "mail"
    XMPP = "xmpp"
    WEBHOOK = "webhook"
    APPRISE = "apprise"  # identity: an Apprise URL (slack://, discord://, ntfy://, ...)
    LOG = "log"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return {"low": 0, "medium": 1, "high": 2}[self.value]


# Task priorities in bag_of_tasks (v3 values).
PRIORITY_NEW: Final = 10
PRIORITY_RESUBMIT: Final = 20
PRIORITY_RESUBMIT_END: Final = 0

# Exit statuses a user script returns to ask for a resubmission (v3 conventions).
EXIT_RESUBMIT_FIRST: Final = 66
EXIT_RESUBMIT_LAST: Final = 67

