"""The automations' firings (issue 13): the outbox of decided firings (`record_firing`, recorded
with their RULE_FIRED campaign event in the evaluation's transaction; claimed, run and marked
done one by one, `cigri.daemons.automations`), and what the rules' own actions write (a
campaign blacklist that only its user lifts). Rules and what the evaluation reads are
`cigri.storage.automations`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cigri.domain.automations import RULE_FIRED, Rule
from cigri.domain.errors import NotFound
from cigri.domain.events import BLACKLIST
from cigri.domain.states import EventClass, EventState
from cigri.storage.automations import DONE, PENDING, Firing, firing_from_row, save_rule_campaign
from cigri.storage.events import find_open_event, record_event
from cigri.storage.tables import automation_firings, clusters

# --- firings (the outbox) ---------------------------------------------------------------------


def record_firing(conn: Connection, *, rule: Rule, campaign_id: int, dedup_key: str,
                  trigger: str, message: str, now: datetime,
                  cluster_id: int | None = None) -> int | None:
    """Record a firing, its RULE_FIRED campaign event and the rule's last firing on the campaign,
    in the caller's transaction; None (nothing written) when this firing was already recorded.
    `cluster_id` is the trigger's cluster, the one a blacklist action without a cluster acts on."""
    insert_: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    actions = [dict(kind=a.kind, message=a.message, to=a.to, resubmit=a.resubmit,
                    cluster=a.cluster, cluster_id=cluster_id, params=list(a.params))
               for a in rule.definition.actions]
    firing_id = conn.execute(insert_(automation_firings).values(
        rule_id=rule.id, campaign_id=campaign_id, dedup_key=dedup_key[:255], trigger=trigger,
        actions=json.dumps(actions), fired_at=now, state=PENDING)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(automation_firings.c.id)).scalar_one_or_none()
    if firing_id is None:
        return None
    event_id = record_event(conn, class_=EventClass.CAMPAIGN, code=RULE_FIRED,
                            campaign_id=campaign_id, state=EventState.CLOSED, message=message,
                            now=now)
    conn.execute(update(automation_firings).where(automation_firings.c.id == firing_id)
                 .values(event_id=event_id))
    save_rule_campaign(conn, rule.id, campaign_id, last_fired_at=now)
    return int(firing_id)


def pending_firing_ids(conn: Connection, *, limit: int) -> list[int]:
    return list(conn.execute(select(automation_firings.c.id).where(
        automation_firings.c.state == PENDING).order_by(automation_firings.c.id).limit(limit)
    ).scalars())


def claim_firing(conn: Connection, firing_id: int) -> Firing | None:
    """Lock a pending firing for the caller's transaction (None if done or being run)."""
    query = select(automation_firings).where(automation_firings.c.id == firing_id,
                                             automation_firings.c.state == PENDING)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = conn.execute(query).one_or_none()
    return None if row is None else firing_from_row(row)


def finish_firing(conn: Connection, firing_id: int, *, outcome: str, now: datetime) -> None:
    conn.execute(update(automation_firings).where(and_(
        automation_firings.c.id == firing_id, automation_firings.c.state == PENDING))
        .values(state=DONE, outcome=outcome, done_at=now))


# --- what the actions write ---------------------------------------------------------------------


def cluster_id_by_name(conn: Connection, name: str) -> int:
    found = conn.execute(select(clusters.c.id).where(clusters.c.name == name)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"Cluster {name} not found")
    return int(found)


def open_rule_blacklist(conn: Connection, *, campaign_id: int, cluster_id: int, message: str,
                        now: datetime) -> int | None:
    """Blacklist a campaign on a cluster for a rule: an open campaign BLACKLIST without a parent
    (the updater lifts only blacklists whose cause closed: this one stays until the user fixes
    it, `gridevents -f ID`). Returns its id, or None when one is already open for the pair."""
    if find_open_event(conn, code=BLACKLIST, class_=EventClass.CAMPAIGN, campaign_id=campaign_id,
                       cluster_id=cluster_id) is not None:
        return None
    return record_event(conn, class_=EventClass.CAMPAIGN, code=BLACKLIST, campaign_id=campaign_id,
                        cluster_id=cluster_id, message=message, now=now, checked=True)
