"""The notifier (`cigri-notifier`, v3 judas): turns events into messages and delivers them.

Owns two steps per pass:
1. **compose**: read the unnotified events (v3 selection: open, `notify` and `log` events), decide
   the drafts (`cigri.domain.notifications.plan_notifications`: severity, one message per campaign
   and error code, caps), render them from the Jinja2 templates, fan them out to the subscriptions
   that want them (`user_notifications`), apply the per-subscriber rate cap, and store them in the
   outbox (`notification_messages`, unique `dedup_key`), **in the transaction that marks the events
   notified**. A crash before the commit leaves the events unnotified and no message; after it, both.
2. **send**: claim due outbox messages (a lease pushes `next_attempt_at` ahead and counts the
   attempt; commit), send each outside any transaction, then mark it sent in a new transaction.
   A failed send is retried with exponential back-off (`NotificationFailed`) or given up
   (`NotificationRejected`, or `NOTIFIER_MAX_ATTEMPTS` reached). A channel that is down loses
   nothing: its messages wait in the outbox. Per route (`outbox.Route`: the SMTP relay, the XMPP
   server, one webhook or Apprise URL): a route that failed is not tried again in the pass; a route whose
   messages all wait out a back-off is probed once per pass with one of them (a failed probe is
   not a counted attempt); the first success on a route makes all its waiting messages due at
   once, so they go out at the first pass after the relay answers again.

Crash window: a notifier killed after a successful send and before "mark sent" sends that message
again once its lease expires (at-least-once). Every send of a message carries the same key
(`cigri.notify.templates.message_key`: the mail Message-ID, the webhook `Idempotency-Key`, and the
same header on Apprise's `json://`, `form://` and `xml://`) so the receiver can drop that
duplicate; nothing else is ever duplicated. Apprise URLs hold tokens: the log shows them masked.

Settings: NOTIFIER_INTERVAL, NOTIFICATIONS_RATE_CAP, NOTIFICATIONS_SMTP_*, NOTIFICATIONS_XMPP_*, ADMINS.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from sqlalchemy import Engine

from cigri.config import Settings
from cigri.daemons.base import Daemon, DaemonContext
from cigri.daemons.base import main as daemon_main
from cigri.domain import notifications as rules
from cigri.domain.clock import Clock
from cigri.domain.notifications import (
    Draft,
    NotificationFailed,
    NotificationRejected,
    Notifier,
    OutgoingMessage,
)
from cigri.domain.states import NotificationType
from cigri.notify.apprise_channel import AppriseNotifier, masked
from cigri.notify.templates import render
from cigri.storage import outbox

log = logging.getLogger(__name__)

EVENT_BATCH: Final = 2000
SEND_BATCH: Final = 50
SEND_LEASE: Final = timedelta(minutes=5)
MAX_ATTEMPTS: Final = 12  # about 8 hours of back-off at the default base and cap


class NotifierDaemon(Daemon):
    """One notifier for the whole grid (the role lease keeps a second instance on standby)."""

    role = "notifier"

    def __init__(self, *, engine: Engine, settings: Settings, clock: Clock,
                 stop: threading.Event, channels: Mapping[NotificationType, Notifier],
                 interval: timedelta | None = None, lease: timedelta | None = None,
                 owner: str | None = None, send_lease: timedelta = SEND_LEASE,
                 max_attempts: int = MAX_ATTEMPTS, backoff_base_seconds: float = 30.0,
                 backoff_max_seconds: float = 3600.0) -> None:
        super().__init__(engine=engine, settings=settings, clock=clock, stop=stop,
                         interval=interval, lease=lease, owner=owner)
        self.channels = dict(channels)
        self.send_lease = send_lease
        self.max_attempts = max_attempts
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds

    @classmethod
    def default_interval(cls, settings: Settings) -> timedelta:
        return settings.notifier_interval

    def run_once(self) -> bool:
        """Compose, then send; False (idle) when there was nothing to do either way."""
        composed = self.compose_messages()
        return bool(self.send_due_messages() or composed)

    # --- compose ---------------------------------------------------------------------------

    def compose_messages(self) -> int:
        """Turn every unnotified event into outbox messages; return how many were stored."""
        stored = 0
        while not self.stop.is_set():
            count, events_seen = self._compose_batch()
            stored += count
            if events_seen < EVENT_BATCH:
                break
        return stored

    def _compose_batch(self) -> tuple[int, int]:
        now = self.clock.now()
        admins = sorted(self.settings.admins)
        with self.engine.begin() as conn:
            outbox.skip_unselectable_events(conn)
            events = outbox.list_events_to_notify(conn, limit=EVENT_BATCH)
            if not events:
                return 0, 0
            plan = rules.plan_notifications(events, open_reported=outbox.list_open_reported(conn))
            users = {d.recipient for d in plan.drafts} | {rules.ADMIN, *admins}
            subscriptions = outbox.list_subscriptions_by_user(conn, users)
            messages: list[OutgoingMessage] = []
            for draft in plan.drafts:
                subject, body = self._render(draft)
                messages += rules.fan_out(draft, subject, body, subscriptions=subscriptions,
                                          admins=admins, channels=self.channels)
            recent = outbox.count_recent_messages(conn, since=now - timedelta(hours=1))
            messages = rules.apply_rate_cap(
                messages, sent_last_hour=recent, cap=self.settings.NOTIFICATIONS_RATE_CAP,
                summary_key=f"cap:e{events[0].id}")
            stored = outbox.enqueue_messages(conn, messages, now=now)
            outbox.mark_events_notified(conn, plan.notified_event_ids)
        if plan.drafts and not messages:
            log.debug("notifier: %d drafts had no subscriber", len(plan.drafts))
        if stored:
            log.info("notifier: %d events gave %d messages", len(events), stored,
                     extra={"action": "compose"})
        return stored, len(events)

    @staticmethod
    def _render(draft: Draft) -> tuple[str, str]:
        try:
            return render(draft.template, draft.context)
        except Exception:  # a broken template must not block every later event
            log.exception("notifier: template %s failed", draft.template)
            code = draft.context.get("code", draft.template)
            return f"cigri event {code}", str(draft.context.get("message") or code)

    # --- send ------------------------------------------------------------------------------

    def send_due_messages(self) -> int:
        """Send every due outbox message of an enabled channel, then probe each route whose
        messages all wait out a back-off; return how many were sent."""
        up: set[outbox.Route] = set()
        down: set[outbox.Route] = set()
        sent = self._send_due(up, down)
        with self.engine.begin() as conn:
            held = outbox.list_held_routes(conn, now=self.clock.now(), types=self.channels)
        for route in held:
            if self.stop.is_set():
                break
            if route in up or route in down:
                continue
            sent += self._probe(route, up, down)
            if route in up:
                sent += self._send_due(up, down)
        return sent

    def _send_due(self, up: set[outbox.Route], down: set[outbox.Route]) -> int:
        """Claim and send due messages, batch by batch; a route that fails is skipped for the
        rest of the pass (one failed connection per route and pass, not one per message)."""
        sent = 0
        while not self.stop.is_set():
            with self.engine.begin() as conn:
                batch = outbox.claim_due_messages(
                    conn, now=self.clock.now(), lease=self.send_lease, limit=SEND_BATCH,
                    types=self.channels, skip=down)
            routes_up = len(up)
            for message in batch:
                if self.stop.is_set():
                    return sent  # unsent claims expire with their lease
                if outbox.route_of(message) in down:
                    self._unclaim(message)
                    continue
                sent += self._send_one(message, up, down)
            # a route that answered in this batch made its waiting messages due: send them too
            if len(batch) < SEND_BATCH and len(up) == routes_up:
                break
        return sent

    def _unclaim(self, message: OutgoingMessage) -> None:
        """A claimed message whose route went down earlier in the batch: not tried, so its
        attempt is not counted; due again next pass."""
        assert message.id is not None
        with self.engine.begin() as conn:
            outbox.unclaim(conn, message.id, now=self.clock.now())

    def _send_one(self, message: OutgoingMessage, up: set[outbox.Route],
                  down: set[outbox.Route]) -> int:
        assert message.id is not None
        route = outbox.route_of(message)
        try:
            return self._deliver(message, route, up)
        except NotificationFailed as error:
            down.add(route)
            if message.attempts >= self.max_attempts:
                self._give_up(message, str(error))
                return 0
            retry_at = rules.next_attempt(message.attempts, self.clock.now(),
                                          base_seconds=self.backoff_base_seconds,
                                          max_seconds=self.backoff_max_seconds)
            log.info("notifier: %s to %s failed (attempt %d), retry at %s: %s",
                     message.type.value, shown(message.type, message.identity), message.attempts,
                     retry_at.isoformat(), error, extra={"action": "send_retry"})
            with self.engine.begin() as conn:
                outbox.mark_retry(conn, message.id, next_attempt_at=retry_at, error=str(error))
            return 0

    def _deliver(self, message: OutgoingMessage, route: outbox.Route,
                 up: set[outbox.Route]) -> int:
        """Send one claimed message: 1 when sent, 0 when refused for good (given up); either way
        the route answered. `NotificationFailed` (down) is the caller's to handle."""
        assert message.id is not None
        try:
            self.channels[message.type].send(message)
        except NotificationRejected as error:
            self._give_up(message, str(error))
            self._route_up(route, up)
            return 0
        with self.engine.begin() as conn:
            outbox.mark_sent(conn, message.id, now=self.clock.now())
        self._route_up(route, up)
        return 1

    def _route_up(self, route: outbox.Route, up: set[outbox.Route]) -> None:
        """The route answered: the messages waiting on it are due now (once per pass)."""
        if route in up:
            return
        up.add(route)
        with self.engine.begin() as conn:
            released = outbox.reset_backoff(conn, route, now=self.clock.now())
        if released:
            log.info("notifier: %s answers again; %d waiting messages are due now",
                     shown(*route), released, extra={"action": "route_up"})

    def _probe(self, route: outbox.Route, up: set[outbox.Route],
               down: set[outbox.Route]) -> int:
        """Try a held route with its first waiting message, without counting an attempt: the
        route's back-off ends the pass after it answers again, not at the end of a long delay."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            claimed = outbox.claim_probe(conn, route, now=now, lease=self.send_lease)
        if claimed is None:
            return 0
        message, waiting_until = claimed
        assert message.id is not None
        try:
            return self._deliver(message, route, up)
        except NotificationFailed as error:
            down.add(route)
            log.debug("notifier: %s still down: %s", shown(*route), error)
            with self.engine.begin() as conn:
                outbox.release_probe(conn, message.id, next_attempt_at=waiting_until,
                                     error=str(error))
            return 0

    def _give_up(self, message: OutgoingMessage, error: str) -> None:
        log.warning("notifier: giving up %s to %s after %d attempts: %s", message.type.value,
                    shown(message.type, message.identity), message.attempts, error,
                    extra={"action": "send_failed"})
        assert message.id is not None
        with self.engine.begin() as conn:
            outbox.mark_failed(conn, message.id, error=error)


def shown(kind: NotificationType, identity: str) -> str:
    """An identity as the log shows it: an Apprise URL masked (it holds the service's tokens), a
    channel's one server by its name."""
    if kind is NotificationType.APPRISE:
        return masked(identity)
    return identity or kind.value


def build_channels(settings: Settings) -> dict[NotificationType, Notifier]:
    """The channels the settings enable: mail when an SMTP server is set, XMPP when an XMPP server
    is set, webhooks, Apprise and the log always."""
    from cigri.notify.journal import LogNotifier
    from cigri.notify.mail import MailNotifier
    from cigri.notify.webhook import WebhookNotifier

    tag = settings.NOTIFICATIONS_SMTP_SUBJECT_TAG
    channels: dict[NotificationType, Notifier] = {
        NotificationType.WEBHOOK: WebhookNotifier(tag=tag),
        NotificationType.APPRISE: AppriseNotifier(tag=tag),
        NotificationType.LOG: LogNotifier()}
    if settings.NOTIFICATIONS_SMTP_SERVER:
        channels[NotificationType.MAIL] = MailNotifier(
            server=settings.NOTIFICATIONS_SMTP_SERVER, port=settings.NOTIFICATIONS_SMTP_PORT,
            sender=settings.NOTIFICATIONS_SMTP_FROM, starttls=settings.NOTIFICATIONS_SMTP_STARTTLS,
            user=settings.NOTIFICATIONS_SMTP_USER, password=settings.NOTIFICATIONS_SMTP_PASSWORD,
            subject_tag=settings.NOTIFICATIONS_SMTP_SUBJECT_TAG)
    if settings.NOTIFICATIONS_XMPP_SERVER:
        from cigri.notify.xmpp import XmppNotifier

        channels[NotificationType.XMPP] = XmppNotifier(
            server=settings.NOTIFICATIONS_XMPP_SERVER, port=settings.NOTIFICATIONS_XMPP_PORT,
            identity=settings.NOTIFICATIONS_XMPP_IDENTITY,
            password=settings.NOTIFICATIONS_XMPP_PASSWORD,
            subject_tag=settings.NOTIFICATIONS_SMTP_SUBJECT_TAG,
            verify_tls=settings.NOTIFICATIONS_XMPP_VERIFY_TLS)
    return channels


def build(context: DaemonContext) -> NotifierDaemon:
    return NotifierDaemon(engine=context.engine, settings=context.settings, clock=context.clock,
                          stop=context.stop, channels=build_channels(context.settings))


def main() -> None:
    """`cigri-notifier`."""
    daemon_main(build, name="notifier")


