"""Clusters: add, read, list and change them. Owns the `clusters` table.

Written by the admin (`cigri cluster add`) and by the updater (`stress_factor`); read by everyone.
Disabled clusters stay readable by id (their jobs are still followed) but are left out of
`list_clusters(enabled_only=True)`, which runners and the meta-scheduler use.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from cigri.domain.clusters import Cluster
from cigri.domain.errors import ClusterNotFound, Conflict
from cigri.domain.injection import POLICIES
from cigri.domain.states import AuthType, ClusterAPI
from cigri.storage.tables import clusters

log = logging.getLogger(__name__)


def cluster_from_row(row: Any) -> Cluster:
    return Cluster(
        id=row.id, name=row.name, api_url=row.api_url, api_auth_type=AuthType(row.api_auth_type),
        api_username=row.api_username, api_password=row.api_password,
        api_auth_header=row.api_auth_header, api_chunk_size=row.api_chunk_size,
        api_limit=row.api_limit, api_timeout_seconds=row.api_timeout_seconds,
        ssh_host=row.ssh_host, batch=ClusterAPI(row.batch), resource_unit=row.resource_unit,
        power=row.power, properties=row.properties, stress_factor=float(row.stress_factor or 0),
        enabled=bool(row.enabled), night_window=row.night_window, time_zone=row.time_zone,
        injection_policy=row.injection_policy,
    )


def add_cluster(conn: Connection, *, name: str, api_url: str,
                api_auth_type: AuthType | str = AuthType.HEADER,
                api_auth_header: str | None = None, api_username: str | None = None,
                api_password: str | None = None, api_chunk_size: int = 100,
                api_limit: int = 100, api_timeout_seconds: float | None = None,
                ssh_host: str | None = None, batch: ClusterAPI | str = ClusterAPI.OAR2_5,
                resource_unit: str | None = "resource_id", power: int | None = None,
                properties: str | None = None, enabled: bool = True,
                now: datetime | None = None) -> Cluster:
    """Insert a cluster; raises Conflict if the name is taken."""
    try:
        with conn.begin_nested():
            row = conn.execute(
                insert(clusters).values(
                    name=name, api_url=api_url, api_auth_type=AuthType(api_auth_type).value,
                    api_auth_header=api_auth_header, api_username=api_username,
                    api_password=api_password, api_chunk_size=api_chunk_size,
                    api_limit=api_limit, api_timeout_seconds=api_timeout_seconds,
                    ssh_host=ssh_host, batch=ClusterAPI(batch).value, resource_unit=resource_unit,
                    power=power, properties=properties, enabled=enabled, created_at=now,
                    stress_factor=0.0,
                ).returning(*clusters.c)
            ).one()
    except IntegrityError as error:
        raise Conflict(f"a cluster named {name!r} already exists") from error
    return cluster_from_row(row)


# Every runner pass reads its cluster: the statement is built once (bound parameter), since
# building and cache-keying a statement costs about as much CPU as executing it.
_CLUSTER_BY_ID = select(clusters).where(clusters.c.id == bindparam("cluster_id"))


def get_cluster(conn: Connection, cluster_id: int) -> Cluster:
    """The cluster with this id (enabled or not); raises ClusterNotFound."""
    row = conn.execute(_CLUSTER_BY_ID, {"cluster_id": cluster_id}).one_or_none()
    if row is None:
        raise ClusterNotFound(f"no cluster with id {cluster_id}")
    return cluster_from_row(row)


def find_cluster_by_name(conn: Connection, name: str) -> Cluster | None:
    row = conn.execute(select(clusters).where(clusters.c.name == name)).one_or_none()
    return None if row is None else cluster_from_row(row)


def get_cluster_by_name(conn: Connection, name: str) -> Cluster:
    """The cluster with this name (enabled or not); raises ClusterNotFound."""
    found = find_cluster_by_name(conn, name)
    if found is None:
        raise ClusterNotFound(f"no cluster named {name!r}")
    return found


def list_clusters(conn: Connection, *, enabled_only: bool = False) -> list[Cluster]:
    """Every cluster by id, or only the enabled ones."""
    query = select(clusters).order_by(clusters.c.id)
    if enabled_only:
        query = query.where(clusters.c.enabled.is_(True))
    return [cluster_from_row(row) for row in conn.execute(query)]


def _set(conn: Connection, cluster_id: int, **values: Any) -> None:
    result = conn.execute(update(clusters).where(clusters.c.id == cluster_id).values(**values))
    if result.rowcount == 0:
        raise ClusterNotFound(f"no cluster with id {cluster_id}")


def set_cluster_enabled(conn: Connection, cluster_id: int, enabled: bool) -> None:
    _set(conn, cluster_id, enabled=enabled)


def set_cluster_stress_factor(conn: Connection, cluster_id: int, stress_factor: float) -> None:
    _set(conn, cluster_id, stress_factor=stress_factor)


def set_cluster_api_url(conn: Connection, cluster_id: int, api_url: str) -> None:
    _set(conn, cluster_id, api_url=api_url)


def set_cluster_fields(conn: Connection, cluster_id: int, **values: Any) -> None:
    """Change any columns of a cluster (admin `cigri cluster set`); unknown names raise."""
    unknown = set(values) - set(clusters.c.keys()) | ({"id"} & set(values))
    if unknown:
        raise ValueError(f"unknown cluster fields: {sorted(unknown)}")
    if "api_auth_type" in values:
        values["api_auth_type"] = AuthType(values["api_auth_type"]).value
    if "batch" in values:
        values["batch"] = ClusterAPI(values["batch"]).value
    policy = values.get("injection_policy")
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"injection_policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
    _set(conn, cluster_id, **values)
