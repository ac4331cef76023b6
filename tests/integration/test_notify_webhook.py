"""Webhook notifications against a local HTTP receiver: cigri's JSON payload (chat services are
Apprise's, `test_notify_apprise.py`), plus the transient (5xx: retried) and permanent (4xx: given
up) answers through the notifier daemon."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from cigri.config import build_settings
from cigri.daemons.notifier import NotifierDaemon
from cigri.domain.clock import FakeClock
from cigri.domain.notifications import NotificationFailed, NotificationRejected, OutgoingMessage
from cigri.domain.states import EventClass, EventState, NotificationType, Severity
from cigri.notify.webhook import WebhookNotifier
from cigri.storage import outbox
from cigri.storage.events import record_event
from tests.integration.notify_helpers import HttpReceiver, add_campaign, subscribe


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _message(url: str, format_: str) -> OutgoingMessage:
    return OutgoingMessage(dedup_key="agg:EXIT_ERROR:c3:e9:s1", grid_user="alice",
                           type=NotificationType.WEBHOOK, identity=url, format=format_,
                           severity=Severity.HIGH, subject="2 EXIT_ERROR events on campaign #3",
                           body="The first event says:\nexit 1")


def test_a_webhook_posts_the_json_payload(receiver: HttpReceiver) -> None:
    WebhookNotifier().send(_message(f"{receiver.url}/hooks/abc", "json"))
    [request] = receiver.received
    assert request.path == "/hooks/abc"
    assert request.body == {"subject": "2 EXIT_ERROR events on campaign #3",
                            "body": "The first event says:\nexit 1", "severity": "high",
                            "grid_user": "alice", "id": "agg:EXIT_ERROR:c3:e9:s1",
                            "tag": "[CIGRI]"}
    assert request.headers["X-Cigri-Message"] == "agg:EXIT_ERROR:c3:e9:s1"
    assert request.headers["Content-Type"] == "application/json"


def test_server_error_is_transient_and_client_error_permanent(receiver: HttpReceiver) -> None:
    receiver.status = 503
    with pytest.raises(NotificationFailed) as transient:
        WebhookNotifier().send(_message(receiver.url, "json"))
    assert not isinstance(transient.value, NotificationRejected)
    receiver.status = 404
    with pytest.raises(NotificationRejected):
        WebhookNotifier().send(_message(receiver.url, "json"))


def test_notifier_retries_failing_webhooks_until_they_answer(
        pg_engine: Engine, receiver: HttpReceiver, clock: FakeClock) -> None:
    campaign = add_campaign(pg_engine, user="alice")
    subscribe(pg_engine, user="alice", type_="webhook", identity=receiver.url)
    subscribe(pg_engine, user="alice", type_="webhook", identity=f"{receiver.url}/gone",
              format_="json")
    with pg_engine.begin() as conn:
        record_event(conn, class_=EventClass.NOTIFY, code="FINISHED_CAMPAIGN",
                     campaign_id=campaign, state=EventState.CLOSED, now=clock.now())
    daemon = NotifierDaemon(engine=pg_engine, settings=build_settings({}), clock=clock,
                            stop=threading.Event(),
                            channels={NotificationType.WEBHOOK: WebhookNotifier()})
    receiver.status = 502
    daemon.run(loops=1)
    assert len(receiver.received) == 2
    receiver.status = 200
    clock.advance(timedelta(seconds=30))
    daemon.run(loops=1)
    assert len(receiver.received) == 4
    with pg_engine.begin() as conn:
        rows = outbox.list_messages(conn)
    assert [row["state"] for row in rows] == ["sent", "sent"]
    assert rows[0]["attempts"] == 2


def test_notifier_gives_up_on_a_refused_webhook(pg_engine: Engine, receiver: HttpReceiver,
                                                clock: FakeClock) -> None:
    campaign = add_campaign(pg_engine, user="alice")
    subscribe(pg_engine, user="alice", type_="webhook", identity=receiver.url, format_="json")
    with pg_engine.begin() as conn:
        record_event(conn, class_=EventClass.NOTIFY, code="FINISHED_CAMPAIGN",
                     campaign_id=campaign, state=EventState.CLOSED, now=clock.now())
    daemon = NotifierDaemon(engine=pg_engine, settings=build_settings({}), clock=clock,
                            stop=threading.Event(),
                            channels={NotificationType.WEBHOOK: WebhookNotifier()})
    receiver.status = 410
    daemon.run(loops=1)
    clock.advance(timedelta(hours=3))
    daemon.run(loops=1)
    assert len(receiver.received) == 1
    with pg_engine.begin() as conn:
        [row] = outbox.list_messages(conn)
    assert row["state"] == "failed" and "410" in row["last_error"]
