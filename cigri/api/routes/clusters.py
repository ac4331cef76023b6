"""`/clusters` (the enabled clusters) and `/clusters/<id>`: a cluster's settings, stress,
blacklist and the open events behind it, and its night window (nightly and semi-best-effort
campaigns follow it)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue

from cigri.api.access import now, settings, tx, who
from cigri.api.shapes import json_response, link
from cigri.domain.clusters import Cluster
from cigri.domain.night import NightWindow
from cigri.domain.states import AuthType, EventClass
from cigri.storage.clusters import get_cluster, list_clusters
from cigri.storage.events import is_cluster_blacklisted, list_open_events

clusters = Blueprint("clusters", __name__)


@clusters.get("/clusters")
def clusters_list() -> ResponseReturnValue:
    who()
    with tx() as conn:
        found = list_clusters(conn, enabled_only=True)
    items = [{"id": c.id, "name": c.name,
              "links": [link("self", f"/clusters/{c.id}"), link("parent", "/clusters")]}
             for c in found]
    return json_response({"items": items, "total": len(items),
                          "links": [link("self", "/clusters"), link("parent", "/")]})


@clusters.get("/clusters/<id:cluster_id>")
def cluster_detail(cluster_id: int) -> ResponseReturnValue:
    who()
    threshold = settings().STRESS_FACTOR
    with tx() as conn:
        cluster = get_cluster(conn, cluster_id)
        blacklisted = is_cluster_blacklisted(conn, cluster_id)
        # open cluster-wide events other than the blacklist itself: why it is blacklisted
        causes = sorted({e.code for e in list_open_events(conn, class_=EventClass.CLUSTER,
                                                          cluster_id=cluster_id)
                         if e.campaign_id is None and e.code != "BLACKLIST"})
    header = cluster.api_auth_header or (
        "Authorization" if cluster.api_auth_type is AuthType.JWT else "X_REMOTE_IDENT")
    return json_response({
        "id": cluster.id, "name": cluster.name, "api_url": cluster.api_url,
        "api_auth_type": str(cluster.api_auth_type), "api_auth_header": header,
        "api_chunk_size": cluster.api_chunk_size, "api_limit": cluster.api_limit,
        "ssh_host": cluster.ssh_host, "batch": str(cluster.batch),
        "resource_unit": cluster.resource_unit, "power": cluster.power,
        "properties": cluster.properties,
        "stress_factor": f"{cluster.stress_factor}/{threshold}",
        "enabled": cluster.enabled, "blacklisted": blacklisted, "events": causes,
        "under_stress": cluster.is_stressed(threshold),
        **_night_json(cluster),
        "links": [link("self", f"/clusters/{cluster.id}"), link("parent", "/clusters")]})


def _night_json(cluster: Cluster) -> dict[str, Any]:
    """The cluster's night window (its own or the grid-wide default), whether it is night there
    now and when that changes (nightly and semi-best-effort campaigns follow it)."""
    site = settings()
    window = NightWindow.for_cluster(cluster, default_window=site.NIGHT_WINDOW,
                                     default_zone=site.NIGHT_TIME_ZONE)
    at = now()
    change = window.next_change(at)
    return {"night_window": window.text, "time_zone": window.zone,
            "night_window_is_default": cluster.night_window is None,
            "is_night": window.is_night(at),
            "night_changes_at": change.isoformat() if change else None}
