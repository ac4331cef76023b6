"""Per-user, per-cluster settings an admin keeps: `users_priority` and `users_mapping`.

Owns upserts, listings and removals of those rows, and the `normal_authorized` admission rule
(who may run non best-effort jobs on which cluster). Does not own how the meta-scheduler uses a
priority or how the runner maps a login: that is theirs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Row, Table, delete, insert, select, update

from cigri.storage.tables import admission_rules, clusters, users_mapping, users_priority


@dataclass(frozen=True, kw_only=True)
class UserPriority:
    grid_user: str
    cluster_id: int
    cluster_name: str
    priority: int


@dataclass(frozen=True, kw_only=True)
class UserMapping:
    grid_login: str
    cluster_id: int
    cluster_name: str
    cluster_login: str | None


def set_user_priority(conn: Connection, *, grid_user: str, cluster_id: int, priority: int) -> None:
    """Insert or update the priority of a user on a cluster (higher runs first)."""
    _upsert(conn, users_priority, users_priority.c.grid_user, grid_user, cluster_id,
            priority=priority)


def remove_user_priority(conn: Connection, *, grid_user: str, cluster_id: int) -> int:
    return _remove(conn, users_priority.c.grid_user, grid_user, cluster_id)


def list_user_priorities(conn: Connection, *, grid_user: str | None = None) -> list[UserPriority]:
    return [UserPriority(grid_user=r.grid_user, cluster_id=r.cluster_id, cluster_name=r.cluster_name,
                         priority=r.priority)
            for r in _list(conn, users_priority.c.grid_user, grid_user)]


def set_user_mapping(conn: Connection, *, grid_login: str, cluster_id: int,
                     cluster_login: str) -> None:
    """Insert or update the login `grid_login` gets on a cluster."""
    _upsert(conn, users_mapping, users_mapping.c.grid_login, grid_login, cluster_id,
            cluster_login=cluster_login)


def get_cluster_login(conn: Connection, *, grid_login: str, cluster_id: int) -> str | None:
    """The login `grid_login` has on a cluster (for reading and removing its files as that
    user), or None when unmapped or when the mapping holds a `Bearer ` token instead."""
    mapped = conn.execute(select(users_mapping.c.cluster_login).where(
        users_mapping.c.grid_login == grid_login,
        users_mapping.c.cluster_id == cluster_id)).scalar_one_or_none()
    return str(mapped) if mapped and not str(mapped).startswith("Bearer ") else None


def remove_user_mapping(conn: Connection, *, grid_login: str, cluster_id: int) -> int:
    return _remove(conn, users_mapping.c.grid_login, grid_login, cluster_id)


def list_user_mappings(conn: Connection, *, grid_login: str | None = None) -> list[UserMapping]:
    return [UserMapping(grid_login=r.grid_login, cluster_id=r.cluster_id,
                        cluster_name=r.cluster_name, cluster_login=r.cluster_login)
            for r in _list(conn, users_mapping.c.grid_login, grid_login)]


def get_normal_authorized(conn: Connection) -> dict[str, list[str]]:
    """Cluster name -> users allowed non best-effort jobs there (clusters absent: everyone)."""
    value = conn.execute(select(admission_rules.c.value).where(
        admission_rules.c.rule == "normal_authorized").order_by(admission_rules.c.id).limit(1)
    ).scalar_one_or_none()
    found = json.loads(value) if value else {}
    return {str(k): [str(u) for u in v] for k, v in found.items()} if isinstance(found, dict) else {}


def set_normal_authorized(conn: Connection, allowed: dict[str, list[str]]) -> None:
    """Store the `normal_authorized` rule (one row, enabled)."""
    value = json.dumps(allowed, sort_keys=True)
    where = admission_rules.c.rule == "normal_authorized"
    if conn.execute(update(admission_rules).where(where)
                    .values(value=value, enabled=True)).rowcount == 0:
        conn.execute(insert(admission_rules).values(rule="normal_authorized", value=value,
                                                    enabled=True))


# users_priority and users_mapping share a shape: one row per (user, cluster id), the user's
# column named differently (grid_user, grid_login).

def _upsert(conn: Connection, table: Table, user_column: Column[Any], user: str, cluster_id: int,
            **values: Any) -> None:
    where = (user_column == user, table.c.cluster_id == cluster_id)
    if conn.execute(update(table).where(*where).values(**values)).rowcount == 0:
        conn.execute(insert(table).values({user_column.name: user, "cluster_id": cluster_id,
                                           **values}))


def _remove(conn: Connection, user_column: Column[Any], user: str, cluster_id: int) -> int:
    table = user_column.table
    return conn.execute(delete(table).where(
        user_column == user, table.c.cluster_id == cluster_id)).rowcount


def _list(conn: Connection, user_column: Column[Any], user: str | None) -> Sequence[Row[Any]]:
    """The rows (one user's, or everyone's) with their cluster's name, by user then cluster."""
    table = user_column.table
    query = (select(table, clusters.c.name.label("cluster_name"))
             .join(clusters, clusters.c.id == table.c.cluster_id)
             .order_by(user_column, clusters.c.name))
    if user is not None:
        query = query.where(user_column == user)
    return conn.execute(query).all()
