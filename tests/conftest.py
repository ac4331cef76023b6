"""Shared fixtures: a real PostgreSQL (fresh database per test, cloned from a migrated template),
a SQLite file database, an injectable clock, and a clean environment.

PostgreSQL comes from `CIGRI_TEST_DATABASE_URL` (any database on the server to use; we create our
own databases next to it), else from the usual `PG*` variables, else a private throwaway server
started with initdb/pg_ctl. The template is migrated once per session with Alembic, so every test
runs on the schema the migrations build.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from cigri.domain.clock import FakeClock
from cigri.storage.db import make_engine
from cigri.storage.migrate import upgrade

_counter = itertools.count()
_RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(autouse=True)
def _clean_cigri_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test, never from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("CIGRI_") and not name.startswith("CIGRI_TEST_"):
            monkeypatch.delenv(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


class _PrivateServer:
    """A throwaway PostgreSQL cluster in a temporary directory (trust auth, 127.0.0.1 only)."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
        if not (initdb and pg_ctl):
            pytest.fail("no PostgreSQL: set CIGRI_TEST_DATABASE_URL or PG*, or install postgresql")
        self.pg_ctl = pg_ctl
        self.directory = Path(tempfile.mkdtemp(prefix="cigri-pg-"))
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            self.prefix = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.directory, pwd.getpwnam("postgres").pw_uid)
        data = self.directory / "data"
        self._run([initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"])
        self._run([pg_ctl, "-D", str(data), "-w", "-l", str(self.directory / "log"), "-o",
                   f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
                   "-c fsync=off -c full_page_writes=off", "start"])
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> None:
        subprocess.run(self.prefix + argv, check=True, capture_output=True)

    def stop(self) -> None:
        self._run([self.pg_ctl, "-D", str(self.directory / "data"), "-m", "immediate", "stop"])
        shutil.rmtree(self.directory, ignore_errors=True)


def _server_url_from_environment() -> str | None:
    url = os.environ.get("CIGRI_TEST_DATABASE_URL")
    if url:
        return url
    if any(os.environ.get(name) for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE")):
        host = os.environ.get("PGHOST", "127.0.0.1")
        port = os.environ.get("PGPORT", "5432")
        user = os.environ.get("PGUSER", "postgres")
        password = os.environ.get("PGPASSWORD", "")
        database = os.environ.get("PGDATABASE", "postgres")
        auth = f"{user}:{password}" if password else user
        if host.startswith("/"):
            return f"postgresql+psycopg://{auth}@/{database}?host={host}&port={port}"
        return f"postgresql+psycopg://{auth}@{host}:{port}/{database}"
    return None


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL database we may CREATE DATABASE from."""
    url = _server_url_from_environment()
    if url:
        yield make_url(url).set(drivername="postgresql+psycopg").render_as_string(False)
        return
    server = _PrivateServer()
    try:
        yield server.url
    finally:
        server.stop()


def _admin_engine(server_url: str) -> Engine:
    return create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=None)


def _url_for(server_url: str, database: str) -> str:
    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> Iterator[str]:
    """Name of a database migrated to head, used as the template of every test database."""
    name = f"cigri_tpl_{_RUN_ID}"
    admin = _admin_engine(pg_server_url)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    upgrade(_url_for(pg_server_url, name))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_server_url: str, pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test."""
    name = f"cigri_t_{_RUN_ID}_{next(_counter)}"
    admin = _admin_engine(pg_server_url)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    try:
        yield _url_for(pg_server_url, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated SQLite database file for this test."""
    path = tmp_path / "cigri.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on PostgreSQL and once on SQLite."""
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url"))


def _engine_for(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        checked_out = engine.pool.checkedout()  # type: ignore[attr-defined]
        engine.dispose()
        assert checked_out == 0, f"{checked_out} connections still checked out at teardown"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh database, PostgreSQL then SQLite."""
    yield from _engine_for(db_url)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """An engine on a fresh PostgreSQL database (for PostgreSQL-only behaviour)."""
    yield from _engine_for(pg_url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
