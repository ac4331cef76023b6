"""Cluster and campaign incidents as rows: the one place the runner and the updater record a failed
cluster call and open a campaign blacklist (v3 Colombo §3.3.3, §3.5.3), and where the updater
records a cluster's stress (UNDER_STRESS, v3 §3.3).

The decisions are `cigri.domain.colombo`'s (`plan_cluster_error`, `plan_campaign_blacklist`); this
module applies them to the `events` table, inside the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from cigri.domain import colombo
from cigri.domain.clusters import Cluster
from cigri.domain.event_codes import EventCode
from cigri.domain.events import BLACKLIST
from cigri.domain.oar import OarError
from cigri.domain.states import EventClass, EventState
from cigri.storage import events as event_store
from cigri.storage import jobs as job_store
from cigri.storage.clusters import set_cluster_stress_factor


def record_cluster_error(conn: Connection, *, cluster_id: int, error: OarError,
                         now: datetime) -> None:
    """A failed cluster call: a cluster event with the client's code; transient network codes
    also open a whole-cluster BLACKLIST (lifted by the updater once the API answers again)."""
    plan = colombo.plan_cluster_error(error.code)
    code = plan.code
    if plan.blacklists_cluster:
        if event_store.find_open_event(conn, code=code, class_=EventClass.CLUSTER,
                                       cluster_id=cluster_id) is not None:
            return
        parent = event_store.record_event(conn, class_=EventClass.CLUSTER, code=code,
                                          cluster_id=cluster_id, message=error.message, now=now,
                                          checked=True)
        event_store.record_event(conn, class_=EventClass.CLUSTER, code=BLACKLIST,
                                 cluster_id=cluster_id, parent=parent, now=now, checked=True,
                                 message=f"cluster blacklisted because of {code}")
    else:
        event_store.record_event(conn, class_=EventClass.CLUSTER, code=code,
                                 cluster_id=cluster_id, message=error.message,
                                 state=EventState.CLOSED, now=now, checked=True)


def open_campaign_blacklist(conn: Connection, *, failure_id: int, now: datetime) -> int | None:
    """The campaign BLACKLIST a job failure calls for, unless one is already open for its
    (campaign, cluster): one blacklist aggregates every failure of the pair
    (`colombo.plan_campaign_blacklist`). The pair is locked until the caller's transaction ends,
    so a concurrent runner or updater sees this blacklist. Returns its id, or None."""
    failure = event_store.get_event(conn, failure_id)
    if failure.campaign_id is None or failure.cluster_id is None:
        return None
    job_store.lock_campaign_cluster(conn, campaign_id=failure.campaign_id,
                                    cluster_id=failure.cluster_id)
    current = event_store.find_open_event(conn, code=BLACKLIST, class_=EventClass.CAMPAIGN,
                                          campaign_id=failure.campaign_id,
                                          cluster_id=failure.cluster_id)
    if not colombo.plan_campaign_blacklist(failure, has_open_blacklist=current is not None):
        return None
    return event_store.record_event(conn, class_=EventClass.CAMPAIGN, code=BLACKLIST,
                                    campaign_id=failure.campaign_id,
                                    cluster_id=failure.cluster_id, parent=failure_id, now=now,
                                    checked=True)


def record_stress(conn: Connection, cluster: Cluster, stress: float, *, threshold: float,
                  now: datetime) -> None:
    """Store the cluster's GLOBAL_STRESS; one open UNDER_STRESS event while it is at or above
    `threshold` (0: never), closed once it is below."""
    if stress != cluster.stress_factor:
        set_cluster_stress_factor(conn, cluster.id, stress)
    current = event_store.find_open_event(conn, code=EventCode.UNDER_STRESS,
                                          class_=EventClass.CLUSTER, cluster_id=cluster.id)
    stressed = threshold > 0 and stress >= threshold
    if stressed and current is None:
        event_store.record_event(
            conn, class_=EventClass.CLUSTER, code=EventCode.UNDER_STRESS, cluster_id=cluster.id,
            now=now, checked=True,
            message=f"Cluster {cluster.name} is under stress ({stress}/{threshold})!")
    elif not stressed and current is not None:
        event_store.close_event(conn, current.id, now=now)
