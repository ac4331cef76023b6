"""Notification decisions (v3 judas + Colombo `notify`, server §3.5.6–3.6): which events become which
messages, for whom, at which severity; one message per campaign and error code instead of one per
job; a per-subscriber rate cap; retry back-off of a failed send. Also the `Notifier` seam the
channels (`cigri.notify`) implement.

Pure: takes events (with the names the templates need), subscriptions and counts, returns drafts
and outgoing messages. The notifier daemon reads the rows, renders the drafts' templates and stores
the messages in the outbox, in the transaction that marks the events notified.

Fixed from v3: aggregation keeps each campaign's own first message (v3 took the first event across
campaigns), the removal of internal codes skips none, new-campaign messages exist, and a problem that
is still open and already reported does not send again on every new failing job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from cigri.domain.errors import CigriError
from cigri.domain.event_codes import EventCode
from cigri.domain.events import Event
from cigri.domain.states import EventClass, EventState, NotificationType, Severity

# What users call each channel (`gridnotify`, the API's /notifications/<kind>, the dashboard).
CHANNEL_KINDS: Final = {"mail": NotificationType.MAIL.value, "jabber": NotificationType.XMPP.value,
                        "webhook": NotificationType.WEBHOOK.value,
                        "apprise": NotificationType.APPRISE.value,
                        "log": NotificationType.LOG.value}

ADMIN: Final = "%%admin%%"  # v3's pseudo-user whose subscriptions receive admin messages

# Internal codes never notified (server §3.5.6 step 1).
INTERNAL_CODES: Final = frozenset({
    EventCode.RESUBMIT, EventCode.RESUBMIT_END, EventCode.FRAG, EventCode.QUEUED_FOR_TOO_LONG,
})

# Job failures sent as one message per campaign and code (v3 list, plus the other per-job errors
# that blacklist a campaign: one failing job or ten thousand, the user reads one message).
AGGREGATED_CODES: Final = frozenset({
    EventCode.RUNNER_SUBMIT_ERROR, EventCode.EXIT_ERROR, EventCode.RUNNER_SUBMIT_TIMEOUT,
    EventCode.RUNNER_SUBMIT_TOO_LARGE,
    EventCode.RUNNER_SUBMIT_TOKEN_NOT_FOUND, EventCode.RUNNER_SUBMIT_PERMISSION_DENIED,
    EventCode.WORKING_DIRECTORY_ERROR,
    EventCode.UNKNOWN_ERROR, EventCode.PROLOG_EXIT_ERROR, EventCode.EPILOG_EXIT_ERROR,
    EventCode.TOO_MANY_RESUBMIT,
    EventCode.RUNNER_GET_JOB_SERVER_ERROR, EventCode.RUNNER_GET_JOB_UNKNOWN_ERROR,
    EventCode.RUNNER_GET_REMOTE_ID_ERROR,
    EventCode.MISSING_OUTPUT_FILE, EventCode.OUTPUT_COLLECTION_FAILED,
})

HIGH_LOG_CODES: Final = frozenset({
    EventCode.RUNNER_FAILED, EventCode.ALMIGHTY_TERMINATING, EventCode.ALMIGHTY_STARTING,
    EventCode.JUDAS_FAILED, EventCode.NOTIFIER_FAILED,
    EventCode.DAEMON_RESTARTED,
})
MEDIUM_CODES: Final = frozenset({
    EventCode.TIMEOUT, EventCode.CONNECTION_REFUSED, EventCode.SOCKET_ERROR, EventCode.HOST_UNREACHABLE,
    EventCode.CONNECTION_RESET,
    EventCode.SSL_ERROR, EventCode.UNDER_STRESS, EventCode.WALLTIME_WARNING, EventCode.CIGRI_WALLTIME,
    EventCode.LAUNCH_ERROR,
})
# v3 sends FINISHED_CAMPAIGN at high (generic rule): subscribers at "high" still hear of it.
LOW_CODES: Final = frozenset({EventCode.NEW_CAMPAIGN})

NEW_CAMPAIGN: Final = EventCode.NEW_CAMPAIGN  # the notifier's own template code

MAX_LOG_MESSAGES: Final = 30  # v3 caps per pass
MAX_GENERIC_MESSAGES: Final = 15


class NotificationFailed(CigriError):
    """The channel could not deliver the message now; it will be retried."""


class NotificationRejected(NotificationFailed):
    """The channel refused the message for good (bad address, 4xx); it is not retried."""


@dataclass(frozen=True, kw_only=True)
class NotifiedEvent(Event):
    """An event as the notifier sees it, with the names its messages show."""

    campaign_owner: str | None = None
    campaign_name: str | None = None
    cluster_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class Draft:
    """One message to write, before fan-out to the recipient's subscriptions.

    `key` is stable for the events it covers, so a replayed pass produces the same outbox rows.
    `admin_severity` is the severity for admin subscriptions when the draft also goes to them.
    """

    key: str
    recipient: str  # grid user, or ADMIN
    severity: Severity
    template: str  # name of a template in cigri/notify/templates, without .j2
    context: Mapping[str, Any] = field(default_factory=dict)
    event_ids: tuple[int, ...] = ()
    also_admin: bool = False
    admin_severity: Severity | None = None


@dataclass(frozen=True, kw_only=True)
class Subscription:
    id: int
    grid_user: str
    type: NotificationType
    identity: str
    severity: Severity
    format: str | None = None


@dataclass(frozen=True, kw_only=True)
class OutgoingMessage:
    """One message for one subscription: an outbox row."""

    dedup_key: str
    grid_user: str
    type: NotificationType
    identity: str
    format: str | None
    severity: Severity
    subject: str
    body: str
    id: int | None = None  # the outbox row id, once stored
    attempts: int = 0


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What one notifier pass does: messages to draft, events to mark notified."""

    drafts: tuple[Draft, ...]
    notified_event_ids: tuple[int, ...]


class Notifier(Protocol):
    """One channel (mail, XMPP, webhook, Apprise). `send` delivers one message or raises
    `NotificationFailed` (retry later) / `NotificationRejected` (give up)."""

    def send(self, message: OutgoingMessage) -> None: ...


def parse_severity(value: str | None) -> Severity:
    """A stored severity; empty means medium (v3 gridnotify)."""
    try:
        return Severity((value or "medium").lower())
    except ValueError:
        return Severity.MEDIUM


def event_severity(event: NotifiedEvent) -> Severity:
    """Severity of a single event's message (v3 §3.5.6 steps 4-5)."""
    if event.class_ is EventClass.LOG:
        return Severity.HIGH if event.code in HIGH_LOG_CODES else Severity.LOW
    if event.code in LOW_CODES:
        return Severity.LOW
    if event.code in MEDIUM_CODES:
        return Severity.MEDIUM
    return Severity.HIGH


def is_notifiable(event: NotifiedEvent) -> bool:
    """v3 judas selection: open events, `notify` events and `log` events, minus internal codes."""
    if event.code in INTERNAL_CODES:
        return False
    return event.state is EventState.OPEN or event.class_ in {EventClass.NOTIFY, EventClass.LOG}


def _event_context(event: NotifiedEvent) -> dict[str, Any]:
    return {
        "event_id": event.id, "code": event.code, "class": event.class_.value,
        "campaign_id": event.campaign_id, "campaign_name": event.campaign_name,
        "cluster_id": event.cluster_id, "cluster_name": event.cluster_name,
        "job_id": event.job_id, "parent": event.parent, "message": event.message or "",
        "date_open": event.date_open.isoformat() if event.date_open else "",
        "owner": event.campaign_owner,
    }


def plan_notifications(events: Sequence[NotifiedEvent], *,
                       open_reported: Iterable[tuple[int, str]] = ()) -> Plan:
    """Turn unnotified events into drafts (v3 §3.5.6, in its order).

    `open_reported` holds the (campaign id, code) pairs already reported in an earlier message and
    still open (campaign blacklists as `blacklist_report_key`): new failures of the same pair join
    that report silently, and a campaign blacklisted on a cluster is reported once. Every given event ends up
    notified, whether it produced a message, was aggregated, capped or dropped.
    """
    reported = set(open_reported)
    drafts: list[Draft] = []
    remaining: list[NotifiedEvent] = []
    groups: dict[tuple[int, str], list[NotifiedEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.id):
        if not is_notifiable(event):
            continue
        if (event.code in AGGREGATED_CODES and event.campaign_id is not None
                and event.class_ in {EventClass.JOB, EventClass.NOTIFY}):
            groups[(event.campaign_id, event.code)].append(event)
        else:
            remaining.append(event)
    for (campaign_id, code), group in groups.items():
        if (campaign_id, code) in reported:
            continue
        first = group[0]
        drafts.append(Draft(
            key=f"agg:{code}:c{campaign_id}:e{first.id}", recipient=first.campaign_owner or ADMIN,
            severity=Severity.HIGH, template="aggregated", event_ids=tuple(e.id for e in group),
            context={**_event_context(first), "count": len(group),
                     "blacklists": first.class_ is EventClass.JOB,
                     "clusters": sorted({e.cluster_name or str(e.cluster_id) for e in group})},
        ))
    generic: list[NotifiedEvent] = []
    logs: list[NotifiedEvent] = []
    for event in remaining:
        if event.code == EventCode.BLACKLIST:
            pair = blacklist_report_key(event)
            if pair is not None:
                if pair in reported:
                    continue  # this campaign is already known blacklisted on this cluster
                reported.add(pair)
            drafts.append(_blacklist_draft(event))
        elif event.class_ is EventClass.LOG:
            logs.append(event)
        else:
            generic.append(event)
    drafts += _capped(logs, MAX_LOG_MESSAGES, "log", _log_draft)
    drafts += _capped(generic, MAX_GENERIC_MESSAGES, "generic", _generic_draft)
    notified = tuple(sorted(e.id for e in events))
    return Plan(drafts=tuple(drafts), notified_event_ids=notified)


def blacklist_report_key(event: NotifiedEvent) -> tuple[int, str] | None:
    """The `open_reported` entry of a campaign blacklist: (campaign id, "BLACKLIST@<cluster id>")."""
    if event.code != EventCode.BLACKLIST or event.campaign_id is None:
        return None
    return (event.campaign_id, f"{EventCode.BLACKLIST}@{event.cluster_id}")


def _blacklist_draft(event: NotifiedEvent) -> Draft:
    context = _event_context(event)
    if event.campaign_id is not None:
        return Draft(key=f"ev{event.id}", recipient=event.campaign_owner or ADMIN,
                     severity=Severity.HIGH, template="campaign_blacklist", context=context,
                     event_ids=(event.id,), also_admin=True, admin_severity=Severity.MEDIUM)
    return Draft(key=f"ev{event.id}", recipient=ADMIN, severity=Severity.HIGH,
                 template="cluster_blacklist", context=context, event_ids=(event.id,))


def _log_draft(event: NotifiedEvent) -> Draft:
    return Draft(key=f"ev{event.id}", recipient=ADMIN, severity=event_severity(event),
                 template="log_event", context=_event_context(event), event_ids=(event.id,))


def _generic_draft(event: NotifiedEvent) -> Draft:
    templates: dict[str, str] = {NEW_CAMPAIGN: "new_campaign",
                                 EventCode.FINISHED_CAMPAIGN: "campaign_finished"}
    template = templates.get(event.code, "event")
    recipient = event.campaign_owner if event.campaign_id is not None else None
    return Draft(key=f"ev{event.id}", recipient=recipient or ADMIN,
                 severity=event_severity(event), template=template,
                 context=_event_context(event), event_ids=(event.id,))


def _capped(events: Sequence[NotifiedEvent], cap: int, kind: str,
            make: Callable[[NotifiedEvent], Draft]) -> list[Draft]:
    """At most `cap` drafts; past it one "too many" draft replaces the rest (v3 sent cap-1)."""
    if len(events) <= cap:
        return [make(event) for event in events]
    kept = [make(event) for event in events[: cap - 1]]
    rest = events[cap - 1:]
    kept.append(Draft(key=f"toomany:{kind}:e{rest[0].id}", recipient=ADMIN,
                      severity=Severity.HIGH, template="too_many",
                      context={"kind": kind, "count": len(rest),
                               "codes": sorted({e.code for e in rest})},
                      event_ids=tuple(e.id for e in rest)))
    return kept


def recipients_of(draft: Draft, *, admins: Iterable[str]) -> list[tuple[str, Severity]]:
    """(grid user whose subscriptions get the draft, severity for them)."""
    admin_users = [ADMIN, *sorted(set(admins))]
    if draft.recipient == ADMIN:
        return [(user, draft.severity) for user in admin_users]
    found = [(draft.recipient, draft.severity)]
    if draft.also_admin:
        severity = draft.admin_severity or draft.severity
        found += [(user, severity) for user in admin_users if user != draft.recipient]
    return found


def wants(subscription: Subscription, severity: Severity) -> bool:
    """A subscription gets messages at or above its severity (v3: rank ≤ message rank)."""
    return subscription.severity.rank <= severity.rank


def fan_out(draft: Draft, subject: str, body: str, *,
            subscriptions: Mapping[str, Sequence[Subscription]],
            admins: Iterable[str] = (), channels: Iterable[NotificationType] | None = None,
            ) -> list[OutgoingMessage]:
    """One outgoing message per subscription that wants the draft. A subscription reached twice
    (an admin who owns the campaign) gets it once, at the higher severity."""
    enabled = None if channels is None else set(channels)
    chosen: dict[int, tuple[Subscription, Severity]] = {}
    for user, severity in recipients_of(draft, admins=admins):
        for subscription in subscriptions.get(user, ()):
            if enabled is not None and subscription.type not in enabled:
                continue
            if not wants(subscription, severity):
                continue
            known = chosen.get(subscription.id)
            if known is None or known[1].rank < severity.rank:
                chosen[subscription.id] = (subscription, severity)
    return [
        OutgoingMessage(dedup_key=f"{draft.key}:s{sub.id}", grid_user=sub.grid_user, type=sub.type,
                        identity=sub.identity, format=sub.format, severity=severity,
                        subject=subject, body=body)
        for sub, severity in (chosen[key] for key in sorted(chosen))
    ]


def apply_rate_cap(messages: Sequence[OutgoingMessage], *, sent_last_hour: Mapping[str, int],
                   cap: int, summary_key: str) -> list[OutgoingMessage]:
    """Keep at most `cap` messages per (type, identity) per hour (counting `sent_last_hour`,
    keyed `type:identity`). When messages are dropped, the last kept slot becomes a summary saying
    how many were held back (they are all visible with gridevents). `cap` 0 disables the cap."""
    if cap <= 0:
        return list(messages)
    by_target: dict[str, list[OutgoingMessage]] = defaultdict(list)
    for message in messages:
        by_target[f"{message.type.value}:{message.identity}"].append(message)
    kept: list[OutgoingMessage] = []
    for target, group in by_target.items():
        room = cap - sent_last_hour.get(target, 0)
        if len(group) <= room:
            kept += group
            continue
        if room <= 0:
            continue
        kept += group[: room - 1]
        dropped = group[room - 1:]
        first = dropped[0]
        kept.append(replace(
            first, dedup_key=f"{summary_key}:{target}", severity=Severity.HIGH,
            subject=f"{len(dropped)} more notifications held back",
            body=(f"The notification rate cap ({cap} per hour) was reached: {len(dropped)} "
                  "messages were not sent. Check them with gridevents.\nFirst held back: "
                  f"{first.subject}"),
        ))
    return kept


def next_attempt(attempts: int, now: datetime, *, base_seconds: float = 30.0,
                 max_seconds: float = 3600.0) -> datetime:
    """When to retry after `attempts` failed sends: exponential back-off, capped."""
    delay = min(base_seconds * (2 ** max(attempts - 1, 0)), max_seconds)
    return now + timedelta(seconds=delay)
