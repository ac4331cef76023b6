"""Apprise notifications against real local receivers: an HTTP server on 127.0.0.1 for the
`json://`, `ntfy://` and `mmost://` (Mattermost, a Slack-style payload) URLs, the real SMTP
server (aiosmtpd) for mail, the notifier daemon with its outbox in PostgreSQL and a FakeClock.

Slack and Discord post to fixed hosts (hooks.slack.com, discord.com) that no URL can change: their
test re-points Apprise's endpoint constant at the local receiver, and nothing else, so the
`slack://` and `discord://` URLs still go through cigri's channel and Apprise's own payloads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apprise.plugins.discord import NotifyDiscord
from apprise.plugins.slack import NotifySlack
from sqlalchemy import Engine

from cigri.config import build_settings
from cigri.daemons.notifier import NotifierDaemon, build_channels
from cigri.domain.clock import FakeClock
from cigri.domain.notifications import NotificationFailed, NotificationRejected, OutgoingMessage
from cigri.domain.states import EventClass, EventState, NotificationType, Severity
from cigri.notify.apprise_channel import AppriseNotifier
from cigri.storage import outbox
from cigri.storage.events import record_event
from tests.integration.api_helpers import make_api
from tests.integration.notify_helpers import (
    HttpReceiver,
    SmtpServer,
    accepted,
    add_campaign,
    free_port,
    subscribe,
)

TITLE = "[CIGRI] (high): Campaign #3 (c1) is finished"
BODY = "All 12 tasks terminated.\nSee gridstat -c 3."
PASS = timedelta(seconds=10)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


def _message(identity: str) -> OutgoingMessage:
    return OutgoingMessage(id=7, dedup_key="ev7:s1", grid_user="alice",
                           type=NotificationType.APPRISE, identity=identity, format=None,
                           severity=Severity.HIGH, subject="Campaign #3 (c1) is finished",
                           body=BODY)


def _host(receiver: HttpReceiver) -> str:
    return receiver.url.removeprefix("http://")


@pytest.mark.parametrize(("url", "path", "expected"), [
    pytest.param("json://{host}/hooks/abc", "/hooks/abc",
                 {"title": TITLE, "message": BODY, "type": "failure"}, id="json"),
    pytest.param("ntfy://{host}/grid", "/", {"topic": "grid", "title": TITLE, "message": BODY},
                 id="ntfy"),
    pytest.param("mmost://{host}/KEY", "/hooks/KEY",
                 {"text": f"{TITLE}\r\n{BODY}", "username": "cigri"}, id="mattermost"),
])
def test_each_url_style_reaches_the_local_receiver(receiver: HttpReceiver, url: str, path: str,
                                                   expected: dict[str, Any]) -> None:
    AppriseNotifier().send(_message(url.format(host=_host(receiver))))
    [request] = receiver.received
    assert request.path == path
    assert {key: request.body[key] for key in expected} == expected


@pytest.mark.parametrize(("plugin", "attribute", "endpoint", "url", "path"), [
    pytest.param(NotifySlack, "webhook_url", "/services", "slack://T000/B000/XXXX",
                 "/services/T000/B000/XXXX", id="slack"),
    pytest.param(NotifyDiscord, "notify_url", "/api/webhooks", "discord://123456/tokEN",
                 "/api/webhooks/123456/tokEN", id="discord"),
])
def test_slack_and_discord_urls_post_their_services_payload(
        receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch, plugin: type, attribute: str,
        endpoint: str, url: str, path: str) -> None:
    monkeypatch.setattr(plugin, attribute, f"{receiver.url}{endpoint}")  # hooks.slack.com, ...
    AppriseNotifier().send(_message(url))
    [request] = receiver.received
    assert request.path == path
    text = (request.body["attachments"][0]["title"] if plugin is NotifySlack
            else request.body["content"])
    assert TITLE in text


def test_json_urls_carry_the_idempotency_key_of_the_message(receiver: HttpReceiver) -> None:
    AppriseNotifier().send(_message(f"json://{_host(receiver)}/x"))
    AppriseNotifier().send(_message(f"json://{_host(receiver)}/x"))
    first, second = receiver.received
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.headers["Idempotency-Key"].startswith("cigri.7.ev7.s1.")
    assert first.headers["X-Cigri-Message"] == "ev7:s1"


def test_a_failed_send_is_transient_and_names_the_url_masked(receiver: HttpReceiver) -> None:
    receiver.status = 503
    with pytest.raises(NotificationFailed) as error:
        AppriseNotifier().send(_message(f"json://cigri:s3cret@{_host(receiver)}/x"))
    assert not isinstance(error.value, NotificationRejected)
    assert "s3cret" not in str(error.value) and "json://cigri:****@" in str(error.value)
    with pytest.raises(NotificationFailed) as closed:
        AppriseNotifier().send(_message(f"ntfy://127.0.0.1:{free_port()}/grid"))
    assert not isinstance(closed.value, NotificationRejected)


def test_a_url_apprise_cannot_read_is_refused_for_good() -> None:
    with pytest.raises(NotificationRejected, match="not a valid Apprise URL: nosuch://"):
        AppriseNotifier().send(_message("nosuch://token@host"))


def _finished(engine: Engine, clock: FakeClock, campaign: int) -> None:
    with engine.begin() as conn:
        record_event(conn, class_=EventClass.NOTIFY, code="FINISHED_CAMPAIGN",
                     campaign_id=campaign, state=EventState.CLOSED, now=clock.now())


@pytest.mark.parametrize("outage", ["nothing-listening", "503"])
def test_a_receiver_down_then_up_gets_each_message_exactly_once(
        pg_engine: Engine, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        outage: str) -> None:
    port = free_port()
    receiver = HttpReceiver(port=port, status=503)
    smtp = SmtpServer(tmp_path)
    smtp.start()
    try:
        settings = build_settings({"NOTIFICATIONS_SMTP_SERVER": "127.0.0.1",
                                   "NOTIFICATIONS_SMTP_PORT": smtp.port})
        daemon = NotifierDaemon(engine=pg_engine, settings=settings, clock=clock,
                                stop=threading.Event(), channels=build_channels(settings))
        subscribe(pg_engine, user="alice", type_="apprise",
                  identity=f"ntfy://cigri:s3cret@127.0.0.1:{port}/grid")
        subscribe(pg_engine, user="alice", type_="mail", identity="alice@grid.example")
        for name in ("c1", "c2"):
            _finished(pg_engine, clock, add_campaign(pg_engine, user="alice", name=name))
        if outage == "503":
            receiver.start()
        with caplog.at_level(logging.DEBUG):
            daemon.run(loops=1)
        assert accepted(receiver.received) == []
        assert len(smtp.messages()) == 2  # mail does not wait for the other channel
        with pg_engine.begin() as conn:
            waiting = outbox.list_messages(conn, state="pending")
        assert len(waiting) == 2 and all(row["type"] == "apprise" for row in waiting)
        assert any(row["last_error"] for row in waiting)

        receiver.status = 200
        if outage == "nothing-listening":
            receiver.start()
        clock.advance(PASS)
        daemon.run(loops=1)
        for _ in range(3):
            clock.advance(timedelta(hours=1))
            daemon.run(loops=1)
    finally:
        receiver.stop()
        smtp.stop()
    titles = sorted(request.body["title"] for request in accepted(receiver.received))
    assert titles == [f"[CIGRI] (high): Campaign #{n} (c{n}) is finished" for n in (1, 2)]
    assert len(smtp.messages()) == 2
    with pg_engine.begin() as conn:
        rows = outbox.list_messages(conn)
    assert [row["state"] for row in rows] == ["sent"] * 4
    assert "s3cret" not in caplog.text
    assert all("s3cret" not in (row["last_error"] or "") for row in rows)


def test_the_api_refuses_a_bad_apprise_url_and_lists_good_ones_masked(
        pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    refused = api.call("POST", "/notifications/apprise",
                       json={"identity": "nosuch://token@host", "severity": "low"})
    assert refused.status_code == 400
    assert refused.get_json()["message"] == (
        "Invalid Apprise URL: unknown Apprise service nosuch:// (see the Apprise URL list)")
    incomplete = api.call("POST", "/notifications/apprise",
                          json={"identity": "slack://only-one-part", "severity": "low"})
    assert incomplete.status_code == 400
    assert "only-one-part" not in incomplete.get_json()["message"]
    gone = api.call("POST", "/notifications/webhook", json={
        "identity": "https://hooks.slack.com/services/A/B/C", "severity": "low",
        "format": "slack"})
    assert gone.status_code == 400 and "slack://" in gone.get_json()["message"]

    url = "slack://T000/B000/XXXXSECRET"
    assert api.call("POST", "/notifications/apprise",
                    json={"identity": url, "severity": "high"}).status_code == 201
    again = api.call("POST", "/notifications/apprise", json={"identity": url, "severity": "high"})
    assert again.status_code == 400  # v3 answers a duplicate with 400
    assert again.get_json()["message"].endswith("is already subscribed to apprise notifications")
    assert "SECRET" not in again.get_json()["message"]
    [item] = api.call("GET", "/notifications").get_json()["items"]
    assert item["type"] == "apprise" and item["identity"].startswith("slack://")
    assert "SECRET" not in item["identity"] and "B000" not in item["identity"]
    assert api.call("DELETE", "/notifications/apprise",
                    query_string={"identity": url}).status_code == 202
    # after 0010 a user still knows the Slack address: it names the same subscription
    assert api.call("POST", "/notifications/apprise",
                    json={"identity": url, "severity": "high"}).status_code == 201
    assert api.call("DELETE", "/notifications/apprise", query_string={
        "identity": "https://hooks.slack.com/services/T000/B000/XXXXSECRET"}).status_code == 202
    assert api.call("GET", "/notifications").get_json()["items"] == []
