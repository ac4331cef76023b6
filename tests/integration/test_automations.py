"""Automation rules on the real PostgreSQL with the injectable clock (issue 13): each trigger kind
fires once and not again within its cooldown, each action takes effect, a crash between recording
a firing and running its actions runs them once, and a silence rule fires when a cluster stops
finishing jobs (the emulator)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from cigri.config import build_settings
from cigri.daemons.automations import AutomationsDaemon
from cigri.daemons.base import DaemonContext
from cigri.domain.clock import FakeClock
from cigri.domain.states import EventClass, EventState
from cigri.storage import actions
from cigri.storage.automations import add_rule
from cigri.storage.campaigns import create_campaign
from cigri.storage.events import close_events, record_event
from cigri.storage.tables import (
    automation_firings,
    bag_of_tasks,
    campaigns,
    events,
    jobs,
    parameters,
)
from tests.integration.engine_helpers import Grid, make_settings, new_campaign, queue_tasks

USER = "alice"


def _daemon(engine: Engine, clock: FakeClock) -> AutomationsDaemon:
    context = DaemonContext(settings=build_settings({}), engine=engine, clock=clock,
                            stop=threading.Event(), oar_factory=lambda cluster: None)  # type: ignore[arg-type,return-value]
    return AutomationsDaemon(context, interval=timedelta(0), owner="test-automations")


def _campaign(engine: Engine, clock: FakeClock, *, name: str = "sim", user: str = USER,
              tasks: int = 3) -> int:
    with engine.begin() as conn:
        return create_campaign(conn, grid_user=user, name=name, jobs_type="normal", jdl={},
                               properties={}, params=[f"p{i}" for i in range(tasks)],
                               now=clock.now())


def _rule(engine: Engine, clock: FakeClock, definition: dict[str, Any], *, owner: str = USER,
          admin: bool = False) -> int:
    definition = {"name": "r", "cooldown_minutes": 60, **definition}
    with engine.begin() as conn:
        return add_rule(conn, owner=owner, admin=admin, source=definition, now=clock.now())


def _event(engine: Engine, clock: FakeClock, campaign: int, code: str = "EXIT_ERROR", *,
           class_: EventClass = EventClass.JOB, job_id: int | None = None) -> int:
    with engine.begin() as conn:
        return record_event(conn, class_=class_, code=code, campaign_id=campaign, job_id=job_id,
                            message="boom", now=clock.now())


def _firings(engine: Engine, rule_id: int | None = None) -> list[Any]:
    query = select(automation_firings).order_by(automation_firings.c.id)
    if rule_id is not None:
        query = query.where(automation_firings.c.rule_id == rule_id)
    with engine.begin() as conn:
        return list(conn.execute(query))


def _codes(engine: Engine, campaign: int | None, code: str) -> list[Any]:
    with engine.begin() as conn:
        return list(conn.execute(select(events).where(events.c.code == code,
                                                      events.c.campaign_id == campaign)))


def _state(engine: Engine, campaign: int) -> str:
    with engine.begin() as conn:
        return str(conn.execute(select(campaigns.c.state)
                                .where(campaigns.c.id == campaign)).scalar_one())


def test_event_rule_fires_once_per_cooldown_and_notifies_through_an_event(
        pg_engine: Engine, clock: FakeClock) -> None:
    campaign = _campaign(pg_engine, clock)
    rule = _rule(pg_engine, clock, {"trigger": {"kind": "event", "code": "EXIT_ERROR"},
                                    "actions": [{"do": "notify", "message": "it fails"}],
                                    "cooldown_minutes": 30})
    daemon = _daemon(pg_engine, clock)
    daemon.run_once()  # first pass: the watermark starts here
    _event(pg_engine, clock, campaign)
    clock.advance(10)
    daemon.run_once()
    fired = _firings(pg_engine, rule)
    assert [(f.campaign_id, f.state) for f in fired] == [(campaign, "done")]
    assert fired[0].outcome == "notify: sent to the owner"
    # audited: the firing is an event of the campaign; the notify action a notify event
    [trace] = _codes(pg_engine, campaign, "RULE_FIRED")
    assert f"rule #{rule} (r) fired: EXIT_ERROR event" in trace.message
    [note] = _codes(pg_engine, campaign, "RULE_NOTIFY")
    assert (note.class_, note.message) == ("notify", "it fails")
    # more failures within the cooldown, and passes re-reading the same events: nothing more
    _event(pg_engine, clock, campaign)
    for _ in range(3):
        clock.advance(60)
        daemon.run_once()
    assert len(_firings(pg_engine, rule)) == 1
    # after the cooldown, a new failure fires again
    clock.advance(30 * 60)
    _event(pg_engine, clock, campaign)
    daemon.run_once()
    assert len(_firings(pg_engine, rule)) == 2


def test_closed_event_rule_fires_on_the_closure(pg_engine: Engine, clock: FakeClock) -> None:
    campaign = _campaign(pg_engine, clock)
    rule = _rule(pg_engine, clock, {"trigger": {"kind": "event", "code": "BLACKLIST",
                                                "on": "close"}, "actions": ["notify"]})
    daemon = _daemon(pg_engine, clock)
    event = _event(pg_engine, clock, campaign, "BLACKLIST", class_=EventClass.CAMPAIGN)
    daemon.run_once()
    assert _firings(pg_engine, rule) == []  # opened, not closed
    clock.advance(5)
    with pg_engine.begin() as conn:
        close_events(conn, [event], now=clock.now())
    clock.advance(5)
    daemon.run_once()
    clock.advance(5)
    daemon.run_once()
    assert [f.trigger for f in _firings(pg_engine, rule)] == [f"BLACKLIST event #{event} closed"]


def test_state_rule_resumes_a_paused_campaign(pg_engine: Engine, clock: FakeClock) -> None:
    campaign = _campaign(pg_engine, clock)
    rule = _rule(pg_engine, clock, {"trigger": {"kind": "state", "state": "paused"},
                                    "actions": ["resume"], "cooldown_minutes": 0})
    daemon = _daemon(pg_engine, clock)
    daemon.run_once()
    with pg_engine.begin() as conn:
        actions.pause_campaign(conn, campaign, now=clock.now())
    daemon.run_once()
    assert _state(pg_engine, campaign) == "in_treatment"
    [firing] = _firings(pg_engine, rule)
    assert firing.outcome == f"resume: campaign {campaign} in_treatment"
    daemon.run_once()
    assert len(_firings(pg_engine, rule)) == 1  # the same PAUSED event fires once


@pytest.mark.parametrize(("metric", "code"), [("failure_rate", "EXIT_ERROR"),
                                              ("resubmission_rate", "RESUBMIT")])
def test_metric_rule_pauses_once_within_its_cooldown(pg_engine: Engine, clock: FakeClock,
                                                     metric: str, code: str) -> None:
    campaign = _campaign(pg_engine, clock)
    rule = _rule(pg_engine, clock, {"trigger": {"kind": "metric", "metric": metric,
                                                "above": 0.5, "window_minutes": 10,
                                                "min_samples": 4},
                                    "actions": ["pause"]})
    daemon = _daemon(pg_engine, clock)
    daemon.run_once()  # the window's base sample
    for _ in range(3):
        _event(pg_engine, clock, campaign, code)
    clock.advance(60)
    daemon.run_once()
    assert _firings(pg_engine, rule) == []  # 3 < min_samples
    _event(pg_engine, clock, campaign, "EXIT_ERROR" if code == "RESUBMIT" else code)
    _event(pg_engine, clock, campaign, code)
    clock.advance(60)
    daemon.run_once()
    [firing] = _firings(pg_engine, rule)
    assert firing.trigger.startswith(f"{metric} ")
    assert _state(pg_engine, campaign) == "paused"
    with pg_engine.begin() as conn:
        actions.resume_campaign(conn, campaign, now=clock.now())
    for _ in range(6):
        _event(pg_engine, clock, campaign, code)
        _event(pg_engine, clock, campaign, "EXIT_ERROR")
        clock.advance(5 * 60)
        daemon.run_once()
    assert len(_firings(pg_engine, rule)) == 1  # 30 minutes: still cooling down
    assert _state(pg_engine, campaign) == "in_treatment"


def test_cancel_and_fix_with_resubmission_take_effect(pg_engine: Engine,
                                                      clock: FakeClock) -> None:
    doomed = _campaign(pg_engine, clock, name="doomed")
    fixed = _campaign(pg_engine, clock, name="fixed")
    _rule(pg_engine, clock, {"trigger": {"kind": "event", "code": "TOO_MANY_RESUBMIT"},
                             "actions": ["cancel"], "scope": {"campaign": doomed}})
    _rule(pg_engine, clock, {"trigger": {"kind": "event", "code": "EXIT_ERROR"},
                             "actions": [{"do": "fix", "resubmit": True}],
                             "scope": {"name": "fix*"}})
    daemon = _daemon(pg_engine, clock)
    daemon.run_once()
    with pg_engine.begin() as conn:
        param = conn.execute(select(parameters.c.id).where(parameters.c.campaign_id == fixed)
                             .order_by(parameters.c.id)).scalars().first()
        conn.execute(bag_of_tasks.delete().where(bag_of_tasks.c.param_id == param))
        job = conn.execute(insert(jobs).values(campaign_id=fixed, param_id=param, state="event",
                                               return_code=1).returning(jobs.c.id)).scalar_one()
    failure = _event(pg_engine, clock, fixed, "EXIT_ERROR", job_id=job)
    _event(pg_engine, clock, doomed, "TOO_MANY_RESUBMIT")
    _event(pg_engine, clock, doomed, "EXIT_ERROR")  # out of the fix rule's scope
    daemon.run_once()
    assert _state(pg_engine, doomed) == "cancelled"
    assert _state(pg_engine, fixed) == "in_treatment"
    with pg_engine.begin() as conn:
        closed = conn.execute(select(events.c.state).where(events.c.id == failure)).scalar_one()
        again = conn.execute(select(bag_of_tasks.c.id).where(bag_of_tasks.c.param_id == param)
                             ).all()
        open_doomed = conn.execute(select(events.c.id).where(
            events.c.campaign_id == doomed, events.c.code == "EXIT_ERROR",
            events.c.state == EventState.OPEN.value)).all()
    assert closed == "closed" and len(again) == 1 and len(open_doomed) == 1


def test_a_user_rule_never_covers_another_users_campaign(pg_engine: Engine,
                                                         clock: FakeClock) -> None:
    theirs = _campaign(pg_engine, clock, user="bob")
    admins = _rule(pg_engine, clock, {"trigger": {"kind": "event", "code": "EXIT_ERROR"},
                                      "actions": [{"do": "notify", "to": "admins"}],
                                      "scope": {"all": True}}, owner="root", admin=True)
    mine = _rule(pg_engine, clock, {"trigger": {"kind": "event", "code": "EXIT_ERROR"},
                                    "actions": ["pause"], "scope": {"campaign": theirs}})
    daemon = _daemon(pg_engine, clock)
    daemon.run_once()
    _event(pg_engine, clock, theirs)
    daemon.run_once()
    assert _firings(pg_engine, mine) == []
    assert _state(pg_engine, theirs) == "in_treatment"
    assert len(_firings(pg_engine, admins)) == 1
    [note] = _codes(pg_engine, None, "RULE_NOTIFY")  # no campaign: the admins get it
    assert note.message.startswith(f"Campaign {theirs}: rule #{admins} fired")


def test_a_crash_between_the_firing_and_its_actions_runs_them_once_after_restart(
        pg_engine: Engine, clock: FakeClock) -> None:
    campaign = _campaign(pg_engine, clock)
    rule = _rule(pg_engine, clock, {"trigger": {"kind": "event", "code": "EXIT_ERROR"},
                                    "actions": ["pause", "notify"]})
    first = _daemon(pg_engine, clock)
    first.run_once()
    _event(pg_engine, clock, campaign)
    assert first.evaluate() == 1  # recorded, committed... and the process dies here
    [pending] = _firings(pg_engine, rule)
    assert pending.state == "pending" and _state(pg_engine, campaign) == "in_treatment"
    clock.advance(10)
    restarted = _daemon(pg_engine, clock)
    restarted.run_once()
    restarted.run_once()
    [done] = _firings(pg_engine, rule)
    assert (done.id, done.state) == (pending.id, "done")
    assert _state(pg_engine, campaign) == "paused"
    assert len(_codes(pg_engine, campaign, "PAUSED")) == 1
    assert len(_codes(pg_engine, campaign, "RULE_NOTIFY")) == 1
    assert len(_codes(pg_engine, campaign, "RULE_FIRED")) == 1


def test_a_failing_action_transaction_leaves_the_firing_pending(pg_engine: Engine,
                                                                clock: FakeClock) -> None:
    """A crash inside the actions' transaction undoes the actions with it: they run once later."""
    campaign = _campaign(pg_engine, clock)
    rule = _rule(pg_engine, clock, {"trigger": {"kind": "event", "code": "EXIT_ERROR"},
                                    "actions": ["pause", "notify"]})
    daemon = _daemon(pg_engine, clock)
    daemon.run_once()
    _event(pg_engine, clock, campaign)
    daemon.evaluate()
    from cigri.storage import automation_firings as store

    original = store.finish_firing

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed")

    store.finish_firing = crash  # type: ignore[assignment]
    try:
        with pytest.raises(RuntimeError):
            daemon.act()
    finally:
        store.finish_firing = original  # type: ignore[assignment]
    assert _state(pg_engine, campaign) == "in_treatment"
    daemon.act()
    assert [f.state for f in _firings(pg_engine, rule)] == ["done"]
    assert len(_codes(pg_engine, campaign, "PAUSED")) == 1


@pytest.mark.grid(nodes=2, cores=2)
def test_silence_rule_fires_when_the_cluster_stops_finishing_jobs(grid: Grid) -> None:
    engine, clock = grid.engine, grid.clock
    # one time for cigri and the emulated cluster (its jobs' stop times feed the counters)
    clock.advance(datetime.fromtimestamp(grid.emu_clock.time(), UTC) - clock.now())
    campaign = new_campaign(grid, [f"p{i}" for i in range(200)])
    with engine.begin() as conn:
        conn.execute(campaigns.update().where(campaigns.c.id == campaign)
                     .values(grid_user=USER))
    rule = _rule(grid.engine, clock, {"trigger": {"kind": "silence", "minutes": 15},
                                      "actions": ["notify"], "cooldown_minutes": 60})
    daemon = _daemon(engine, clock)
    queue_tasks(grid, campaign)
    runner = grid.runner(settings=make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=4))
    updater = grid.updater()
    # the cluster finishes jobs (10 s each) for a while: no firing
    for _ in range(5):
        runner.run(loops=1)
        grid.advance(60)
        updater.run(loops=1)
        daemon.run_once()
    assert _firings(engine, rule) == []
    with engine.begin() as conn:
        last_stop = conn.execute(select(func.max(jobs.c.stop_time)).where(
            jobs.c.campaign_id == campaign, jobs.c.state == "terminated")).scalar_one()
    assert last_stop is not None
    # now the cluster stops finishing jobs: its time stands still while cigri's passes
    queue_tasks(grid, campaign)
    runner.run(loops=1)
    for _ in range(40):
        clock.advance(timedelta(minutes=1))
        updater.run(loops=1)
        daemon.run_once()
        if _firings(engine, rule):
            # not before 15 minutes without a finished task (the counters are per minute)
            assert clock.now() - last_stop >= timedelta(minutes=14)
    [firing] = _firings(engine, rule)  # once: the cooldown is an hour
    assert firing.trigger == "no task finished for 15 min"
    assert firing.state == "done"
    assert firing.fired_at - last_stop <= timedelta(minutes=17)


def test_rules_fire_and_act_on_both_databases(engine: Engine, clock: FakeClock) -> None:
    """The same daemon on PostgreSQL and SQLite (whose counters are computed, not maintained)."""
    campaign = _campaign(engine, clock)
    event_rule = _rule(engine, clock, {"trigger": {"kind": "event", "code": "EXIT_ERROR"},
                                       "actions": ["notify"]})
    metric_rule = _rule(engine, clock, {"trigger": {"kind": "metric", "metric": "failure_rate",
                                                    "above": 0.5, "min_samples": 2},
                                        "actions": ["pause"]})
    daemon = _daemon(engine, clock)
    daemon.run_once()
    _event(engine, clock, campaign)
    _event(engine, clock, campaign)
    clock.advance(10)
    daemon.run_once()
    daemon.run_once()
    assert [f.state for f in _firings(engine, event_rule)] == ["done"]
    assert [f.state for f in _firings(engine, metric_rule)] == ["done"]
    assert _state(engine, campaign) == "paused"
