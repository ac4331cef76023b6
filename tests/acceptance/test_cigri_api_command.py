"""`cigri-api` as its own process: serves TCP and the Unix socket, stops on SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cigri.cli.client import ApiClient, ClientConfig


def test_cigri_api_serves_tcp_and_the_socket_and_stops_on_sigterm(sqlite_url: str) -> None:
    directory = Path(tempfile.mkdtemp(prefix="cigri-api-cmd-"))
    socket_path = directory / "api.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    env.update(CIGRI_DATABASE_URL=sqlite_url, CIGRI_API_LISTEN="127.0.0.1:0",
               CIGRI_API_SOCKET=str(socket_path), CIGRI_LOG_LEVEL="INFO")
    process = subprocess.Popen([shutil.which("cigri-api") or "cigri-api"], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            port = int(match[1]) if match else None
        assert port, "cigri-api did not say where it listens"
        over_socket = ApiClient(ClientConfig(socket=str(socket_path))).get("/whoami")
        assert over_socket["method"] == "socket"
        anonymous = ApiClient(ClientConfig(url=f"http://127.0.0.1:{port}")).get("/")
        assert anonymous["links"][0]["href"] == "/"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
