"""Campaign schedules (issue 13) on the real PostgreSQL with the injectable clock: a recurring
campaign creates exactly 3 campaigns over 3 emulated days, skips a period while the previous one
still runs when so configured, a `start_at` campaign waits until then, and the `{DATE}` macro
names each run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from cigri.config import build_settings
from cigri.daemons.automations import AutomationsDaemon
from cigri.daemons.base import DaemonContext
from cigri.domain.clock import FakeClock
from cigri.storage import actions
from cigri.storage.clusters import add_cluster
from cigri.storage.schedules import add_schedule, get_schedule
from cigri.storage.tables import campaigns, events

JDL = {"name": "nightly-{DATE}", "nb_jobs": 3, "clusters": {"dahu": {"exec_file": "run.sh"}}}


def _daemon(engine: Engine, clock: FakeClock) -> AutomationsDaemon:
    context = DaemonContext(settings=build_settings({}), engine=engine, clock=clock,
                            stop=threading.Event(), oar_factory=lambda cluster: None)  # type: ignore[arg-type,return-value]
    return AutomationsDaemon(context, interval=timedelta(0), owner="test-automations")


def _setup(engine: Engine, clock: FakeClock, **schedule: Any) -> int:
    with engine.begin() as conn:
        add_cluster(conn, name="dahu", api_url="http://127.0.0.1:9/oarapi/")
        return add_schedule(conn, owner="alice", source={"jdl": JDL, **schedule},
                            now=clock.now())


def _campaigns(engine: Engine) -> list[Any]:
    with engine.begin() as conn:
        return list(conn.execute(select(campaigns).order_by(campaigns.c.id)))


def _three_days(engine: Engine, clock: FakeClock, daemon: AutomationsDaemon,
                between: Any = None) -> None:
    """Passes every 10 minutes for 3 days (432 passes)."""
    for _ in range(3 * 24 * 6):
        daemon.run_once()
        if between is not None:
            between()
        clock.advance(timedelta(minutes=10))


def test_a_daily_schedule_creates_exactly_three_campaigns_in_three_days(
        pg_engine: Engine) -> None:
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    schedule = _setup(pg_engine, clock, cron="0 2 * * *", time_zone="Europe/Paris")
    _three_days(pg_engine, clock, _daemon(pg_engine, clock))
    found = _campaigns(pg_engine)
    # 02:00 in Paris is 01:00 UTC in March (before the change to summer time on the 29th)
    assert [(c.name, c.submission_time, c.grid_user, c.nb_jobs) for c in found] == [
        (f"nightly-2026-03-0{day}", datetime(2026, 3, day, 1, 0, tzinfo=UTC), "alice", 3)
        for day in (2, 3, 4)]
    with pg_engine.begin() as conn:
        announced = conn.execute(select(events.c.campaign_id).where(
            events.c.code == "NEW_CAMPAIGN").order_by(events.c.id)).scalars().all()
        state = get_schedule(conn, schedule)
    assert announced == [c.id for c in found]
    assert (state.runs, state.skipped, state.last_campaign_id) == (3, 0, found[-1].id)
    assert state.next_run_at == datetime(2026, 3, 5, 1, 0, tzinfo=UTC)


def test_a_period_is_skipped_while_the_previous_campaign_still_runs(pg_engine: Engine) -> None:
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    schedule = _setup(pg_engine, clock, cron="0 2 * * *", time_zone="Europe/Paris",
                      skip_if_running=True)

    def end_the_first_on_march_3() -> None:
        # the first campaign (March 2) runs until March 3, 13:00: the run of March 3 (while
        # it runs) is skipped, the run of March 4 goes ahead
        if clock.now() == datetime(2026, 3, 3, 13, 0, tzinfo=UTC):
            with pg_engine.begin() as conn:
                first = conn.execute(select(campaigns.c.id).order_by(campaigns.c.id)
                                     ).scalars().first()
                assert first is not None
                actions.cancel_campaign(conn, first, now=clock.now())

    _three_days(pg_engine, clock, _daemon(pg_engine, clock),
                end_the_first_on_march_3)
    found = _campaigns(pg_engine)
    assert [c.name for c in found] == ["nightly-2026-03-02", "nightly-2026-03-04"]
    with pg_engine.begin() as conn:
        state = get_schedule(conn, schedule)
    assert (state.runs, state.skipped) == (2, 1)


def test_a_campaign_waits_for_its_start_at(pg_engine: Engine) -> None:
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    schedule = _setup(pg_engine, clock, start_at="2026-03-01T15:30:00+01:00")
    daemon = _daemon(pg_engine, clock)
    for _ in range(20):  # until 14:20 UTC: still waiting
        daemon.run_once()
        clock.advance(timedelta(minutes=7))
        assert _campaigns(pg_engine) == []
    clock.advance(timedelta(minutes=15))
    daemon.run_once()
    daemon.run_once()
    [campaign] = _campaigns(pg_engine)
    assert campaign.submission_time == clock.now()
    with pg_engine.begin() as conn:
        state = get_schedule(conn, schedule)
    assert (state.enabled, state.next_run_at, state.runs) == (False, None, 1)
