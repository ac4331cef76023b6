"""A running REST API (waitress, in a thread, on an ephemeral port and a Unix socket) over a fresh
PostgreSQL database, and a way to run the installed grid tools against it as subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from cigri.api import create_app
from cigri.api.server import serve_tcp, serve_unix_socket
from cigri.config import build_settings
from cigri.storage.clusters import add_cluster
from cigri.storage.db import make_engine
from cigri.storage.tables import jobs
from cigri.storage.tokens import create_token


@dataclass
class Grid:
    """The API under test and the environment a tool needs to reach it as a given user."""

    url: str
    socket: str
    engine: Engine
    database_url: str
    home: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            with self.engine.begin() as conn:
                _row, clear = create_token(conn, grid_user=user, now=datetime.now(UTC))
            self.tokens[user] = clear
        return self.tokens[user]

    def env(self, user: str | None = "alice", *, via_socket: bool = False,
            extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
        env.update(HOME=str(self.home), COLUMNS="200", CIGRI_CLIENT_CONF="/nonexistent")
        if via_socket:
            env["CIGRI_API_SOCKET"] = self.socket
        else:
            env["CIGRI_API_URL"] = self.url
            if user is not None:
                env["CIGRI_API_TOKEN"] = self.token(user)
        env.update(extra or {})
        return env

    def run(self, tool: str, *args: str, user: str | None = "alice", via_socket: bool = False,
            cwd: Path | None = None, extra_env: Mapping[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        executable = shutil.which(tool)
        assert executable, f"{tool} is not installed"
        return subprocess.run([executable, *args], env=self.env(user, via_socket=via_socket,
                                                                 extra=extra_env),
                              capture_output=True, text=True, cwd=cwd or self.home,
                              timeout=timeout, check=False)

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`cigri ...` on this grid's database."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
        env["CIGRI_DATABASE_URL"] = self.database_url
        return subprocess.run([shutil.which("cigri") or "cigri", *args], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    def add_job(self, campaign_id: int, *, param_id: int | None, cluster_id: int = 1,
                state: str = "running", **values: Any) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(insert(jobs).values(
                campaign_id=campaign_id, param_id=param_id, cluster_id=cluster_id, state=state,
                **values).returning(jobs.c.id)).scalar_one())


def start_api(database_url: str, settings: Mapping[str, Any] | None = None,
              oar_factory: Any = None) -> tuple[Any, Any, str, Engine]:
    """Serve the API on 127.0.0.1:<free port> and a Unix socket; returns (tcp, unix, socket, engine)."""
    engine = make_engine(database_url)
    raw = {"DATABASE_URL": database_url, "ADMINS": "root"}
    raw.update(settings or {})
    app = create_app(build_settings(raw), engine, oar_factory=oar_factory)
    directory = Path(tempfile.mkdtemp(prefix="cigri-api-"))
    directory.chmod(0o755)
    socket_path = str(directory / "api.sock")
    tcp = serve_tcp(app, "127.0.0.1:0", threads=4)
    unix = serve_unix_socket(app, socket_path, threads=2)
    for server in (tcp, unix):
        threading.Thread(target=server.run, daemon=True).start()
    return tcp, unix, socket_path, engine


@pytest.fixture
def grid(pg_url: str, tmp_path: Path) -> Iterator[Grid]:
    tcp, unix, socket_path, engine = start_api(pg_url)
    with engine.begin() as conn:
        add_cluster(conn, name="dahu", api_url="http://127.0.0.1:9/oarapi/", ssh_host="dahu-fe")
        add_cluster(conn, name="luke", api_url="http://127.0.0.1:9/oarapi/", ssh_host="luke-fe")
    home = tmp_path / "home"
    home.mkdir()
    try:
        yield Grid(url=f"http://127.0.0.1:{tcp.effective_port}", socket=socket_path,
                   engine=engine, database_url=pg_url, home=home)
    finally:
        tcp.close()
        unix.close()
        Path(socket_path).unlink(missing_ok=True)
        shutil.rmtree(Path(socket_path).parent, ignore_errors=True)
        engine.dispose()
