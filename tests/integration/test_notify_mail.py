"""Mail notifications against a real SMTP server process (aiosmtpd), through the notifier daemon
and its outbox: delivery, recipient/subject/body, an SMTP server down for a while (delivered once
back, not lost, not duplicated), and the claim lease that bounds the crash window."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cigri.config import Settings, build_settings
from cigri.daemons.notifier import NotifierDaemon, build_channels
from cigri.domain.clock import FakeClock
from cigri.domain.notifications import NotificationFailed, OutgoingMessage
from cigri.domain.states import EventClass, EventState, NotificationType, Severity
from cigri.notify.mail import MailNotifier
from cigri.storage import outbox
from cigri.storage.events import record_event
from cigri.storage.tables import events
from tests.integration.notify_helpers import SmtpServer, add_campaign, subscribe, wait_until


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _settings(port: int, **extra: object) -> Settings:
    return build_settings({"NOTIFICATIONS_SMTP_SERVER": "127.0.0.1",
                           "NOTIFICATIONS_SMTP_PORT": port,
                           "NOTIFICATIONS_SMTP_FROM": "cigri@grid.example", **extra})


def _daemon(engine: Engine, settings: Settings, clock: FakeClock) -> NotifierDaemon:
    return NotifierDaemon(engine=engine, settings=settings, clock=clock, stop=threading.Event(),
                          channels=build_channels(settings), backoff_base_seconds=30)


def _finish_event(engine: Engine, clock: FakeClock, campaign_id: int) -> int:
    with engine.begin() as conn:
        return record_event(conn, class_=EventClass.NOTIFY, code="FINISHED_CAMPAIGN",
                            campaign_id=campaign_id, state=EventState.CLOSED, now=clock.now(),
                            message=f"Campaign {campaign_id} is finished")


def test_mail_arrives_with_recipient_subject_and_body(smtp: SmtpServer) -> None:
    notifier = MailNotifier(server="127.0.0.1", port=smtp.port, sender="cigri@grid.example")
    notifier.send(OutgoingMessage(
        dedup_key="ev1:s1", grid_user="alice", type=NotificationType.MAIL,
        identity="alice@example.org", format=None, severity=Severity.HIGH,
        subject="3 EXIT_ERROR events on campaign #7", body="The first event says:\nboom"))
    [mail] = smtp.messages()
    assert mail["To"] == "alice@example.org"
    assert mail["From"] == "cigri@grid.example"
    assert mail["Subject"] == "[CIGRI] (high): 3 EXIT_ERROR events on campaign #7"
    assert "The first event says:\nboom" in mail.get_payload()
    assert "ev1.s1" in mail["Message-ID"]


def test_notifier_mails_a_finished_campaign_to_its_owner(pg_engine: Engine, smtp: SmtpServer,
                                                         clock: FakeClock) -> None:
    campaign = add_campaign(pg_engine, user="alice", name="render")
    subscribe(pg_engine, user="alice", type_="mail", identity="alice@example.org")
    subscribe(pg_engine, user="bob", type_="mail", identity="bob@example.org")
    event_id = _finish_event(pg_engine, clock, campaign)

    _daemon(pg_engine, _settings(smtp.port), clock).run(loops=1)

    [mail] = smtp.messages()
    assert mail["To"] == "alice@example.org"
    assert mail["Subject"] == f"[CIGRI] (high): Campaign #{campaign} (render) is finished"
    assert f"Campaign {campaign} is finished" in mail.get_payload()
    with pg_engine.begin() as conn:
        assert conn.execute(select(events.c.notified).where(events.c.id == event_id)).scalar()
        [row] = outbox.list_messages(conn)
    assert row["state"] == "sent" and row["attempts"] == 1


def test_severity_threshold_filters_subscriptions(pg_engine: Engine, smtp: SmtpServer,
                                                  clock: FakeClock) -> None:
    campaign = add_campaign(pg_engine, user="alice")
    subscribe(pg_engine, user="alice", type_="mail", identity="alice@example.org",
              severity="high")
    with pg_engine.begin() as conn:  # medium severity
        record_event(conn, class_=EventClass.NOTIFY, code="WALLTIME_WARNING",
                     campaign_id=campaign, state=EventState.CLOSED, now=clock.now())
    _daemon(pg_engine, _settings(smtp.port), clock).run(loops=1)
    assert smtp.messages() == []


def test_smtp_down_for_a_while_delivers_once_when_back(pg_engine: Engine, tmp_path: Path,
                                                       clock: FakeClock) -> None:
    smtp = SmtpServer(tmp_path)  # not started: the relay is down
    campaign = add_campaign(pg_engine, user="alice")
    subscribe(pg_engine, user="alice", type_="mail", identity="alice@example.org")
    _finish_event(pg_engine, clock, campaign)
    daemon = _daemon(pg_engine, _settings(smtp.port), clock)

    daemon.run(loops=1)
    clock.advance(timedelta(seconds=31))
    daemon.run(loops=1)
    with pg_engine.begin() as conn:
        [row] = outbox.list_messages(conn)
    assert row["state"] == "pending" and row["attempts"] == 2
    assert "127.0.0.1" in row["last_error"]
    assert row["next_attempt_at"] == clock.now() + timedelta(seconds=60)  # back-off doubled

    smtp.start()
    try:
        daemon.run(loops=1)  # not due yet, but the relay answers a probe: sent, back-off over
        assert len(smtp.messages()) == 1
        clock.advance(timedelta(hours=2))
        daemon.run(loops=1)
        daemon.run(loops=1)
        [mail] = smtp.messages()
    finally:
        smtp.stop()
    assert mail["To"] == "alice@example.org"
    with pg_engine.begin() as conn:
        [row] = outbox.list_messages(conn)
    assert row["state"] == "sent" and row["attempts"] == 2  # the probe is not a counted attempt


def test_a_claimed_message_waits_for_its_lease_before_another_send(
        pg_engine: Engine, smtp: SmtpServer, clock: FakeClock) -> None:
    """A notifier that claimed a message and died: the message is sent once the claim expires,
    not before (at-least-once, with the crash window bounded by the lease)."""
    campaign = add_campaign(pg_engine, user="alice")
    subscribe(pg_engine, user="alice", type_="mail", identity="alice@example.org")
    _finish_event(pg_engine, clock, campaign)
    daemon = _daemon(pg_engine, _settings(smtp.port), clock)
    daemon.compose_messages()
    with pg_engine.begin() as conn:  # the "crashed" notifier's claim
        [claimed] = outbox.claim_due_messages(conn, now=clock.now(), lease=timedelta(minutes=5),
                                              limit=10)
    assert daemon.send_due_messages() == 0
    clock.advance(timedelta(minutes=5))
    assert daemon.send_due_messages() == 1
    assert len(smtp.messages()) == 1
    with pg_engine.begin() as conn:
        [row] = outbox.list_messages(conn)
    assert row["id"] == claimed.id and row["attempts"] == 2


def test_mail_to_a_closed_port_is_a_transient_failure(tmp_path: Path) -> None:
    notifier = MailNotifier(server="127.0.0.1", port=SmtpServer(tmp_path).port,
                            timeout_seconds=2)
    with pytest.raises(NotificationFailed):
        notifier.send(OutgoingMessage(
            dedup_key="k", grid_user="a", type=NotificationType.MAIL, identity="a@example.org",
            format=None, severity=Severity.LOW, subject="s", body="b"))


def test_cigri_notifier_process_delivers_and_stops_on_sigterm(pg_url: str, pg_engine: Engine,
                                                              smtp: SmtpServer,
                                                              clock: FakeClock) -> None:
    """The installed `cigri-notifier` console script: settings from the environment, one pass
    every NOTIFIER_INTERVAL, exit 0 on SIGTERM."""
    campaign = add_campaign(pg_engine, user="alice", name="proc")
    subscribe(pg_engine, user="alice", type_="mail", identity="alice@example.org")
    _finish_event(pg_engine, clock, campaign)
    executable = shutil.which("cigri-notifier")
    assert executable, "cigri-notifier is not installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI_")}
    env.update(CIGRI_DATABASE_URL=pg_url, CIGRI_NOTIFICATIONS_SMTP_SERVER="127.0.0.1",
               CIGRI_NOTIFICATIONS_SMTP_PORT=str(smtp.port), CIGRI_NOTIFIER_INTERVAL="0.2")
    process = subprocess.Popen([executable], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        [mail] = wait_until(smtp.messages, timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=20)
    assert mail["Subject"] == f"[CIGRI] (high): Campaign #{campaign} (proc) is finished"
    assert process.returncode == 0, err.decode()


def test_starttls_and_login_when_configured(tmp_path: Path) -> None:
    import ssl

    server = SmtpServer(tmp_path)
    server.start_secure(user="relay", password="s3cret")
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    message = OutgoingMessage(
        dedup_key="ev2:s1", grid_user="alice", type=NotificationType.MAIL,
        identity="alice@example.org", format=None, severity=Severity.MEDIUM,
        subject="secure", body="over TLS")
    try:
        MailNotifier(server="127.0.0.1", port=server.port, starttls=True, user="relay",
                     password="s3cret", ssl_context=insecure).send(message)
        with pytest.raises(NotificationFailed):  # wrong password: kept for a retry
            MailNotifier(server="127.0.0.1", port=server.port, starttls=True, user="relay",
                         password="nope", ssl_context=insecure, timeout_seconds=2).send(message)
        with pytest.raises(NotificationFailed):  # no STARTTLS: the relay refuses to go on
            MailNotifier(server="127.0.0.1", port=server.port).send(message)
        [mail] = server.messages()
    finally:
        server.stop()
    assert (mail["To"], mail["Subject"]) == ("alice@example.org", "[CIGRI] (medium): secure")
    assert "over TLS" in mail.get_payload()
