"""A grid on this machine, the part `cigri demo` and `cigri sandbox` share: emulated OAR clusters
that only cigri can reach, registered in the database, a `cigri.conf` with fast loops, and
`cigri-almighty` as a child process, stopped for good when the caller is done.

The clusters run in this process (execute mode: the jobs really run, here). Whoever can open a
local port could otherwise submit jobs that run as the user who started them, so every cluster
asks for a secret password (HTTP basic auth) that only the database's cluster rows hold.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from cigri.domain.states import AuthType
from cigri.storage.clusters import add_cluster, find_cluster_by_name, set_cluster_fields

# The basic-auth user cigri presents to the emulated clusters (the secret is the password).
CLUSTER_API_USER = "cigri"

# Fast loops: a local grid must feel live.
FAST_SETTINGS: dict[str, Any] = {
    "RUNNER_MIN_CYCLE_DURATION": 1.0,
    "METASCHEDULER_INTERVAL": 0.5,
    "UPDATER_INTERVAL": 0.5,
    "NIKITA_INTERVAL": 2.0,
    "COLLECTOR_INTERVAL": 2.0,
    "NOTIFIER_INTERVAL": 2.0,
    "RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS": 8,
    "RUNNER_TAP_INCREASE_FACTOR": 2.0,
    "RUNNER_TAP_INCREASE_MAX": 64,
    "RUNNER_TAP_GRACE_PERIOD": 5,
    "LEASE_SECONDS": 5.0,
    "ALMIGHTY_RESTART_DELAY": 1.0,
    "STRESS_FACTOR": 1000.0,
    "GRID_USAGE_UPDATE_PERIOD": 0,
    "AUTOFIX_DELAY": 2,
    "LOG_LEVEL": "WARNING",
}


def start_clusters(workdir: Path, *, clusters: int, nodes: int, cores: int, secret: str,
                   homes: Mapping[str, str] | None = None, state_file: Path | None = None,
                   root_jobs: bool = False) -> Any:
    """Emulated clusters `c1..cN` on one ephemeral port of 127.0.0.1, asking for `secret`.

    `homes` (login -> home) are the only logins that exist (None: any). Started as root, jobs
    run as root only with `root_jobs`, else as the Unix user of their login (see
    docs/emulator.md, "Trust model"). Returns the running `cigri.emulator.Emulator`.
    """
    from cigri.emulator import run_in_thread  # the emulator is only needed here

    return run_in_thread(clusters=clusters, nodes=nodes, cores=cores, mode="execute",
                         workdir=str(workdir), single_port=0, secret=secret,
                         users=dict(homes) if homes is not None else None,
                         state_file=str(state_file) if state_file else None,
                         allow_root_jobs=root_jobs)


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def register_clusters(conn: Connection, urls: list[str], *, secret: str,
                      now: datetime) -> dict[int, str]:
    """Add (or point at the new URLs) clusters `c1..cN`; returns id -> name."""
    names: dict[int, str] = {}
    for index, url in enumerate(urls):
        name = f"c{index + 1}"
        found = find_cluster_by_name(conn, name)
        if found is None:
            found = add_cluster(conn, name=name, api_url=url, now=now,
                                api_auth_type=AuthType.PASSWORD, api_username=CLUSTER_API_USER,
                                api_password=secret)
        else:
            set_cluster_fields(conn, found.id, api_url=url, api_auth_type=AuthType.PASSWORD,
                               api_username=CLUSTER_API_USER, api_password=secret)
        names[found.id] = name
    return names


def write_config(path: Path, settings: Mapping[str, Any]) -> Path:
    """A `cigri.conf` of `KEY = value` lines."""
    lines = []
    for key, value in settings.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value!r}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def start_almighty(conf: Path, output: Path, *, new_session: bool = False
                   ) -> subprocess.Popen[bytes]:
    """`cigri-almighty` (every daemon) on `conf`, its output appended to `output`; in a session
    of its own with `new_session` (a Ctrl-C on the terminal is then for the caller to handle)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI_")}
    env["CIGRI_CONF"] = str(conf)
    with output.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "import cigri.daemons.almighty as m; m.main()"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=new_session)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
