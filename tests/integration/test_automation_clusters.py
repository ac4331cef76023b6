"""The cluster-level triggers, the pace and cluster-share metrics and the blacklist and add_tasks
actions of automation rules (issue 13), on the real PostgreSQL with the injectable clock, and the
stress of an emulated cluster seen by the updater (pause while stressed, resume when back): each
fires once and not again within its cooldown, each action takes effect, and the dry run replays
them."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from cigri.config import build_settings
from cigri.daemons.automations import AutomationsDaemon
from cigri.daemons.base import DaemonContext
from cigri.domain.clock import FakeClock
from cigri.domain.states import EventClass, EventState
from cigri.storage.automations import add_rule
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.events import close_events, record_event
from cigri.storage.tables import automation_firings, campaigns, events, parameters
from tests.integration.engine_helpers import USER, Grid, make_settings, new_campaign


def _daemon(engine: Engine, clock: FakeClock) -> AutomationsDaemon:
    context = DaemonContext(settings=build_settings({}), engine=engine, clock=clock,
                            stop=threading.Event(), oar_factory=lambda cluster: None)  # type: ignore[arg-type,return-value]
    return AutomationsDaemon(context, interval=timedelta(0), owner="test-automations")


def _clusters(engine: Engine, clock: FakeClock, *names: str) -> list[int]:
    with engine.begin() as conn:
        return [add_cluster(conn, name=name, api_url=f"http://{name}.invalid/",
                            now=clock.now()).id for name in names]


def _campaign(engine: Engine, clock: FakeClock, cluster_ids: list[int], *, tasks: int = 10,
              name: str = "sim") -> int:
    with engine.begin() as conn:
        return create_campaign(conn, grid_user=USER, name=name, jobs_type="normal", jdl={},
                               properties={c: {"exec_file": "x"} for c in cluster_ids},
                               params=[f"p{i}" for i in range(tasks)], now=clock.now())


def _rule(engine: Engine, clock: FakeClock, trigger: dict[str, Any], actions: list[Any], *,
          cooldown: int = 60) -> int:
    with engine.begin() as conn:
        return add_rule(conn, owner=USER, admin=False, now=clock.now(), source={
            "name": "r", "trigger": trigger, "actions": actions, "cooldown_minutes": cooldown})


def _firings(engine: Engine, rule_id: int) -> list[Any]:
    with engine.begin() as conn:
        return list(conn.execute(select(automation_firings).where(
            automation_firings.c.rule_id == rule_id).order_by(automation_firings.c.id)))


def _state(engine: Engine, campaign: int) -> str:
    with engine.begin() as conn:
        return str(conn.execute(select(campaigns.c.state)
                                .where(campaigns.c.id == campaign)).scalar_one())


def _open_blacklists(engine: Engine, campaign: int) -> list[Any]:
    with engine.begin() as conn:
        return list(conn.execute(select(events).where(
            events.c.code == "BLACKLIST", events.c.campaign_id == campaign,
            events.c.state == EventState.OPEN.value)))


def _cluster_event(engine: Engine, clock: FakeClock, cluster_id: int, code: str) -> int:
    with engine.begin() as conn:
        return record_event(conn, class_=EventClass.CLUSTER, code=code, cluster_id=cluster_id,
                            now=clock.now(), checked=True)


def test_cluster_rules_fire_on_blacklisted_and_back_for_the_campaigns_on_that_cluster(
        pg_engine: Engine, clock: FakeClock) -> None:
    alpha, beta = _clusters(pg_engine, clock, "alpha", "beta")
    on_alpha = _campaign(pg_engine, clock, [alpha], name="on-alpha")
    on_beta = _campaign(pg_engine, clock, [beta], name="on-beta")
    down = _rule(pg_engine, clock, {"kind": "cluster", "on": "blacklisted", "cluster": "alpha"},
                 ["pause"])
    back = _rule(pg_engine, clock, {"kind": "cluster", "on": "back"}, ["resume"],
                 cooldown=0)
    daemon = _daemon(pg_engine, clock)
    daemon.run_once()
    blacklist = _cluster_event(pg_engine, clock, alpha, "BLACKLIST")
    _cluster_event(pg_engine, clock, beta, "BLACKLIST")  # not the rule's cluster
    clock.advance(10)
    daemon.run_once()
    [fired] = _firings(pg_engine, down)
    assert (fired.campaign_id, fired.state) == (on_alpha, "done")
    assert fired.trigger == f"cluster alpha blacklisted (BLACKLIST event #{blacklist})"
    assert (_state(pg_engine, on_alpha), _state(pg_engine, on_beta)) == ("paused", "in_treatment")
    # a second blacklist of alpha within the cooldown: nothing more
    _cluster_event(pg_engine, clock, alpha, "BLACKLIST")
    for _ in range(3):
        clock.advance(60)
        daemon.run_once()
    assert len(_firings(pg_engine, down)) == 1
    # alpha is back: the rule resumes the paused campaign on it (paused campaigns are covered)
    with pg_engine.begin() as conn:
        close_events(conn, [blacklist], now=clock.now())
    clock.advance(10)
    daemon.run_once()
    assert [(f.campaign_id, f.trigger) for f in _firings(pg_engine, back)] == [
        (on_alpha, f"cluster alpha back (BLACKLIST event #{blacklist})")]
    assert _state(pg_engine, on_alpha) == "in_treatment"


def test_cluster_error_share_blacklists_the_campaign_on_the_failing_cluster_once(
        pg_engine: Engine, clock: FakeClock) -> None:
    alpha, beta = _clusters(pg_engine, clock, "alpha", "beta")
    campaign = _campaign(pg_engine, clock, [alpha, beta])
    rule = _rule(pg_engine, clock, {"kind": "metric", "metric": "cluster_error_share",
                                    "above": 0.7, "window_minutes": 10, "min_samples": 4},
                 [{"do": "blacklist"}])
    daemon = _daemon(pg_engine, clock)
    daemon.run_once()  # the window's base sample

    def fail(cluster_id: int, count: int) -> None:
        with pg_engine.begin() as conn:
            for _ in range(count):
                record_event(conn, class_=EventClass.JOB, code="EXIT_ERROR", now=clock.now(),
                             campaign_id=campaign, cluster_id=cluster_id)

    fail(alpha, 2)
    fail(beta, 2)
    clock.advance(60)
    daemon.run_once()
    assert _firings(pg_engine, rule) == []  # half each
    fail(alpha, 8)
    clock.advance(60)
    daemon.run_once()
    [fired] = _firings(pg_engine, rule)
    assert fired.trigger.startswith("cluster_error_share 0.83 > 0.7 on alpha (12 failures)")
    [blacklist] = _open_blacklists(pg_engine, campaign)
    assert blacklist.cluster_id == alpha and blacklist.parent is None
    assert fired.outcome == (f"blacklist: campaign {campaign} blacklisted on alpha "
                             f"(event #{blacklist.id})")
    for _ in range(5):  # alpha keeps failing, within the cooldown: no second firing
        fail(alpha, 5)
        clock.advance(5 * 60)
        daemon.run_once()
    assert len(_firings(pg_engine, rule)) == 1
    assert len(_open_blacklists(pg_engine, campaign)) == 1


@pytest.mark.parametrize("metric", ["throughput", "eta"])
def test_pace_rules_notify_once_within_their_cooldown(pg_engine: Engine, clock: FakeClock,
                                                      metric: str) -> None:
    """20 tasks, 2 finished over the last 10 minutes (12 an hour): the 18 left take 1 h 30."""
    [alpha] = _clusters(pg_engine, clock, "alpha")
    campaign = _campaign(pg_engine, clock, [alpha], tasks=20)
    deadline = clock.now() + timedelta(hours=2)
    threshold = {"below": 30} if metric == "throughput" else {"after": deadline.isoformat()}
    rule = _rule(pg_engine, clock, {"kind": "metric", "metric": metric, "window_minutes": 10,
                                    **threshold}, ["notify"])
    daemon = _daemon(pg_engine, clock)
    clock.advance(5 * 60)
    daemon.run_once()
    assert _firings(pg_engine, rule) == []  # the campaign has not run a whole window yet
    clock.advance(45 * 60)
    _finish(pg_engine, clock, campaign, 2)
    clock.advance(60)
    daemon.run_once()
    [fired] = _firings(pg_engine, rule)
    eta = clock.now() + timedelta(minutes=90)
    assert fired.trigger == ("throughput 12.0 tasks/h < 30" if metric == "throughput" else
                             f"eta {eta.isoformat(timespec='minutes')} later than "
                             f"{deadline.isoformat(timespec='minutes')}")
    assert fired.state == "done"
    for _ in range(5):
        clock.advance(5 * 60)
        daemon.run_once()
    assert len(_firings(pg_engine, rule)) == 1


def _finish(engine: Engine, clock: FakeClock, campaign: int, count: int) -> None:
    """`count` tasks of the campaign terminate now (the triggers keep the counters)."""
    from cigri.storage.tables import jobs

    with engine.begin() as conn:
        ids = conn.execute(select(parameters.c.id).where(parameters.c.campaign_id == campaign)
                           .order_by(parameters.c.id).limit(count)).scalars().all()
        for param in ids:
            conn.execute(jobs.insert().values(
                campaign_id=campaign, param_id=param, state="terminated",
                start_time=clock.now() - timedelta(minutes=1), stop_time=clock.now()))


def test_add_tasks_action_adds_the_rules_parameters(pg_engine: Engine, clock: FakeClock) -> None:
    [alpha] = _clusters(pg_engine, clock, "alpha")
    campaign = _campaign(pg_engine, clock, [alpha], tasks=2)
    rule = _rule(pg_engine, clock, {"kind": "event", "code": "EXIT_ERROR"},
                 [{"do": "add_tasks", "params": ["retry-a 1", "retry-b 2"]}])
    daemon = _daemon(pg_engine, clock)
    daemon.run_once()
    with pg_engine.begin() as conn:
        record_event(conn, class_=EventClass.JOB, code="EXIT_ERROR", campaign_id=campaign,
                     now=clock.now())
    daemon.run_once()
    [fired] = _firings(pg_engine, rule)
    assert fired.outcome == f"add_tasks: 2 tasks added to campaign {campaign}"
    with pg_engine.begin() as conn:
        names = conn.execute(select(parameters.c.name).where(
            parameters.c.campaign_id == campaign).order_by(parameters.c.id)).scalars().all()
        total = conn.execute(select(campaigns.c.nb_jobs).where(
            campaigns.c.id == campaign)).scalar_one()
    assert names[-2:] == ["retry-a", "retry-b"] and total == 4


@pytest.mark.grid(nodes=2, cores=2)
def test_stress_rules_pause_and_resume_when_the_emulated_cluster_is_stressed_and_back(
        grid: Grid) -> None:
    engine, clock = grid.engine, grid.clock
    campaign = new_campaign(grid, [f"p{i}" for i in range(5)])
    stressed = _rule(engine, clock, {"kind": "cluster", "on": "stressed"}, ["pause"])
    back = _rule(engine, clock, {"kind": "cluster", "on": "back"}, ["resume"])
    daemon = _daemon(engine, clock)
    updater = grid.updater(settings=make_settings(STRESS_FACTOR=0.8))
    daemon.run_once()
    grid.control().set_stress(0.95)
    for _ in range(3):
        grid.advance(20)
        updater.run(loops=1)
        daemon.run_once()
    assert [f.state for f in _firings(engine, stressed)] == ["done"]
    assert _state(engine, campaign) == "paused"
    grid.control().set_stress(0)
    for _ in range(3):
        grid.advance(20)
        updater.run(loops=1)
        clock.advance(timedelta(seconds=40))  # past the watermark's lag
        daemon.run_once()
    assert len(_firings(engine, stressed)) == 1
    [resumed] = _firings(engine, back)
    assert resumed.trigger.startswith(f"cluster {grid.clusters[0].name} back (UNDER_STRESS")
    assert _state(engine, campaign) == "in_treatment"
    with engine.begin() as conn:
        stress_events = conn.execute(select(func.count()).select_from(events).where(
            events.c.code == "UNDER_STRESS")).scalar_one()
    assert stress_events == 1


def test_the_dry_run_replays_cluster_events_and_measures_the_new_metrics(
        pg_engine: Engine, clock: FakeClock) -> None:
    from cigri.daemons.rule_evaluation import dry_run
    from cigri.storage.automations import get_rule

    [alpha] = _clusters(pg_engine, clock, "alpha")
    campaign = _campaign(pg_engine, clock, [alpha], tasks=20)
    stressed = _rule(pg_engine, clock, {"kind": "cluster", "on": "stressed"}, ["pause"])
    slow = _rule(pg_engine, clock, {"kind": "metric", "metric": "throughput", "below": 5,
                                    "window_minutes": 30}, ["notify"])
    share = _rule(pg_engine, clock, {"kind": "metric", "metric": "cluster_error_share",
                                     "above": 0.5, "min_samples": 2}, ["blacklist"])
    clock.advance(timedelta(hours=1))
    first = _cluster_event(pg_engine, clock, alpha, "UNDER_STRESS")
    clock.advance(timedelta(minutes=10))
    _cluster_event(pg_engine, clock, alpha, "UNDER_STRESS")  # within the cooldown
    with pg_engine.begin() as conn:
        for _ in range(3):
            record_event(conn, class_=EventClass.JOB, code="EXIT_ERROR", now=clock.now(),
                         campaign_id=campaign, cluster_id=alpha)
    with pg_engine.begin() as conn:
        found = {rule: dry_run(conn, get_rule(conn, rule), now=clock.now())
                 for rule in (stressed, slow, share)}
        conn.rollback()
    assert [(w.campaign_id, w.detail) for w in found[stressed]] == [
        (campaign, f"cluster alpha stressed (UNDER_STRESS event #{first})")]
    assert [w.detail for w in found[slow]] == ["throughput 0.0 tasks/h < 5"]
    assert [w.detail for w in found[share]] == [
        "cluster_error_share 1.00 > 0.5 on alpha (3 failures)"]
    assert _firings(pg_engine, stressed) == []
