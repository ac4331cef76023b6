"""Notifications once and promptly (issue 16 point 7), against a real SMTP server (aiosmtpd) and a
real local HTTP receiver, with the notifier daemon, its outbox in PostgreSQL and a FakeClock:

- a relay that answers again gets the waiting messages at the next pass, not at the end of each
  message's exponential back-off (up to an hour), and probing a relay still down uses up no
  attempt;
- a message sent again after a notifier killed between the relay's acceptance and "mark sent"
  carries the same Message-ID (mail) / Idempotency-Key (webhook), so the receiver can drop it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cigri.config import Settings, build_settings
from cigri.daemons.notifier import NotifierDaemon, build_channels
from cigri.domain.clock import FakeClock
from cigri.domain.notifications import Notifier, OutgoingMessage
from cigri.domain.states import EventClass, EventState, NotificationType
from cigri.notify.webhook import WebhookNotifier
from cigri.storage import outbox
from cigri.storage.events import record_event
from tests.integration.notify_helpers import HttpReceiver, SmtpServer, add_campaign, subscribe

PASS = timedelta(seconds=10)  # NOTIFIER_INTERVAL


class Killed(BaseException):
    """The notifier process dies (SIGKILL) right after the relay accepted the message."""


class DiesAfterSending:
    """A channel that really sends through `channel`, then the process 'dies' before the
    notifier can mark the message sent."""

    def __init__(self, channel: Notifier) -> None:
        self.channel = channel

    def send(self, message: OutgoingMessage) -> None:
        self.channel.send(message)
        raise Killed


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


def _mail_settings(port: int) -> Settings:
    return build_settings({"NOTIFICATIONS_SMTP_SERVER": "127.0.0.1",
                           "NOTIFICATIONS_SMTP_PORT": port,
                           "NOTIFICATIONS_SMTP_FROM": "cigri@grid.example"})


def _daemon(engine: Engine, clock: FakeClock, channels: Mapping[NotificationType, Notifier],
            settings: Settings | None = None) -> NotifierDaemon:
    return NotifierDaemon(engine=engine, settings=settings or build_settings({}), clock=clock,
                          stop=threading.Event(), channels=channels, backoff_base_seconds=30)


def _finished(engine: Engine, clock: FakeClock, campaign_id: int) -> None:
    with engine.begin() as conn:
        record_event(conn, class_=EventClass.NOTIFY, code="FINISHED_CAMPAIGN",
                     campaign_id=campaign_id, state=EventState.CLOSED, now=clock.now(),
                     message=f"Campaign {campaign_id} is finished")


def _rows(engine: Engine) -> list[dict[str, object]]:
    with engine.begin() as conn:
        return outbox.list_messages(conn)


def test_mail_relay_back_after_a_long_outage_delivers_at_the_next_pass(
        pg_engine: Engine, tmp_path: Path, clock: FakeClock) -> None:
    smtp = SmtpServer(tmp_path)  # not started: the relay is down
    settings = _mail_settings(smtp.port)
    for user in ("alice", "bob"):
        subscribe(pg_engine, user=user, type_="mail", identity=f"{user}@example.org")
        _finished(pg_engine, clock, add_campaign(pg_engine, user=user))
    daemon = _daemon(pg_engine, clock, build_channels(settings), settings)

    for _ in range(6):  # six hours down: every message tried whenever due, backed off further
        daemon.run(loops=1)
        clock.advance(timedelta(hours=1))
    daemon.run(loops=1)
    first, second = _rows(pg_engine)
    assert (first["state"], second["state"]) == ("pending", "pending")
    assert first["attempts"] == 7
    backed_off = first["next_attempt_at"]
    assert backed_off == clock.now() + timedelta(minutes=32)

    for _ in range(3):  # still down: each pass tries the relay once, using up no attempt of
        clock.advance(PASS)  # the backed-off message
        daemon.run(loops=1)
    first, second = _rows(pg_engine)
    assert (first["attempts"], first["next_attempt_at"]) == (7, backed_off)
    assert all("127.0.0.1" in str(row["last_error"]) for row in (first, second))

    smtp.start()
    try:
        clock.advance(PASS)
        daemon.run(loops=1)  # the next pass after the relay is back: both delivered
        mails = smtp.messages()
        assert sorted(mail["To"] for mail in mails) == ["alice@example.org", "bob@example.org"]
        assert [row["state"] for row in _rows(pg_engine)] == ["sent", "sent"]
        clock.advance(timedelta(hours=2))
        daemon.run(loops=1)
        assert len(smtp.messages()) == 2  # and once
    finally:
        smtp.stop()


def test_webhook_receiver_back_gets_the_waiting_message_at_the_next_pass(
        pg_engine: Engine, receiver: HttpReceiver, clock: FakeClock) -> None:
    subscribe(pg_engine, user="alice", type_="webhook", identity=f"{receiver.url}/hook",
              format_="json")
    _finished(pg_engine, clock, add_campaign(pg_engine, user="alice"))
    daemon = _daemon(pg_engine, clock, {NotificationType.WEBHOOK: WebhookNotifier()})
    receiver.status = 503
    for _ in range(5):
        clock.advance(timedelta(minutes=20))
        daemon.run(loops=1)
    [row] = _rows(pg_engine)
    assert (row["state"], row["attempts"]) == ("pending", 5)
    assert row["next_attempt_at"] == clock.now() + timedelta(minutes=8)

    receiver.status = 200
    tried = len(receiver.received)
    clock.advance(PASS)
    daemon.run(loops=1)
    assert len(receiver.received) == tried + 1
    [row] = _rows(pg_engine)
    assert row["state"] == "sent"


def test_a_mail_sent_again_after_a_crash_keeps_its_message_id(
        pg_engine: Engine, tmp_path: Path, clock: FakeClock) -> None:
    smtp = SmtpServer(tmp_path)
    smtp.start()
    try:
        settings = _mail_settings(smtp.port)
        subscribe(pg_engine, user="alice", type_="mail", identity="alice@example.org")
        _finished(pg_engine, clock, add_campaign(pg_engine, user="alice"))
        mail = build_channels(settings)[NotificationType.MAIL]
        crashing = _daemon(pg_engine, clock, {NotificationType.MAIL: DiesAfterSending(mail)},
                           settings)
        crashing.compose_messages()
        with pytest.raises(Killed):
            crashing.send_due_messages()
        assert [row["state"] for row in _rows(pg_engine)] == ["pending"]

        clock.advance(timedelta(minutes=5))  # the dead notifier's claim expires
        assert _daemon(pg_engine, clock, {NotificationType.MAIL: mail},
                       settings).send_due_messages() == 1
        first, second = smtp.messages()
    finally:
        smtp.stop()
    assert first["Message-ID"] == second["Message-ID"]
    [row] = _rows(pg_engine)
    assert row["state"] == "sent"
    assert first["Message-ID"].startswith(f"<cigri.{row['id']}.")
    assert first["Message-ID"].endswith("@grid.example>")


def test_a_webhook_sent_again_after_a_crash_keeps_its_idempotency_key(
        pg_engine: Engine, receiver: HttpReceiver, clock: FakeClock) -> None:
    subscribe(pg_engine, user="alice", type_="webhook", identity=receiver.url)
    _finished(pg_engine, clock, add_campaign(pg_engine, user="alice"))
    crashing = _daemon(pg_engine, clock,
                       {NotificationType.WEBHOOK: DiesAfterSending(WebhookNotifier())})
    crashing.compose_messages()
    with pytest.raises(Killed):
        crashing.send_due_messages()
    clock.advance(timedelta(minutes=5))
    assert _daemon(pg_engine, clock,
                   {NotificationType.WEBHOOK: WebhookNotifier()}).send_due_messages() == 1

    first, second = receiver.received
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    [row] = _rows(pg_engine)
    assert first.headers["Idempotency-Key"].startswith(f"cigri.{row['id']}.")
    # another message gets another key
    _finished(pg_engine, clock, add_campaign(pg_engine, user="alice", name="c2"))
    clock.advance(PASS)
    _daemon(pg_engine, clock, {NotificationType.WEBHOOK: WebhookNotifier()}).run(loops=1)
    assert receiver.received[2].headers["Idempotency-Key"] != first.headers["Idempotency-Key"]
