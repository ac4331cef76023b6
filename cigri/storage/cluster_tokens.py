"""OAR 3 (JWT) cluster tokens in `users_mapping` and the events about them.

Owns: reading, setting and removing a grid login's token on a cluster (the `oar` login's being
the cluster-admin token), the open ADMIN_TOKEN_MISSING / ADMIN_TOKEN_REJECTED cluster events with
their whole-cluster BLACKLIST (recorded once, closed together), and resuming the campaigns whose
submissions were refused for a missing user token once that user has one (their
RUNNER_SUBMIT_TOKEN_NOT_FOUND events are fixed with resubmission). Which token a client sends is
`cigri.app`'s; when to check is the updater's.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection, and_, select

from cigri.domain.cluster_tokens import (
    ADMIN_LOGIN,
    ADMIN_TOKEN_CODES,
    ADMIN_TOKEN_MISSING,
    ADMIN_TOKEN_REJECTED,
    MISSING_CODES,
    REFUSED_CODES,
    USER_TOKEN_MISSING,
    admin_token_message,
    stored_value,
)
from cigri.domain.clusters import Cluster
from cigri.domain.event_codes import EventCode
from cigri.domain.events import BLACKLIST, Event
from cigri.domain.oar import OarError
from cigri.domain.states import AuthType, CampaignState, EventClass, EventState
from cigri.storage import actions
from cigri.storage import events as event_store
from cigri.storage.tables import campaigns, events, users_mapping
from cigri.storage.users import remove_user_mapping, set_user_mapping

log = logging.getLogger(__name__)


def get_token(conn: Connection, *, grid_login: str, cluster_id: int) -> str | None:
    """The stored `Bearer <token>` of `grid_login` on the cluster, or None."""
    value = conn.execute(select(users_mapping.c.cluster_login).where(
        users_mapping.c.grid_login == grid_login, users_mapping.c.cluster_id == cluster_id)
    ).scalar_one_or_none()
    return value if value and value.lower().startswith("bearer ") else None


def list_tokens(conn: Connection, *, grid_login: str) -> list[tuple[int, str]]:
    """(cluster id, stored `Bearer <token>`) of every cluster token of `grid_login`."""
    return [(r.cluster_id, r.cluster_login) for r in conn.execute(
        select(users_mapping.c.cluster_id, users_mapping.c.cluster_login)
        .where(users_mapping.c.grid_login == grid_login,
               users_mapping.c.cluster_login.ilike("bearer %"))
        .order_by(users_mapping.c.cluster_id))]


def set_token(conn: Connection, *, grid_login: str, cluster_id: int, token: str) -> None:
    """Set or replace `grid_login`'s token on the cluster (`BadToken` if it cannot be one)."""
    set_user_mapping(conn, grid_login=grid_login, cluster_id=cluster_id,
                     cluster_login=stored_value(token))
    log.info("OAR token of %s on cluster %d set", grid_login, cluster_id,
             extra={"action": "cluster_token_set"})


def remove_token(conn: Connection, *, grid_login: str, cluster_id: int) -> bool:
    return remove_user_mapping(conn, grid_login=grid_login, cluster_id=cluster_id) > 0


def clusters_with_admin_token(conn: Connection) -> set[int]:
    """Ids of the clusters whose `oar` login has a token."""
    return set(conn.execute(select(users_mapping.c.cluster_id).where(
        users_mapping.c.grid_login == ADMIN_LOGIN,
        users_mapping.c.cluster_login.ilike("bearer %"))).scalars())


def open_admin_token_events(conn: Connection) -> dict[int, Event]:
    """Cluster id -> its open ADMIN_TOKEN_* event."""
    return {int(e.cluster_id): e for e in event_store.list_open_events(
        conn, class_=EventClass.CLUSTER, code=sorted(ADMIN_TOKEN_CODES))
        if e.cluster_id is not None}


def record_admin_token_problem(conn: Connection, *, cluster_id: int, code: EventCode, message: str,
                               now: datetime) -> int | None:
    """Open the ADMIN_TOKEN_* event `code` of a cluster with its whole-cluster BLACKLIST, unless
    it is open already (an open event of the other code is closed first). Returns its id."""
    current = open_admin_token_events(conn).get(cluster_id)
    if current is not None:
        if current.code == code:
            return None
        close_admin_token_events(conn, cluster_id=cluster_id, now=now)
    event_id = event_store.record_event(conn, class_=EventClass.CLUSTER, code=code,
                                        cluster_id=cluster_id, message=message, now=now,
                                        checked=True)
    event_store.record_event(conn, class_=EventClass.CLUSTER, code=BLACKLIST,
                             cluster_id=cluster_id, parent=event_id, now=now, checked=True,
                             message=f"cluster blacklisted because of {code}")
    log.warning("cluster %d: %s", cluster_id, message, extra={"action": "admin_token"})
    return event_id


def record_admin_token_refusal(conn: Connection, cluster: Cluster, error: OarError, *,
                               now: datetime) -> bool:
    """A bulk call refused for the admin token of a jwt cluster: its ADMIN_TOKEN_MISSING or
    ADMIN_TOKEN_REJECTED event (True); any other error, or a cluster not on jwt: False."""
    if AuthType(cluster.api_auth_type) is not AuthType.JWT:
        return False
    if error.code in MISSING_CODES:
        record_missing_admin_token(conn, cluster, now=now)
        return True
    if error.code in REFUSED_CODES:
        record_admin_token_problem(
            conn, cluster_id=cluster.id, code=ADMIN_TOKEN_REJECTED, now=now,
            message=admin_token_message(ADMIN_TOKEN_REJECTED, cluster.name, cluster.id,
                                        f"HTTP {error.status}: {error.message}"))
        return True
    return False


def record_missing_admin_token(conn: Connection, cluster: Cluster, *, now: datetime) -> None:
    """The cluster has no admin token: its ADMIN_TOKEN_MISSING event (`record_admin_token_problem`)."""
    record_admin_token_problem(
        conn, cluster_id=cluster.id, code=ADMIN_TOKEN_MISSING, now=now,
        message=admin_token_message(ADMIN_TOKEN_MISSING, cluster.name, cluster.id))


def close_admin_token_events(conn: Connection, *, cluster_id: int, now: datetime) -> int:
    """Close the cluster's open ADMIN_TOKEN_* events and the blacklists they opened."""
    found = [e.id for e in event_store.list_open_events(
        conn, class_=EventClass.CLUSTER, code=sorted(ADMIN_TOKEN_CODES), cluster_id=cluster_id)]
    if not found:
        return 0
    children = [e.id for e in event_store.list_open_events(conn, code=BLACKLIST,
                                                           cluster_id=cluster_id)
                if e.parent in found]
    return event_store.close_events(conn, [*found, *children], now=now)


def resume_user_token_events(conn: Connection, *, now: datetime) -> int:
    """Fix, with resubmission, the open RUNNER_SUBMIT_TOKEN_NOT_FOUND events of live campaigns
    whose owner now has a token on the event's cluster; returns how many were closed (the
    campaign blacklists they caused are lifted by the updater)."""
    rows = conn.execute(
        select(events)
        .join(campaigns, campaigns.c.id == events.c.campaign_id)
        .join(users_mapping, and_(users_mapping.c.grid_login == campaigns.c.grid_user,
                                  users_mapping.c.cluster_id == events.c.cluster_id,
                                  users_mapping.c.cluster_login.ilike("bearer %")))
        .where(events.c.state == EventState.OPEN.value, events.c.code == USER_TOKEN_MISSING,
               campaigns.c.state.in_([CampaignState.IN_TREATMENT.value,
                                      CampaignState.PAUSED.value]))
        .order_by(events.c.id)).all()
    if not rows:
        return 0
    found = [event_store.event_from_row(row) for row in rows]
    plan = actions.fix_events(conn, found, resubmit=True, now=now)
    log.info("resumed %d job(s) refused for a missing user token", len(plan.resubmit_job_ids),
             extra={"action": "user_token_resume"})
    return len(plan.close_event_ids)
