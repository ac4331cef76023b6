"""XMPP notifications against a real prosody started for the test (STARTTLS with a throwaway
certificate, accounts registered with prosodyctl, ephemeral port). The recipient is offline, so
prosody keeps the chat in its offline store, where the test reads it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from cigri.config import build_settings
from cigri.daemons.notifier import NotifierDaemon, build_channels
from cigri.domain.clock import FakeClock
from cigri.domain.notifications import NotificationFailed, OutgoingMessage
from cigri.domain.states import EventClass, EventState, NotificationType, Severity
from cigri.notify.xmpp import XmppNotifier
from cigri.storage import outbox
from cigri.storage.events import record_event
from tests.integration.notify_helpers import (
    XmppServer,
    add_campaign,
    free_port,
    start_prosody,
    subscribe,
)


@pytest.fixture(scope="module")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppServer]:
    server = start_prosody(tmp_path_factory.mktemp("prosody"),
                           {"cigri": "bot-secret", "alice": "a", "bob": "b"})
    try:
        yield server
    finally:
        assert server.process is not None
        server.process.kill()  # throwaway data: no clean shutdown needed
        server.process.wait(timeout=10)


def _bot(server: XmppServer, password: str = "bot-secret") -> XmppNotifier:
    return XmppNotifier(server="127.0.0.1", port=server.port, identity="cigri@localhost",
                        password=password, verify_tls=False, timeout_seconds=10)


def _message(to: str, subject: str) -> OutgoingMessage:
    return OutgoingMessage(dedup_key=f"k-{subject}", grid_user="alice",
                           type=NotificationType.XMPP, identity=to, format=None,
                           severity=Severity.MEDIUM, subject=subject, body="line one\nline two")


def test_chat_arrives_with_recipient_subject_and_body(prosody: XmppServer) -> None:
    _bot(prosody).send(_message("alice@localhost", "Cluster alpha is under stress"))
    stored = prosody.offline_messages("alice")
    assert "[CIGRI] (medium): Cluster alpha is under stress\\nline one\\nline two" in stored
    assert '"to"] = "alice@localhost"' in stored
    assert "cigri@localhost" in stored


def test_wrong_password_is_a_transient_failure(prosody: XmppServer) -> None:
    with pytest.raises(NotificationFailed):
        _bot(prosody, password="nope").send(_message("bob@localhost", "never"))
    assert "never" not in prosody.offline_messages("bob")


def test_server_down_is_a_transient_failure() -> None:
    notifier = XmppNotifier(server="127.0.0.1", port=free_port(), identity="cigri@localhost",
                            password="x", timeout_seconds=3)
    with pytest.raises(NotificationFailed):
        notifier.send(_message("bob@localhost", "down"))


def test_notifier_sends_an_open_event_to_an_xmpp_subscriber(
        pg_engine: Engine, prosody: XmppServer, clock: FakeClock) -> None:
    campaign = add_campaign(pg_engine, user="bob", name="sim")
    subscribe(pg_engine, user="bob", type_="xmpp", identity="bob@localhost", severity="medium")
    with pg_engine.begin() as conn:
        event_id = record_event(conn, class_=EventClass.CAMPAIGN, code="USER_FRAG",
                                campaign_id=campaign, state=EventState.OPEN, now=clock.now(),
                                message="cancelled by bob")
    settings = build_settings({
        "NOTIFICATIONS_XMPP_SERVER": "127.0.0.1", "NOTIFICATIONS_XMPP_PORT": prosody.port,
        "NOTIFICATIONS_XMPP_IDENTITY": "cigri@localhost",
        "NOTIFICATIONS_XMPP_PASSWORD": "bot-secret", "NOTIFICATIONS_XMPP_VERIFY_TLS": False})
    channels = build_channels(settings)
    assert set(channels) == {NotificationType.XMPP, NotificationType.WEBHOOK,
                             NotificationType.APPRISE, NotificationType.LOG}  # no SMTP: no mail
    daemon = NotifierDaemon(engine=pg_engine, settings=settings, clock=clock,
                            stop=threading.Event(), channels=channels)
    daemon.run(loops=1)
    stored = prosody.offline_messages("bob")
    assert f"[CIGRI] (high): New event #{event_id}: USER_FRAG for campaign #{campaign}" in stored
    assert "cancelled by bob" in stored
    with pg_engine.begin() as conn:
        [row] = outbox.list_messages(conn)
    assert row["state"] == "sent"
