"""Automation rules in the database: the rules (`automation_rules`), their firings
(`automation_firings`, an outbox: a firing is written before its actions run, and marked done in
the transaction of its actions), the per rule and campaign state (`automation_rule_campaigns`:
last firing, metric window base, per cluster failures for `cluster_error_share`) and the daemon's
watermarks (`automation_cursors`); for the actions, a rule's own campaign blacklist.

Reads for the evaluation are bounded by what happened since the last pass (events after the id
watermark, closures after the time watermark, through `ix_events_date_closed`) and by the number
of campaigns in scope (maintained counters of `cigri.storage.stats`), never by campaign size.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cigri.domain.automations import (
    Counters,
    FiringState,
    Rule,
    RuleDefinition,
    RuleError,
    parse_definition,
)
from cigri.domain.errors import Forbidden, NotFound
from cigri.domain.states import CampaignState, EventState
from cigri.storage.heartbeats import notify_daemons
from cigri.storage.stats import campaign_cluster_stats, window_start
from cigri.storage.tables import (
    automation_cursors,
    automation_firings,
    automation_rule_campaigns,
    automation_rules,
    campaign_cluster_event_counts,
    campaign_cluster_job_stats,
    campaign_cluster_throughput,
    campaign_properties,
    campaign_schedules,
    campaigns,
    clusters,
    events,
)

log = logging.getLogger(__name__)

PENDING, DONE = FiringState.PENDING.value, FiringState.DONE.value
OPENED_CURSOR = "events-opened"
CLOSED_CURSOR = "events-closed"


@dataclass(frozen=True, kw_only=True)
class CampaignRow:
    id: int
    name: str | None
    grid_user: str
    state: str
    submission_time: datetime | None
    nb_jobs: int = 0


@dataclass(frozen=True, kw_only=True)
class EventRow:
    id: int
    code: str
    class_: str
    campaign_id: int | None  # None: a whole-cluster event
    date: datetime | None
    cluster_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class Firing:
    id: int
    rule_id: int
    campaign_id: int | None
    trigger: str
    actions: list[dict[str, Any]]
    fired_at: datetime
    state: str
    outcome: str | None


# --- rules ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _parsed(text: str, admin: bool) -> tuple[RuleDefinition, dict[str, Any]]:
    """A stored definition, parsed once per process (definitions are immutable)."""
    source = json.loads(text)
    return parse_definition(source, admin=admin), source


def _rule_from_row(row: Any) -> Rule:
    definition, source = _parsed(row.definition, bool(row.admin))
    return Rule(id=row.id, owner=row.owner, admin=bool(row.admin), enabled=bool(row.enabled),
                definition=definition, source=source)


def has_enabled_work(conn: Connection) -> bool:
    """Whether any rule or schedule is enabled: the automations daemon stays on its interval
    while one is (it watches time windows and calendars), and idles otherwise."""
    return bool(conn.execute(select(
        select(automation_rules.c.id).where(automation_rules.c.enabled.is_(True)).exists()
        | select(campaign_schedules.c.id).where(campaign_schedules.c.enabled.is_(True)).exists()
    )).scalar())


def add_rule(conn: Connection, *, owner: str, admin: bool, source: dict[str, Any],
             now: datetime) -> int:
    """Store a rule (validated again here: nothing invalid is ever stored); returns its id."""
    definition = parse_definition(source, admin=admin)
    notify_daemons(conn, "automations")  # an idle automations daemon watches it from now
    return int(conn.execute(insert(automation_rules).values(
        owner=owner, admin=admin, name=definition.name, definition=json.dumps(source),
        enabled=True, created_at=now, updated_at=now).returning(automation_rules.c.id)
    ).scalar_one())


def get_row(conn: Connection, table: Table, row_id: int, what: str) -> Any:
    """The row of a rule or a schedule; `NotFound` ("Rule 3 not found") when there is none."""
    row = conn.execute(select(table).where(table.c.id == row_id)).one_or_none()
    if row is None:
        raise NotFound(f"{what} {row_id} not found")
    return row


def delete_row(conn: Connection, table: Table, row_id: int, what: str) -> None:
    if not conn.execute(delete(table).where(table.c.id == row_id)).rowcount:
        raise NotFound(f"{what} {row_id} not found")


def get_rule(conn: Connection, rule_id: int) -> Rule:
    return _rule_from_row(get_row(conn, automation_rules, rule_id, "Rule"))


def check_row_owner(owner: str, *, user: str, is_admin: bool, what: str, row_id: int) -> None:
    """A rule or a schedule is its owner's, or any admin's; `Forbidden` for anyone else."""
    if owner != user and not is_admin:
        raise Forbidden(f"{what} {row_id} does not belong to you")


def get_own_rule(conn: Connection, rule_id: int, *, user: str, is_admin: bool) -> Rule:
    """The rule, if this user may see and change it (its owner, or an admin); `NotFound` or
    `Forbidden` otherwise. The API's and the dashboard's one check."""
    rule = get_rule(conn, rule_id)
    check_row_owner(rule.owner, user=user, is_admin=is_admin, what="Rule", row_id=rule_id)
    return rule


def list_rules(conn: Connection, *, owner: str | None = None,
               enabled_only: bool = False) -> list[Rule]:
    """Rules (of one owner, or all), by id. A stored rule that no longer validates is logged and
    left out (a newer version's definition read by an older one)."""
    query = select(automation_rules).order_by(automation_rules.c.id)
    if owner is not None:
        query = query.where(automation_rules.c.owner == owner)
    if enabled_only:
        query = query.where(automation_rules.c.enabled.is_(True))
    found = []
    for row in conn.execute(query):
        try:
            found.append(_rule_from_row(row))
        except (RuleError, ValueError) as error:
            log.warning("rule %d skipped: %s", row.id, error)
    return found


def set_rule_enabled(conn: Connection, rule_id: int, *, enabled: bool, now: datetime) -> None:
    changed = conn.execute(update(automation_rules).where(automation_rules.c.id == rule_id)
                           .values(enabled=enabled, updated_at=now)).rowcount
    if not changed:
        raise NotFound(f"Rule {rule_id} not found")
    if enabled:
        notify_daemons(conn, "automations")


def remove_rule(conn: Connection, rule_id: int) -> None:
    delete_row(conn, automation_rules, rule_id, "Rule")


def list_firings(conn: Connection, *, rule_id: int, limit: int = 20) -> list[Firing]:
    rows = conn.execute(select(automation_firings).where(automation_firings.c.rule_id == rule_id)
                        .order_by(automation_firings.c.id.desc()).limit(limit))
    return [firing_from_row(row) for row in rows]


def latest_firings(conn: Connection, rule_ids: Sequence[int], *, per_rule: int = 3
                   ) -> dict[int, list[Firing]]:
    """The last `per_rule` firings of each rule (the dashboard's list), newest first, in one
    statement through `ix_automation_firings_rule_campaign`."""
    if not rule_ids:
        return {}
    table = automation_firings
    ranked = select(table, func.row_number().over(
        partition_by=table.c.rule_id, order_by=table.c.id.desc()).label("rank")).where(
        table.c.rule_id.in_(sorted(set(rule_ids)))).subquery()
    found: dict[int, list[Firing]] = {}
    for row in conn.execute(select(ranked).where(ranked.c.rank <= per_rule)
                            .order_by(ranked.c.rule_id, ranked.c.id.desc())):
        found.setdefault(row.rule_id, []).append(firing_from_row(row))
    return found


def firing_from_row(row: Any) -> Firing:
    return Firing(id=row.id, rule_id=row.rule_id, campaign_id=row.campaign_id,
                  trigger=row.trigger, actions=json.loads(row.actions), fired_at=row.fired_at,
                  state=row.state, outcome=row.outcome)


# --- what the evaluation reads ----------------------------------------------------------------


def read_cursor(conn: Connection, name: str) -> tuple[int, datetime | None] | None:
    """(last id, last instant) of a watermark, locked for the caller's transaction; None
    before the first pass."""
    row = conn.execute(select(automation_cursors).where(automation_cursors.c.name == name)
                       .with_for_update()).one_or_none()
    if row is None:
        return None
    return int(row.last_id), row.last_at


def write_cursor(conn: Connection, name: str, *, last_id: int = 0,
                 last_at: datetime | None = None) -> None:
    insert_: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert_(automation_cursors).values(name=name, last_id=last_id, last_at=last_at)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["name"], set_={"last_id": last_id, "last_at": last_at}))


def latest_event_id(conn: Connection, *, after: int, opened_before: datetime) -> int:
    """The highest event id above `after` opened before `opened_before` (the opened-events
    watermark moves there: later ids may still belong to transactions not yet committed)."""
    found = conn.execute(select(func.max(events.c.id)).where(
        events.c.id > after, events.c.date_open < opened_before)).scalar_one()
    return int(found) if found is not None else after


def _event_filter(codes: Iterable[str], classes: Iterable[str]) -> Any:
    codes, classes = sorted(set(codes)), sorted(set(classes))
    return or_(events.c.code.in_(codes), events.c.class_.in_(classes))


def _event_rows(query: Any, conn: Connection) -> list[EventRow]:
    return [EventRow(id=r.id, code=r.code, class_=r.class_, campaign_id=r.campaign_id,
                     cluster_id=r.cluster_id, date=r.date) for r in conn.execute(query)]


def _owner_filter(whole_cluster: bool) -> Any:
    """Campaign events, or (cluster triggers) whole-cluster events: a cluster and no campaign."""
    if whole_cluster:
        return and_(events.c.campaign_id.is_(None), events.c.cluster_id.is_not(None))
    return events.c.campaign_id.is_not(None)


def opened_events(conn: Connection, *, after: int, codes: Iterable[str], classes: Iterable[str],
                  limit: int, whole_cluster: bool = False) -> list[EventRow]:
    """Campaign (or whole-cluster) events with an id above `after` whose code or class a rule
    waits for."""
    return _event_rows(
        select(events.c.id, events.c.code, events.c.class_, events.c.campaign_id,
               events.c.cluster_id, events.c.date_open.label("date"))
        .where(events.c.id > after, _owner_filter(whole_cluster), _event_filter(codes, classes))
        .order_by(events.c.id).limit(limit), conn)


def closed_events(conn: Connection, *, since: datetime, until: datetime, codes: Iterable[str],
                  classes: Iterable[str], limit: int, whole_cluster: bool = False
                  ) -> list[EventRow]:
    """Campaign (or whole-cluster) events closed in (`since`, `until`] whose code or class a
    rule waits for."""
    return _event_rows(
        select(events.c.id, events.c.code, events.c.class_, events.c.campaign_id,
               events.c.cluster_id, events.c.date_closed.label("date"))
        .where(events.c.date_closed > since, events.c.date_closed <= until,
               events.c.state == EventState.CLOSED.value, _owner_filter(whole_cluster),
               _event_filter(codes, classes))
        .order_by(events.c.date_closed, events.c.id).limit(limit), conn)


def events_between(conn: Connection, *, since: datetime, until: datetime, codes: Iterable[str],
                   classes: Iterable[str], closed: bool, campaign_ids: Sequence[int] | None
                   ) -> list[EventRow]:
    """For a dry run: the events of these campaigns (None: whole-cluster events) opened (or
    closed) in [since, until]."""
    column = events.c.date_closed if closed else events.c.date_open
    owner = (_owner_filter(True) if campaign_ids is None
             else events.c.campaign_id.in_(list(campaign_ids)))
    return _event_rows(
        select(events.c.id, events.c.code, events.c.class_, events.c.campaign_id,
               events.c.cluster_id, column.label("date"))
        .where(column >= since, column <= until, owner, _event_filter(codes, classes))
        .order_by(column, events.c.id), conn)


def campaigns_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, CampaignRow]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {row.id: _campaign(row) for row in conn.execute(
        _CAMPAIGN_ROWS.where(campaigns.c.id.in_(wanted)))}


def campaigns_in_treatment(conn: Connection, *, grid_users: Iterable[str] | None = None
                           ) -> list[CampaignRow]:
    """The campaigns a metric or silence rule may cover (of these users, or everyone's)."""
    query = _CAMPAIGN_ROWS.where(
        campaigns.c.state == CampaignState.IN_TREATMENT.value).order_by(campaigns.c.id)
    if grid_users is not None:
        query = query.where(campaigns.c.grid_user.in_(sorted(set(grid_users))))
    return [_campaign(row) for row in conn.execute(query)]


def owned_campaigns(conn: Connection, grid_user: str | None) -> list[CampaignRow]:
    query = _CAMPAIGN_ROWS.order_by(campaigns.c.id)
    if grid_user is not None:
        query = query.where(campaigns.c.grid_user == grid_user)
    return [_campaign(row) for row in conn.execute(query)]


def campaigns_on_clusters(conn: Connection, cluster_ids: Iterable[int], *,
                          grid_users: Iterable[str] | None) -> dict[int, list[CampaignRow]]:
    """For cluster triggers: the campaigns in treatment or paused (a rule may pause a campaign
    when its cluster is stressed and resume it when the cluster is back) of these users, or
    everyone's, whose JDL names each cluster, by cluster id (through the campaigns' cluster
    properties)."""
    wanted = sorted(set(cluster_ids))
    if not wanted:
        return {}
    on_cluster = (select(campaign_properties.c.campaign_id, campaign_properties.c.cluster_id)
                  .where(campaign_properties.c.cluster_id.in_(wanted)).distinct().subquery())
    query = (_CAMPAIGN_ROWS.add_columns(on_cluster.c.cluster_id)
             .join_from(campaigns, on_cluster, on_cluster.c.campaign_id == campaigns.c.id)
             .where(campaigns.c.state.in_([CampaignState.IN_TREATMENT.value,
                                           CampaignState.PAUSED.value]))
             .order_by(on_cluster.c.cluster_id, campaigns.c.id))
    if grid_users is not None:
        query = query.where(campaigns.c.grid_user.in_(sorted(set(grid_users))))
    found: dict[int, list[CampaignRow]] = {}
    for row in conn.execute(query):
        found.setdefault(int(row.cluster_id), []).append(_campaign(row))
    return found


def cluster_names(conn: Connection) -> dict[int, str]:
    return {int(i): str(n) for i, n in conn.execute(select(clusters.c.id, clusters.c.name))}


_CAMPAIGN_ROWS = select(campaigns.c.id, campaigns.c.name, campaigns.c.grid_user,
                        campaigns.c.state, campaigns.c.submission_time, campaigns.c.nb_jobs)


def _campaign(row: Any) -> CampaignRow:
    return CampaignRow(id=row.id, name=row.name, grid_user=row.grid_user, state=row.state,
                       submission_time=row.submission_time, nb_jobs=int(row.nb_jobs or 0))


def campaign_counters(conn: Connection, campaign_id: int, *, now: datetime,
                      window: timedelta) -> tuple[Counters, int]:
    """The campaign's totals (terminated tasks, failures, resubmissions) and the tasks that
    stopped in the last `window` (from the minute `window` ago), from the maintained counters."""
    *per_cluster, whole = campaign_cluster_stats(conn, campaign_id, now=now,
                                                 window_seconds=int(window.total_seconds()))
    recent = round(whole.jobs_per_hour * window.total_seconds() / 3600.0)
    return Counters(terminated=whole.terminated, failures=whole.failures,
                    resubmissions=whole.resubmissions,
                    cluster_failures={c.cluster_id: c.failures for c in per_cluster
                                      if c.cluster_id is not None and c.failures}), recent


def campaigns_counters(conn: Connection, campaign_ids: Sequence[int], *, now: datetime,
                       windows: Iterable[timedelta]
                       ) -> dict[tuple[int, timedelta], tuple[Counters, int]]:
    """`campaign_counters` of many campaigns and windows at once: on PostgreSQL a few grouped
    reads of the maintained rows (2 + one per window), whatever the number of campaigns."""
    ids, spans = sorted(set(campaign_ids)), sorted(set(windows))
    if not ids or not spans:
        return {}
    if conn.dialect.name != "postgresql":
        return {(c, w): campaign_counters(conn, c, now=now, window=w) for c in ids for w in spans}
    sums, counts, minutes = (campaign_cluster_job_stats, campaign_cluster_event_counts,
                             campaign_cluster_throughput)
    terminated = dict(conn.execute(
        select(sums.c.campaign_id, func.sum(sums.c.terminated))
        .where(sums.c.campaign_id.in_(ids)).group_by(sums.c.campaign_id)).all())
    failures: dict[int, tuple[int, int]] = {}
    by_cluster: dict[int, dict[int, int]] = {}
    for campaign_id, cluster_id, failed, resubmitted in conn.execute(
            select(counts.c.campaign_id, counts.c.cluster_id, func.sum(counts.c.failures),
                   func.sum(counts.c.resubmissions))
            .where(counts.c.campaign_id.in_(ids))
            .group_by(counts.c.campaign_id, counts.c.cluster_id)):
        total = failures.get(campaign_id, (0, 0))
        failures[campaign_id] = (total[0] + int(failed or 0), total[1] + int(resubmitted or 0))
        if cluster_id and failed:  # cluster 0: failures without a cluster
            by_cluster.setdefault(campaign_id, {})[int(cluster_id)] = int(failed)
    found = {}
    for span in spans:
        since = window_start(now, int(span.total_seconds()))
        recent = dict(conn.execute(
            select(minutes.c.campaign_id, func.sum(minutes.c.terminated))
            .where(minutes.c.campaign_id.in_(ids), minutes.c.minute >= since)
            .group_by(minutes.c.campaign_id)).all())
        for campaign_id in ids:
            failed, resubmitted = failures.get(campaign_id, (0, 0))
            found[(campaign_id, span)] = (
                Counters(terminated=int(terminated.get(campaign_id) or 0), failures=failed,
                         resubmissions=resubmitted,
                         cluster_failures=by_cluster.get(campaign_id, {})),
                int(recent.get(campaign_id) or 0))
    return found


def rule_campaign_states(conn: Connection, rule_ids: Sequence[int]) -> dict[tuple[int, int], Any]:
    if not rule_ids:
        return {}
    table = automation_rule_campaigns
    return {(row.rule_id, row.campaign_id): row for row in conn.execute(
        select(table).where(table.c.rule_id.in_(sorted(set(rule_ids)))))}


def save_rule_campaign(conn: Connection, rule_id: int, campaign_id: int, **values: Any) -> None:
    """Insert or update the (rule, campaign) state row with these columns."""
    insert_: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert_(automation_rule_campaigns).values(
        rule_id=rule_id, campaign_id=campaign_id, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["rule_id", "campaign_id"],
                                                 set_=values))
