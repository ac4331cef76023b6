"""Daemon heartbeats: one row per daemon name (role, or `runner:<cluster>`), upserted each pass.

Owns `daemon_heartbeats`. Written by `cigri.daemons.base.Daemon`; read by `cigri status` and the API.
Also the wake-up hint daemons listen to (`notify_daemons`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from cigri.domain.heartbeats import Heartbeat
from cigri.storage.tables import daemon_heartbeats

_BEAT_COLUMNS = ("host", "pid", "started_at", "beat_at", "interval_seconds", "passes", "failures")
# Written by every daemon after every pass: built once.
_BEAT = (update(daemon_heartbeats).where(daemon_heartbeats.c.name == bindparam("beat_name"))
         .values({column: bindparam(f"beat_{column}") for column in _BEAT_COLUMNS}))


def heartbeat_from_row(row: Any) -> Heartbeat:
    return Heartbeat(
        name=row.name, host=row.host, pid=row.pid, started_at=row.started_at,
        beat_at=row.beat_at, interval_seconds=float(row.interval_seconds),
        passes=int(row.passes), failures=int(row.failures),
    )


def record_heartbeat(conn: Connection, *, name: str, host: str, pid: int, started_at: datetime,
                     now: datetime, interval_seconds: float, passes: int, failures: int) -> None:
    """Upsert the heartbeat row of `name` (portable: UPDATE, then INSERT if there was none)."""
    values = {"host": host, "pid": pid, "started_at": started_at, "beat_at": now,
              "interval_seconds": interval_seconds, "passes": passes, "failures": failures}
    result = conn.execute(_BEAT, {"beat_name": name,
                                  **{f"beat_{column}": values[column] for column in _BEAT_COLUMNS}})
    if result.rowcount == 0:
        conn.execute(insert(daemon_heartbeats).values(name=name, **values))


def list_heartbeats(conn: Connection) -> list[Heartbeat]:
    rows = conn.execute(select(daemon_heartbeats).order_by(daemon_heartbeats.c.name))
    return [heartbeat_from_row(row) for row in rows]


def find_heartbeat(conn: Connection, name: str) -> Heartbeat | None:
    row = conn.execute(
        select(daemon_heartbeats).where(daemon_heartbeats.c.name == name)).one_or_none()
    return None if row is None else heartbeat_from_row(row)


def delete_heartbeat(conn: Connection, name: str) -> None:
    conn.execute(delete(daemon_heartbeats).where(daemon_heartbeats.c.name == name))


def notify_daemons(conn: Connection, role: str, payload: str = "") -> None:
    """Wake the daemons of `role` when this transaction commits (PostgreSQL NOTIFY on
    `cigri_<role>`; nothing on SQLite, where daemons just poll)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_notify(f"cigri_{role}", payload)))
