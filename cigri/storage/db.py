"""Engines and connections: PostgreSQL (production) or SQLite (user-level mode), same code paths.

Owns engine creation and the per-dialect switches (SQLite pragmas, PostgreSQL-only features). Does
not own any query: those live in the other storage modules, as functions over a Connection.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, Text, bindparam, create_engine, event, func, select
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Make plain `postgresql://` URLs use psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _on_sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers (the API) run beside the daemons.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _on_sqlite_begin(conn: Any) -> None:
    # pysqlite's own transaction handling starts transactions late; take the write lock up front
    # so two daemons never deadlock upgrading read locks to write locks.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, echo: bool = False, pool_size: int = 5) -> Engine:
    """Create an engine for `url` with the settings cigri needs on that database."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "isolation_level": None,
                                          "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    return create_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=10, pool_pre_ping=True,
        pool_recycle=1800,
    )


def is_postgresql(engine_or_dialect_name: Engine | str) -> bool:
    name = (engine_or_dialect_name if isinstance(engine_or_dialect_name, str)
            else engine_or_dialect_name.dialect.name)
    return name == "postgresql"


def set_statement_timeout(conn: Connection, seconds: float) -> None:
    """Bound every statement of the current transaction to `seconds` (PostgreSQL
    `SET LOCAL statement_timeout`, a bound parameter; undone at commit or rollback). No-op on
    SQLite or for 0."""
    if seconds > 0 and conn.dialect.name == "postgresql":
        conn.execute(_SET_TIMEOUT, {"milliseconds": str(max(1, int(seconds * 1000)))})


# Built once: the API runs it at the start of every request.
_SET_TIMEOUT: Final = select(
    func.set_config("statement_timeout", bindparam("milliseconds", type_=Text()), True))
