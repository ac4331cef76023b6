"""The web dashboard for `cigri demo`: the API application (with `/ui/`) served in a thread on a
free port of 127.0.0.1 while the demo runs, and a token to sign in with, kept in a file (0600)
rather than printed."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from werkzeug.serving import make_server

from cigri.api import create_app
from cigri.config import build_settings
from cigri.storage.tokens import create_token


@contextmanager
def dashboard(engine: Engine, *, user: str, token_file: Path) -> Iterator[str]:
    """Serve the API on 127.0.0.1 for as long as the block runs; yield the dashboard's URL."""
    with engine.begin() as conn:
        _token, clear = create_token(conn, grid_user=user, now=datetime.now(UTC), name="demo")
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(clear + "\n")
    app = create_app(build_settings({"ADMINS": user, "UI_POLL_SECONDS": 1}), engine)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/ui/"
    finally:
        server.shutdown()
        thread.join(timeout=10)
