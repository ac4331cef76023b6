"""Rule evaluation (issue 13): which enabled rules fire now, recorded as firings in the caller's
transaction (`evaluate`, the automations daemon's first step), and what a rule would have done
over the last day, writing nothing (`dry_run`, `gridrule test` through the API).

Reads the events opened since the id watermark and closed since the time watermark that some rule
waits for, and for metric and silence rules the maintained counters of the campaigns in their
scope (`cigri.storage.stats`: a few rows per campaign, whatever its size); the decisions (scope,
cooldown, threshold) are the pure `cigri.domain.automations`. The watermarks lag 30 s behind the
clock (`LAG`) so events of transactions that commit late are still read; what is read twice is
already recorded (the unique key of a firing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Final

from sqlalchemy import Connection

from cigri.domain import automations as domain
from cigri.domain.automations import Counters, Rule
from cigri.storage import automation_firings as firings
from cigri.storage import automations as store

log = logging.getLogger(__name__)

LAG: Final = timedelta(seconds=30)
EVENT_BATCH: Final = 5000
FIRING_BATCH: Final = 200


@dataclass
class Pass:
    """What one evaluation reads and decides; `fire` records (or, in a dry run, lists)."""

    conn: Connection
    now: datetime
    rules: list[Rule]
    fire: Callable[[Rule, int, str, str, datetime, int | None], bool]
    last_fired: dict[tuple[int, int], datetime | None] = field(default_factory=dict)
    counters: dict[tuple[int, timedelta], tuple[Counters, int]] = field(default_factory=dict)

    def try_fire(self, rule: Rule, campaign: store.CampaignRow, key: str, detail: str,
                 at: datetime, cluster_id: int | None = None) -> bool:
        if not rule.definition.scope.covers(campaign_id=campaign.id, name=campaign.name,
                                            grid_user=campaign.grid_user, owner=rule.owner,
                                            admin=rule.admin):
            return False
        if domain.cooling_down(rule.definition, self.last_fired.get((rule.id, campaign.id)), at):
            return False
        if self.fire(rule, campaign.id, key, detail, at, cluster_id):
            self.last_fired[(rule.id, campaign.id)] = at
            return True
        return False

    def campaign_counters(self, campaign_id: int, window: timedelta) -> tuple[Counters, int]:
        key = (campaign_id, window)
        if key not in self.counters:
            self.counters[key] = store.campaign_counters(self.conn, campaign_id, now=self.now,
                                                         window=window)
        return self.counters[key]


def _event_rules(rules: list[Rule], *, on: str) -> list[Rule]:
    return [r for r in rules if r.definition.trigger.kind in ("event", "state")
            and (r.definition.trigger.on if r.definition.trigger.kind == "event" else "open") == on]


def _wanted(rules: list[Rule]) -> tuple[set[str], set[str]]:
    codes = {c for r in rules for c in r.definition.trigger.codes}
    classes = {r.definition.trigger.class_ for r in rules
               if not r.definition.trigger.codes and r.definition.trigger.class_}
    return codes, {c for c in classes if c}


def evaluate_events(run: Pass, rows: list[store.EventRow], rules: list[Rule], on: str) -> int:
    fired = 0
    found = store.campaigns_by_id(run.conn, (r.campaign_id for r in rows if r.campaign_id))
    # (scope's campaign id or None, code or None for class rules) -> rules
    index: dict[tuple[int | None, str | None], list[Rule]] = {}
    for rule in rules:
        scoped = rule.definition.scope.campaign_id
        for code in rule.definition.trigger.codes or (None,):
            index.setdefault((scoped, code), []).append(rule)
    for row in rows:
        campaign = found.get(row.campaign_id or 0)
        if campaign is None:
            continue
        candidates = [rule for key in ((row.campaign_id, row.code), (row.campaign_id, None),
                                       (None, row.code), (None, None))
                      for rule in index.get(key, ())]
        for rule in candidates:
            if not domain.event_matches(rule.definition.trigger, code=row.code,
                                        class_=row.class_):
                continue
            detail = f"{row.code} event #{row.id} {'closed' if on == 'close' else 'opened'}"
            fired += run.try_fire(rule, campaign, f"r{rule.id}:{on}:e{row.id}", detail,
                                  run.now)
    return fired


def _cluster_rules(rules: list[Rule], *, on: str) -> list[Rule]:
    return [r for r in rules if r.definition.trigger.kind == "cluster"
            and domain.CLUSTER_CODES[r.definition.trigger.on][1] == on]


def evaluate_cluster_events(run: Pass, rows: list[store.EventRow], rules: list[Rule], *,
                            replay: bool = False) -> int:
    """Cluster rules: each whole-cluster event fires them on the campaigns in treatment or paused
    in their scope whose JDL names the cluster (a few per cluster, whatever their size). A
    `replay` (dry run) fires at each event's date."""
    if not rows or not rules:
        return 0
    names = store.cluster_names(run.conn)
    everyone = any(r.admin for r in rules)
    by_cluster = store.campaigns_on_clusters(
        run.conn, {row.cluster_id for row in rows if row.cluster_id is not None},
        grid_users=None if everyone else {r.owner for r in rules})
    fired = 0
    for row in rows:
        assert row.cluster_id is not None
        name = names.get(row.cluster_id, str(row.cluster_id))
        for rule in rules:
            trigger = rule.definition.trigger
            if row.code not in trigger.codes or (trigger.clusters and name not in trigger.clusters):
                continue
            detail = f"cluster {name} {trigger.on} ({row.code} event #{row.id})"
            for campaign in by_cluster.get(row.cluster_id, ()):
                fired += run.try_fire(rule, campaign, f"r{rule.id}:{trigger.on}:e{row.id}"
                                      f":c{campaign.id}", detail,
                                      (row.date or run.now) if replay else run.now,
                                      row.cluster_id)
    return fired


def evaluate_read(run: Pass, rules: list[Rule], on: str,
                  read: Callable[[set[str], set[str], bool], list[store.EventRow]]) -> int:
    """The event and cluster rules waiting for events opened (or closed, `on`); `read(codes,
    classes, whole_cluster)` fetches the campaign (or whole-cluster) events they wait for."""
    fired = 0
    waiting = _event_rules(rules, on=on)
    if waiting:
        codes, classes = _wanted(waiting)
        fired += evaluate_events(run, read(codes, classes, False), waiting, on)
    on_clusters = _cluster_rules(rules, on=on)
    if on_clusters:
        codes, _classes = _wanted(on_clusters)
        fired += evaluate_cluster_events(run, read(codes, set(), True), on_clusters)
    return fired


def evaluate_campaigns(run: Pass, rules: list[Rule], states: dict[tuple[int, int], Any]) -> int:
    """Metric and silence rules over the campaigns in treatment in their scope (`states`: the
    rules' per campaign rows)."""
    watched = [r for r in rules if r.definition.trigger.kind in ("metric", "silence")]
    if not watched:
        return 0
    everyone = any(r.admin for r in watched)
    found = store.campaigns_in_treatment(
        run.conn, grid_users=None if everyone else {r.owner for r in watched})
    by_id = {c.id: c for c in found}
    by_owner: dict[str, list[store.CampaignRow]] = {}
    for campaign in found:
        by_owner.setdefault(campaign.grid_user, []).append(campaign)
    pairs: list[tuple[Rule, store.CampaignRow]] = []
    for rule in watched:
        scope = rule.definition.scope
        if scope.campaign_id is not None:
            one = by_id.get(scope.campaign_id)
            candidates = [one] if one is not None else []
        elif rule.admin and scope.everyone:
            candidates = found
        else:
            candidates = by_owner.get(rule.owner, [])
        pairs += [(rule, c) for c in candidates if scope.covers(
            campaign_id=c.id, name=c.name, grid_user=c.grid_user, owner=rule.owner,
            admin=rule.admin)]
    # every counter the pass needs, in a few grouped reads
    run.counters.update(store.campaigns_counters(
        run.conn, [c.id for _, c in pairs], now=run.now,
        windows={_window(r.definition.trigger) for r, _ in pairs}))
    fired = 0
    for rule, campaign in pairs:
        if rule.definition.trigger.kind == "metric":
            fired += _metric(run, rule, campaign, states.get((rule.id, campaign.id)))
        else:
            fired += _silence(run, rule, campaign)
    return fired


def _window(trigger: domain.Trigger) -> timedelta:
    return trigger.window if trigger.kind == "metric" else trigger.silence


def _metric(run: Pass, rule: Rule, campaign: store.CampaignRow, state: Any) -> int:
    trigger = rule.definition.trigger
    if trigger.metric in ("throughput", "eta"):
        return _pace(run, rule, campaign)
    current, _recent = run.campaign_counters(campaign.id, trigger.window)
    base_values = dict(window_start=run.now, base_terminated=current.terminated,
                       base_failures=current.failures, base_resubmissions=current.resubmissions,
                       base_clusters=json.dumps({str(c): n for c, n in
                                                 current.cluster_failures.items()}))
    if state is None or state.window_start is None:
        store.save_rule_campaign(run.conn, rule.id, campaign.id, **base_values)
        return 0
    key = f"r{rule.id}:c{campaign.id}:metric:{state.window_start.isoformat()}"
    if trigger.metric == "cluster_error_share":
        fired = _share(run, rule, campaign, state, current, key)
    else:
        fired = _rate(run, rule, campaign, state, current, key)
    if fired or run.now - state.window_start >= trigger.window:
        store.save_rule_campaign(run.conn, rule.id, campaign.id, **base_values)
    return fired


def _rate(run: Pass, rule: Rule, campaign: store.CampaignRow, state: Any, current: Counters,
          key: str) -> int:
    trigger = rule.definition.trigger
    base = Counters(terminated=state.base_terminated, failures=state.base_failures,
                    resubmissions=state.base_resubmissions)
    if not domain.metric_crossed(trigger, base, current):
        return 0
    rate, samples = domain.metric_value(trigger, base, current)
    detail = f"{trigger.metric} {rate:.2f} > {trigger.above:g} ({samples} jobs)"
    return int(run.try_fire(rule, campaign, key, detail, run.now))


def _share(run: Pass, rule: Rule, campaign: store.CampaignRow, state: Any, current: Counters,
           key: str) -> int:
    base = {int(c): int(n) for c, n in json.loads(state.base_clusters or "{}").items()}
    found = domain.cluster_share(rule.definition.trigger, base, current.cluster_failures)
    if found is None:
        return 0
    cluster_id, share, failures = found
    name = store.cluster_names(run.conn).get(cluster_id, str(cluster_id))
    detail = (f"cluster_error_share {share:.2f} > {rule.definition.trigger.above:g} on {name} "
              f"({failures} failures)")
    return int(run.try_fire(rule, campaign, key, detail, run.now, cluster_id))


def _pace(run: Pass, rule: Rule, campaign: store.CampaignRow) -> int:
    """Throughput and ETA: from the tasks that finished over the last window, once the campaign
    has run for a whole window and while it has tasks left."""
    trigger = rule.definition.trigger
    if campaign.submission_time is None or run.now - campaign.submission_time < trigger.window:
        return 0
    current, recent = run.campaign_counters(campaign.id, trigger.window)
    remaining = campaign.nb_jobs - current.terminated
    if remaining <= 0:
        return 0
    if trigger.metric == "throughput":
        rate = domain.throughput_too_low(trigger, recent)
        if rate is None:
            return 0
        detail = f"throughput {rate:.1f} tasks/h < {trigger.below:g}"
    else:
        late, eta = domain.eta_too_late(trigger, remaining=remaining, recent=recent,
                                        now=run.now)
        if not late:
            return 0
        assert trigger.after is not None
        detail = (f"eta {eta.isoformat(timespec='minutes') if eta else 'none (no task finished)'}"
                  f" later than {trigger.after.isoformat(timespec='minutes')}")
    bucket = int(run.now.timestamp() // trigger.window.total_seconds())
    return int(run.try_fire(rule, campaign, f"r{rule.id}:c{campaign.id}:{trigger.metric}:"
                            f"{bucket}", detail, run.now))


def _silence(run: Pass, rule: Rule, campaign: store.CampaignRow) -> int:
    quiet = rule.definition.trigger.silence
    if campaign.submission_time is None or run.now - campaign.submission_time < quiet:
        return 0
    last = run.last_fired.get((rule.id, campaign.id))
    if last is not None and run.now - last < quiet:
        return 0  # this silence is already reported
    _current, recent = run.campaign_counters(campaign.id, quiet)
    if recent:
        return 0
    bucket = int(run.now.timestamp() // quiet.total_seconds())
    detail = f"no task finished for {quiet.total_seconds() / 60:g} min"
    return int(run.try_fire(rule, campaign, f"r{rule.id}:c{campaign.id}:silence:{bucket}",
                            detail, run.now))


def evaluate(conn: Connection, *, now: datetime) -> int:
    """One evaluation in the caller's transaction; returns how many firings it recorded."""
    rules = store.list_rules(conn, enabled_only=True)

    def fire(rule: Rule, campaign_id: int, key: str, detail: str, at: datetime,
             cluster_id: int | None) -> bool:
        message = domain.firing_message(rule.id, rule.definition, detail)
        return firings.record_firing(conn, rule=rule, campaign_id=campaign_id, dedup_key=key,
                                   trigger=detail, message=message, now=at,
                                   cluster_id=cluster_id) is not None

    states = store.rule_campaign_states(conn, [r.id for r in rules])
    run = Pass(conn=conn, now=now, rules=rules, fire=fire,
               last_fired={key: row.last_fired_at for key, row in states.items()})
    fired = 0
    # Opened events: an id watermark.
    cursor = store.read_cursor(conn, store.OPENED_CURSOR)
    # the first pass starts from now: rules are about what happens from now on
    last_id = (cursor[0] if cursor is not None
               else store.latest_event_id(conn, after=0, opened_before=now))
    rows: list[store.EventRow] = []

    def opened(codes: set[str], classes: set[str], whole_cluster: bool) -> list[store.EventRow]:
        found = store.opened_events(conn, after=last_id, codes=codes, classes=classes,
                                    limit=EVENT_BATCH, whole_cluster=whole_cluster)
        if not whole_cluster:
            rows.extend(found)
        return found

    fired += evaluate_read(run, rules, "open", opened)
    if len(rows) == EVENT_BATCH:
        new_id = rows[-1].id
    else:
        new_id = store.latest_event_id(conn, after=last_id, opened_before=now - LAG)
    store.write_cursor(conn, store.OPENED_CURSOR, last_id=new_id)
    # Closed events: a time watermark.
    closed_cursor = store.read_cursor(conn, store.CLOSED_CURSOR)
    since = (closed_cursor[1] if closed_cursor is not None else None) or now
    fired += evaluate_read(run, rules, "close", lambda codes, classes, whole_cluster:
                           store.closed_events(conn, since=since, until=now, codes=codes,
                                               classes=classes, limit=EVENT_BATCH,
                                               whole_cluster=whole_cluster))
    store.write_cursor(conn, store.CLOSED_CURSOR, last_at=max(since, now - LAG))
    fired += evaluate_campaigns(run, rules, states)
    return fired


@dataclass(frozen=True, kw_only=True)
class WouldFire:
    at: datetime
    campaign_id: int
    detail: str
    actions: str


def _replay_events(run: Pass, rule: Rule, *, since: datetime) -> None:
    """The dry run of an event or state rule: the period's events of the campaigns in scope."""
    definition, trigger = rule.definition, rule.definition.trigger
    scope = store.owned_campaigns(run.conn, None if rule.admin else rule.owner)
    covered = {c.id: c for c in scope if definition.scope.covers(
        campaign_id=c.id, name=c.name, grid_user=c.grid_user, owner=rule.owner,
        admin=rule.admin)}
    if not covered:
        return
    codes, classes = _wanted([rule])
    closing = trigger.kind == "event" and trigger.on == "close"
    for row in store.events_between(run.conn, since=since, until=run.now, codes=codes,
                                    classes=classes, closed=closing,
                                    campaign_ids=sorted(covered)):
        if row.date is None or not domain.event_matches(trigger, code=row.code,
                                                        class_=row.class_):
            continue
        detail = f"{row.code} event #{row.id} {'closed' if closing else 'opened'}"
        run.try_fire(rule, covered[row.campaign_id or 0], "", detail, row.date)


def dry_run(conn: Connection, rule: Rule, *, now: datetime,
            period: timedelta = timedelta(days=1)) -> list[WouldFire]:
    """What `rule` would have done over the last `period` (`gridrule test`), writing nothing.
    Event and state rules replay the period's events of the campaigns in scope with the
    cooldown; metric rules use the rate over each campaign's life so far (the maintained
    counters keep totals, not history) and silence rules the campaigns' state now."""
    found: list[WouldFire] = []
    definition = rule.definition
    trigger = definition.trigger

    def fire(_rule: Rule, campaign_id: int, _key: str, detail: str, at: datetime,
             _cluster_id: int | None) -> bool:
        found.append(WouldFire(at=at, campaign_id=campaign_id, detail=detail,
                               actions=definition.describe_actions()))
        return True

    run = Pass(conn=conn, now=now, rules=[rule], fire=fire)
    if trigger.kind in ("event", "state"):
        _replay_events(run, rule, since=now - period)
        return found
    if trigger.kind == "cluster":
        codes, _classes = _wanted([rule])
        rows = store.events_between(conn, since=now - period, until=now, codes=codes,
                                    classes=(), closed=trigger.on == "back", campaign_ids=None)
        evaluate_cluster_events(run, rows, [rule], replay=True)
        return found
    everyone = rule.admin
    # the metric window's base is the campaign's start: the counters keep totals, not history
    zero = SimpleNamespace(window_start=now, base_terminated=0, base_failures=0,
                           base_resubmissions=0, base_clusters=None)
    for campaign in store.campaigns_in_treatment(
            conn, grid_users=None if everyone else [rule.owner]):
        if trigger.kind == "silence":
            _silence(run, rule, campaign)
            continue
        if not definition.scope.covers(campaign_id=campaign.id, name=campaign.name,
                                       grid_user=campaign.grid_user, owner=rule.owner,
                                       admin=rule.admin):
            continue
        if trigger.metric in ("throughput", "eta"):
            _pace(run, rule, campaign)
            continue
        current, _recent = run.campaign_counters(campaign.id, trigger.window)
        measure = _share if trigger.metric == "cluster_error_share" else _rate
        measure(run, rule, campaign, zero, current, "")
    return found
