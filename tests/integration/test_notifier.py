"""The notifier with the real engine: a campaign whose jobs all fail with the same exit code (on
the OAR emulator, through the runner and the updater) gives one aggregated report and one message
per subscriber, not one per job; the campaign is blacklisted on the cluster while another campaign
keeps running there. Plus the rate cap and the replay safety of the compose step."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from cigri.config import build_settings
from cigri.daemons.notifier import NotifierDaemon
from cigri.domain import colombo
from cigri.domain.clock import FakeClock
from cigri.domain.states import EventClass, EventState, NotificationType
from cigri.notify.apprise_channel import AppriseNotifier
from cigri.notify.webhook import WebhookNotifier
from cigri.storage import events as event_store
from cigri.storage import outbox
from cigri.storage.tables import events
from tests.integration.engine_helpers import (
    USER,
    Grid,
    make_settings,
    new_campaign,
    queue_tasks,
    states,
)
from tests.integration.notify_helpers import HttpReceiver, add_campaign, subscribe


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


def _notifier(engine: Engine, clock: FakeClock, **settings: object) -> NotifierDaemon:
    return NotifierDaemon(engine=engine, settings=build_settings({"ADMINS": "root", **settings}),
                          clock=clock, stop=threading.Event(), interval=timedelta(0),
                          channels={NotificationType.WEBHOOK: WebhookNotifier(),
                                    NotificationType.APPRISE: AppriseNotifier()})


def test_identical_failures_give_one_report_per_subscriber_and_a_campaign_blacklist(
        grid: Grid, receiver: HttpReceiver) -> None:
    failing = new_campaign(grid, [f"1.{i}; exit 3" for i in range(6)])
    healthy = new_campaign(grid, ["40", "40.0"])
    queue_tasks(grid, failing)
    queue_tasks(grid, healthy)
    # a Mattermost (Slack-style payload) URL through Apprise, next to cigri's JSON webhooks
    subscribe(grid.engine, user=USER, type_="apprise",
              identity=f"mmost://{receiver.url.removeprefix('http://')}/chat")
    subscribe(grid.engine, user=USER, type_="webhook", identity=f"{receiver.url}/json")
    subscribe(grid.engine, user="%%admin%%", type_="webhook", identity=f"{receiver.url}/admin",
              severity="medium")
    grid.runner(settings=make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=50)).run(loops=2)
    grid.advance(5)
    grid.updater().run(loops=1)

    assert states(grid.engine, failing) == {"event": 6}
    assert states(grid.engine, healthy) == {"running": 2}
    cluster_id = grid.clusters[0].id
    with grid.engine.begin() as conn:
        failures = event_store.list_open_events(conn, code="EXIT_ERROR")
        assert event_store.is_campaign_blacklisted(conn, campaign_id=failing,
                                                   cluster_id=cluster_id)
        assert not event_store.is_campaign_blacklisted(conn, campaign_id=healthy,
                                                       cluster_id=cluster_id)
        blacklists = event_store.list_events(conn, code="BLACKLIST", campaign_id=failing,
                                             cluster_id=cluster_id)
    assert len(blacklists) == 1  # one aggregated blacklist for the pair, not one per failed job
    [group] = colombo.aggregate_failures(failures)
    assert (group.campaign_id, group.code, group.count) == (failing, "EXIT_ERROR", 6)

    notifier = _notifier(grid.engine, grid.clock)
    notifier.run(loops=1)
    by_path: dict[str, list[str]] = {}
    for request in receiver.received:
        text = request.body.get("text") or request.body.get("subject")
        by_path.setdefault(request.path, []).append(text)
    assert sorted(by_path) == ["/admin", "/hooks/chat", "/json"]
    assert by_path["/json"] == [f"6 EXIT_ERROR events on campaign #{failing} (test)",
                                f"Cluster c1 blacklisted for campaign #{failing}"]
    assert len(by_path["/hooks/chat"]) == 2 and "6 EXIT_ERROR events" in by_path["/hooks/chat"][0]
    # The admin hears of the blacklist (at medium), not of the user's jobs.
    [admin] = [r.body for r in receiver.received if r.path == "/admin"]
    assert (admin["subject"], admin["severity"]) == (
        f"Cluster c1 blacklisted for campaign #{failing}", "medium")
    first_json = next(r.body for r in receiver.received if r.path == "/json")
    assert "exit status 768" in first_json["body"]

    # The other campaign keeps running on the cluster and finishes; no failure message repeats.
    grid.advance(40)
    grid.updater().run(loops=1)
    assert states(grid.engine, healthy) == {"terminated": 2}
    notifier.run(loops=1)
    later = [r.body.get("subject") or r.body.get("text") for r in receiver.received[5:]]
    assert len(later) == 2 and all(f"Campaign #{healthy} (test) is finished" in s for s in later)
    with grid.engine.begin() as conn:
        unnotified = conn.execute(select(events.c.code).where(
            events.c.notified.is_(False), events.c.state == EventState.OPEN.value)).all()
    assert unnotified == []


def test_new_failures_of_an_open_report_do_not_send_again(pg_engine: Engine, clock: FakeClock,
                                                          receiver: HttpReceiver) -> None:
    campaign = add_campaign(pg_engine, user="alice", name=None)
    subscribe(pg_engine, user="alice", type_="webhook", identity=receiver.url)
    notifier = _notifier(pg_engine, clock)
    for wave in range(2):
        with pg_engine.begin() as conn:
            for job in range(3):
                event_store.record_event(conn, class_=EventClass.JOB, code="EXIT_ERROR",
                                         campaign_id=campaign, message=f"wave {wave} job {job}",
                                         now=clock.now())
        notifier.run(loops=1)
    assert [r.body["subject"] for r in receiver.received] == [
        f"3 EXIT_ERROR events on campaign #{campaign}"]
    with pg_engine.begin() as conn:  # the user fixes everything; the next failure is news
        event_store.close_job_events(conn, campaign_id=campaign, now=clock.now())
        event_store.record_event(conn, class_=EventClass.JOB, code="EXIT_ERROR",
                                 campaign_id=campaign, message="again", now=clock.now())
    notifier.run(loops=1)
    assert receiver.received[-1].body["subject"] == f"1 EXIT_ERROR event on campaign #{campaign}"
    assert "again" in receiver.received[-1].body["body"]


def test_rate_cap_holds_back_the_excess_with_one_summary(pg_engine: Engine, clock: FakeClock,
                                                         receiver: HttpReceiver) -> None:
    subscribe(pg_engine, user="%%admin%%", type_="webhook", identity=receiver.url)
    with pg_engine.begin() as conn:
        for index in range(8):
            event_store.record_event(conn, class_=EventClass.LOG, code="DAEMON_RESTARTED",
                                     state=EventState.CLOSED, message=f"restart {index}",
                                     now=clock.now())
    notifier = _notifier(pg_engine, clock, NOTIFICATIONS_RATE_CAP=5)
    notifier.run(loops=1)
    subjects = [r.body["subject"] for r in receiver.received]
    assert len(subjects) == 5
    assert subjects[-1] == "4 more notifications held back"
    with pg_engine.begin() as conn:
        event_store.record_event(conn, class_=EventClass.LOG, code="DAEMON_RESTARTED",
                                 state=EventState.CLOSED, message="later", now=clock.now())
    notifier.run(loops=1)
    assert len(receiver.received) == 5  # the hour is full
    clock.advance(timedelta(minutes=61))
    with pg_engine.begin() as conn:
        event_store.record_event(conn, class_=EventClass.LOG, code="DAEMON_RESTARTED",
                                 state=EventState.CLOSED, message="next hour", now=clock.now())
    notifier.run(loops=1)
    assert "next hour" in receiver.received[-1].body["body"]


def test_composing_twice_stores_each_message_once(pg_engine: Engine, clock: FakeClock) -> None:
    campaign = add_campaign(pg_engine, user="alice")
    subscribe(pg_engine, user="alice", type_="webhook", identity="http://127.0.0.1:9/hook")
    with pg_engine.begin() as conn:
        event_store.record_event(conn, class_=EventClass.NOTIFY, code="FINISHED_CAMPAIGN",
                                 campaign_id=campaign, state=EventState.CLOSED, now=clock.now())
    notifier = _notifier(pg_engine, clock)
    assert notifier.compose_messages() == 1
    with pg_engine.begin() as conn:  # a replay of the same events (e.g. a second notifier)
        conn.execute(events.update().values(notified=False))
    assert notifier.compose_messages() == 0
    with pg_engine.begin() as conn:
        assert len(outbox.list_messages(conn)) == 1


def test_closed_engine_traces_are_swept_without_messages(pg_engine: Engine, clock: FakeClock,
                                                         receiver: HttpReceiver) -> None:
    campaign = add_campaign(pg_engine, user="alice")
    subscribe(pg_engine, user="alice", type_="webhook", identity=receiver.url)
    with pg_engine.begin() as conn:
        for _ in range(3):
            event_store.record_event(conn, class_=EventClass.JOB, code="RESUBMIT",
                                     campaign_id=campaign, state=EventState.CLOSED,
                                     now=clock.now())
    _notifier(pg_engine, clock).run(loops=1)
    assert receiver.received == []
    with pg_engine.begin() as conn:
        assert conn.execute(select(events.c.id).where(events.c.notified.is_(False))).all() == []


def test_log_subscriptions_write_to_the_daemon_log(pg_engine: Engine, clock: FakeClock,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from cigri.daemons.notifier import build_channels

    campaign = add_campaign(pg_engine, user="alice", name="logged")
    subscribe(pg_engine, user="alice", type_="log", identity="alice")
    with pg_engine.begin() as conn:
        event_store.record_event(conn, class_=EventClass.NOTIFY, code="FINISHED_CAMPAIGN",
                                 campaign_id=campaign, state=EventState.CLOSED, now=clock.now())
    settings = build_settings({})
    daemon = NotifierDaemon(engine=pg_engine, settings=settings, clock=clock,
                            stop=threading.Event(), channels=build_channels(settings))
    with caplog.at_level("INFO", logger="cigri.notify.journal"):
        daemon.run(loops=1)
    assert f"Campaign #{campaign} (logged) is finished" in caplog.text
    with pg_engine.begin() as conn:
        assert [row["state"] for row in outbox.list_messages(conn)] == ["sent"]
