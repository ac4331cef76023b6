"""`cigri sandbox`: a grid of your own on this machine, to try cigri with your own campaigns.

In a directory of its own (default `~/.local/share/cigri/sandbox`): a SQLite database, three
emulated OAR clusters (execute mode: the jobs really run, here, as you), `cigri-almighty` (every
daemon) and `cigri-api` on a Unix socket and a local TCP port, as child processes. It prints what
to paste in a shell so that `gridsub`, `gridstat`... talk to it, and writes a sample JDL. It runs
until Ctrl-C or SIGTERM, then stops everything it started; `--detach` starts the same in the
background, `cigri sandbox stop` / `status` manage it. A second start on the same directory reuses
the database and the emulated clusters' jobs: campaigns survive a restart.

You (the Unix user running it) are the grid user. Your jobs' `$HOME`, `~` and `{HOME}` are one
emulated home, `<dir>/home`, as on a real cluster where your home is the same for every job.
The shared pieces (clusters, configuration, almighty) are `cigri.cli.localgrid`, also used by
`cigri demo`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cigri.cli import localgrid
from cigri.storage.db import make_engine
from cigri.storage.migrate import upgrade
from cigri.storage.users import set_user_mapping

DEFAULT_DIR = "~/.local/share/cigri/sandbox"
CLUSTERS, NODES, CORES = 3, 4, 2
STATE_FILE = "sandbox.json"  # written once everything is up, removed when all is stopped
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
# OAR refuses these logins; the sandbox gives their grid user another login on the clusters
REFUSED_LOGINS = frozenset({"root", "oar"})
SUBSTITUTE_LOGIN = "sandbox"
SOCKET_PATH_MAX = 100  # a Unix socket path must fit in sun_path (108 bytes)

SAMPLE_JDL = {
    "name": "sample",
    "nb_jobs": 6,
    "prologue": ["mkdir -p ~/out/{CAMPAIGN_ID}"],
    "exec_file": "~/task.sh",
    "exec_directory": "~/out/{CAMPAIGN_ID}",
    "walltime": "00:05:00",
    "clusters": {f"c{i + 1}": {} for i in range(CLUSTERS)},
}

TASK_SCRIPT = """#!/bin/sh
# One task of the sample campaign: $1 is its parameter (0, 1, ...). It runs in
# ~/out/<campaign id>, which the campaign's prologue created.
echo "task $1 of campaign $CIGRI_CAMPAIGN_ID, in $PWD"
echo "$1 squared is $(($1 * $1))" > "result-$1.txt"
"""


@dataclass(frozen=True)
class Paths:
    """The files of one sandbox, all in its directory `root`."""

    root: Path
    conf: Path
    client_conf: Path
    socket: Path
    home: Path
    sample: Path
    state: Path
    log: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.root / 'cigri.db'}"


def _paths(directory: str) -> Paths:
    root = Path(os.path.expanduser(directory)).absolute()
    return Paths(root=root, conf=root / "cigri.conf", client_conf=root / "client.conf",
                 socket=root / "api.sock", home=root / "home", sample=root / "sample.jdl",
                 state=root / STATE_FILE, log=root / "sandbox.log")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(paths: Paths) -> dict[str, Any] | None:
    """The state of the sandbox running in this directory, or None (a stale file is ignored)."""
    try:
        state: dict[str, Any] = json.loads(paths.state.read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return state


def dashboard_url(api_url: str) -> str | None:
    """The web dashboard's address: `/ui/` of the API (docs/ui.md)."""
    return api_url.rstrip("/") + "/ui/"


def _free_port(preferred: int | None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise click.ClickException("no free TCP port on 127.0.0.1 for the API")


def _grid_login() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def _lines(state: dict[str, Any]) -> list[str]:
    """What the user needs to use a running sandbox."""
    lines = [
        f"cigri sandbox running in {state['dir']} (pid {state['pid']}): {CLUSTERS} emulated "
        f"clusters ({', '.join(state['clusters'])}, {NODES} nodes x {CORES} cores), almighty, "
        "the API",
        f"  API: Unix socket {state['socket']} and {state['api_url']}",
        f"  grid user: {state['grid_user']}; its home on the clusters ($HOME, ~, {{HOME}}): "
        f"{state['home']}",
        "paste this in your shell, then use gridsub, gridstat, griddel, gridevents, gridclean:",
        f"  export CIGRI_CLIENT_CONF={state['client_conf']}",
        f"  (or: export CIGRI_API_SOCKET={state['socket']})",
        f"sample JDL: {state['sample']}   (gridsub -f {state['sample']})",
    ]
    dashboard = dashboard_url(state["api_url"])
    if dashboard:
        lines.append(f"dashboard: {dashboard}  (sign in with a token: gridtoken create)")
    return lines


def _prepare(paths: Paths) -> None:
    """The directory, database, client configuration, emulated home and sample JDL (kept as they
    are when they exist: the user may have edited them)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o700)
    paths.home.mkdir(exist_ok=True)
    if len(str(paths.socket)) > SOCKET_PATH_MAX:
        raise click.ClickException(
            f"{paths.socket} is too long for a Unix socket; choose a shorter --dir")
    upgrade(paths.database_url)
    paths.client_conf.write_text(
        "# cigri client settings for the sandbox (CIGRI_CLIENT_CONF)\n"
        f'API_SOCKET = "{paths.socket}"\n')
    task = paths.home / "task.sh"
    if not task.exists():
        task.write_text(TASK_SCRIPT)
        task.chmod(0o755)
    if not paths.sample.exists():
        paths.sample.write_text(json.dumps(SAMPLE_JDL, indent=2) + "\n")


def _start_api(paths: Paths, output: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI_")}
    env["CIGRI_CONF"] = str(paths.conf)
    with output.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from cigri.api.server import main; main()"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def _api_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
            probe.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return probe.recv(12).startswith(b"HTTP/")
        except OSError:
            return False


def _refuse_root(root_jobs: bool) -> None:
    if os.geteuid() == 0 and not root_jobs:
        raise click.ClickException(
            "running as root, the sandbox's jobs would run as root: run it as an ordinary user, "
            "or pass --allow-root-jobs")


def _serve(paths: Paths, *, port: int | None, root_jobs: bool) -> None:
    """Start everything, print how to use it, run until SIGINT/SIGTERM, stop everything."""
    if _running(paths) is not None:
        raise click.ClickException(
            f"a sandbox already runs in {paths.root}; stop it with: cigri sandbox stop --dir "
            f"{paths.root}")
    _refuse_root(root_jobs)
    grid_user = _grid_login()
    cluster_login = SUBSTITUTE_LOGIN if grid_user in REFUSED_LOGINS else grid_user
    _prepare(paths)
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads((paths.root / "last.json").read_text())
    api_port = port or _free_port(previous.get("api_port"))
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    secret = localgrid.new_secret()
    (paths.root / "oar").mkdir(exist_ok=True)
    emulator = localgrid.start_clusters(
        paths.root / "oar", clusters=CLUSTERS, nodes=NODES, cores=CORES, secret=secret,
        homes={cluster_login: str(paths.home)}, state_file=paths.root / "oar" / "state.json",
        root_jobs=root_jobs)
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        names = _register(paths, emulator.urls, secret=secret, grid_user=grid_user,
                          cluster_login=cluster_login)
        if not _start_children(paths, api_port, children, stopping):
            return
        state = {
            "pid": os.getpid(), "dir": str(paths.root), "socket": str(paths.socket),
            "api_url": f"http://127.0.0.1:{api_port}/", "api_port": api_port,
            "client_conf": str(paths.client_conf), "sample": str(paths.sample),
            "home": str(paths.home), "grid_user": grid_user,
            "clusters": sorted(names.values()), "cluster_urls": emulator.urls,
            "children": {name: child.pid for name, child in children.items()},
        }
        (paths.root / "last.json").write_text(json.dumps({"api_port": api_port}))
        paths.state.write_text(json.dumps(state, indent=2) + "\n")
        for line in _lines(state):
            click.echo(line)
        click.echo(f"stop it with Ctrl-C (or: cigri sandbox stop --dir {paths.root})")
        sys.stdout.flush()
        _watch(paths, children, stopping)
    finally:
        click.echo("stopping the sandbox", err=True)
        for child in reversed(list(children.values())):
            localgrid.stop_process(child)
        emulator.stop()
        with contextlib.suppress(FileNotFoundError):
            paths.state.unlink()
        click.echo("sandbox stopped", err=True)


def _register(paths: Paths, urls: list[str], *, secret: str, grid_user: str,
              cluster_login: str) -> dict[int, str]:
    """The emulated clusters in the sandbox's database, with the grid user's login on them when
    it is not their own; returns their names by id."""
    engine = make_engine(paths.database_url)
    try:
        with engine.begin() as conn:
            names = localgrid.register_clusters(conn, urls, secret=secret, now=datetime.now(UTC))
            if cluster_login != grid_user:
                for cluster_id in names:
                    set_user_mapping(conn, grid_login=grid_user, cluster_id=cluster_id,
                                     cluster_login=cluster_login)
    finally:
        engine.dispose()
    return names


def _start_children(paths: Paths, api_port: int, children: dict[str, subprocess.Popen[bytes]],
                    stopping: threading.Event) -> bool:
    """Write the sandbox's cigri.conf, start the API and almighty (into `children`, for the
    caller to stop) and wait for the API to answer; False if asked to stop meanwhile."""
    localgrid.write_config(paths.conf, {
        "DATABASE_URL": paths.database_url, "LOG_FILE": str(paths.root / "daemons.log"),
        "COLLECTOR_DIRECTORY": str(paths.root / "results"),
        "API_SOCKET": str(paths.socket), "API_LISTEN": f"127.0.0.1:{api_port}",
        **localgrid.FAST_SETTINGS})
    children["api"] = _start_api(paths, paths.root / "api.out")
    children["almighty"] = localgrid.start_almighty(paths.conf, paths.root / "almighty.out",
                                                    new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not _api_answers(paths.socket):
        if children["api"].poll() is not None or time.monotonic() > deadline:
            raise click.ClickException(
                f"the API did not start; see {paths.root / 'api.out'}")
        if stopping.wait(0.1):
            return False
    return True


def _watch(paths: Paths, children: dict[str, subprocess.Popen[bytes]],
           stopping: threading.Event) -> None:
    """Until asked to stop; a child that exits stops the whole sandbox."""
    while not stopping.wait(0.5):
        for name, child in children.items():
            if child.poll() is not None:
                click.echo(f"{name} exited with status {child.returncode}; stopping the "
                           f"sandbox (see {paths.root / (name + '.out')})", err=True)
                stopping.set()


def _detach(paths: Paths, *, port: int | None, root_jobs: bool) -> None:
    """Start `cigri sandbox` in the background and return once it is up."""
    _refuse_root(root_jobs)
    if _running(paths) is not None:
        raise click.ClickException(
            f"a sandbox already runs in {paths.root}; stop it with: cigri sandbox stop --dir "
            f"{paths.root}")
    paths.root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        paths.state.unlink()  # stale: its process is gone
    command = [sys.executable, "-c", "from cigri.cli.admin import main; main()", "sandbox",
               "--dir", str(paths.root)]
    if port:
        command += ["--port", str(port)]
    if root_jobs:
        command.append("--allow-root-jobs")
    with paths.log.open("ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        state = _running(paths)
        if state is not None and state.get("pid") == child.pid:
            break
        if child.poll() is not None or time.monotonic() > deadline:
            if child.poll() is None:
                child.terminate()
                child.wait()
            tail = paths.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise click.ClickException(
                "the sandbox did not start" + (": " + " / ".join(tail) if tail else "")
                + f" (log: {paths.log})")
        time.sleep(0.2)
    for line in _lines(state):
        click.echo(line)
    click.echo(f"running in the background; stop it with: cigri sandbox stop --dir {paths.root}")


DIR_OPTION = click.option("--dir", "paths", default=DEFAULT_DIR, show_default=True,
                          callback=lambda _context, _option, value: _paths(value),
                          help="Directory of the sandbox (database, configuration, home, logs).")


@click.group("sandbox", invoke_without_command=True)
@DIR_OPTION
@click.option("--detach", is_flag=True, help="Run in the background (see `stop` and `status`).")
@click.option("--port", type=int, default=None,
              help="TCP port of the API on 127.0.0.1 (default: the last one, or any free one).")
@click.option("--allow-root-jobs", is_flag=True,
              help="Started as root: accept that the jobs run as root.")
@click.pass_context
def sandbox(context: click.Context, paths: Paths, detach: bool, port: int | None,
            allow_root_jobs: bool) -> None:
    """A grid of your own on this machine: three emulated clusters, every daemon and the API.

    Runs until Ctrl-C, then stops everything it started; campaigns are kept for the next start
    on the same directory.
    """
    if context.invoked_subcommand is not None:
        return
    if detach:
        _detach(paths, port=port, root_jobs=allow_root_jobs)
    else:
        _serve(paths, port=port, root_jobs=allow_root_jobs)


@sandbox.command("stop")
@DIR_OPTION
def stop(paths: Paths) -> None:
    """Stop the sandbox running in the background."""
    if (state := _running(paths)) is None:
        click.echo(f"no sandbox runs in {paths.root}")
        return
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid):
        if time.monotonic() > deadline:
            raise click.ClickException(f"the sandbox (pid {pid}) did not stop in "
                                       f"{STOP_TIMEOUT:g}s; see {paths.log}")
        time.sleep(0.2)
    click.echo(f"sandbox in {paths.root} stopped")


@sandbox.command("status")
@DIR_OPTION
def status(paths: Paths) -> None:
    """Say whether the sandbox runs, and how to use it (exit status 3 when it does not)."""
    if (state := _running(paths)) is None:
        click.echo(f"no sandbox runs in {paths.root} (start it with: cigri sandbox --dir "
                   f"{paths.root})")
        sys.exit(3)
    for line in _lines(state):
        click.echo(line)
