"""Running the emulator: one threaded HTTP server per cluster (ephemeral or fixed ports), or one
server for every cluster with a path prefix each (`/c1/oarapi/`, `/c2/oarapi/`, ...; the servers
are `cigri.emulator.endpoints`); a ticker thread
that moves emulated time forward; outage windows (on its own port a cluster closes its listening
socket, so clients get connection refused; on a shared port its connections are dropped unanswered);
the control object tests drive, and `run_in_thread`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cigri.accounts import is_root
from cigri.emulator.api import OarApp
from cigri.emulator.clock import EmuClock, ManualClock, ScaledClock
from cigri.emulator.endpoints import ClusterServer, Endpoint, MountedEndpoint, PrefixRouter
from cigri.emulator.http import Faults, Request, Response, error, json_response
from cigri.emulator.jobs import ClusterConfig, Mode
from cigri.emulator.model import Cluster
from cigri.emulator.state import load_state, save_state
from cigri.emulator.workload import Workload

log = logging.getLogger(__name__)

@dataclass
class ClusterControl:
    """What tests (and the admin endpoint) can do to one running cluster."""

    cluster: Cluster
    app: OarApp
    server: Endpoint
    url: str

    @property
    def faults(self) -> Faults:
        return self.app.faults

    def fail_next(self, status: int | None = None, count: int = 1, kind: str = "error") -> None:
        """The next `count` API answers fail (`kind`: `error` with HTTP `status`, `truncated`, `nonjson`)."""
        self.faults.fail_next(status, count, kind)

    def set_error_rate(self, rate: float) -> None:
        self.faults.error_rate = rate

    def set_latency(self, seconds: float) -> None:
        self.faults.latency = seconds

    def set_truncate_rate(self, rate: float) -> None:
        self.faults.truncate_rate = rate

    def set_nonjson_rate(self, rate: float) -> None:
        self.faults.nonjson_rate = rate

    def outage(self, seconds: float, *, start_in: float = 0.0, every: float | None = None) -> None:
        """Connection refused for `seconds` real seconds, starting `start_in` seconds from now and
        again every `every` seconds if given (outage windows)."""
        if start_in <= 0 and every is None:
            self.server.outage(seconds)
            return

        def windows() -> None:
            delay = start_in
            while not self.server.closed.wait(max(0.0, delay)):
                self.server.outage(seconds)
                if every is None:
                    return
                delay = every

        threading.Thread(target=windows, daemon=True, name=f"oar-emulator-outages-{self.url}").start()

    def normal_user(
        self, cores: int, duration: float, *, start_in: float = 0.0, period: float | None = None
    ) -> None:
        """A normal user takes `cores` cores for `duration` emulated seconds (kills best-effort jobs)."""
        self.cluster.add_normal_user(cores, duration, start_in=start_in, period=period)

    def fail_next_launches(self, count: int = 1) -> None:
        """The next `count` jobs to start go to Error at launch with only SWITCH_INTO_ERROR_STATE,
        as a real OAR 2.5.9 does when bipbip gives up (seen when a normal job takes the cores of a
        best-effort job being launched)."""
        with self.cluster.lock:
            self.cluster.launch_failures += count

    def set_node_state(self, node: str, state: str) -> None:
        """Alive, Absent, Suspected or Dead: a node that is not Alive gets no new job."""
        self.cluster.set_node_state(node, state)

    def set_stress(self, value: float | str) -> None:
        self.cluster.stress = str(value)

    def advance(self, seconds: float) -> None:
        """Move a manual clock forward and handle what became due (simulate-mode tests)."""
        clock = self.cluster.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance() needs the emulator started with a ManualClock")
        clock.advance(seconds)
        self.cluster.pump()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job ever submitted, with its state, times, events and params."""
        return self.cluster.snapshot()

    def completions(self) -> dict[tuple[int, int], int]:
        """How many times each (array_id, array_index) ran to Terminated."""
        with self.cluster.lock:
            return dict(self.cluster.completions)

    def runs_by_command(self) -> dict[tuple[str, str | None, str], int]:
        """How many times each (owner, name, command) ran to Terminated, across all arrays: a
        parameter that cigri ran twice shows up here with 2."""
        counts: dict[tuple[str, str | None, str], int] = {}
        for job in self.jobs():
            if job["state"] == "Terminated":
                key = (job["owner"], job["name"], job["command"])
                counts[key] = counts.get(key, 0) + 1
        return counts

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no job is queued or running (real seconds); True if it happened."""
        deadline = time.monotonic() + timeout
        with self.cluster.changed:
            while True:
                self.cluster.pump()
                if not self.cluster.active:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cluster.changed.wait(min(left, 0.05))


class _Ticker(threading.Thread):
    """Moves emulated time: handles due events as they fall due, and writes the state file."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(daemon=True, name="oar-emulator-ticker")
        self.emulator = emulator
        self.stopping = threading.Event()

    def run(self) -> None:
        last_save = time.monotonic()
        save_every = 1.0
        while not self.stopping.is_set():
            wait = 0.1
            for control in self.emulator.controls:
                cluster = control.cluster
                try:
                    cluster.pump()
                except Exception:
                    log.exception("emulator scheduler failure on %s", cluster.config.name)
                due = cluster.next_due()
                scale = cluster.clock.scale
                if due is not None and scale > 0:
                    wait = min(wait, max(0.002, (due - cluster.clock.time()) / scale))
            if self.emulator.state_file and time.monotonic() - last_save > save_every:
                began = time.monotonic()
                self.emulator.save()
                last_save = time.monotonic()
                save_every = max(1.0, 10 * (last_save - began))  # big states: at most 10% of the time
            self.stopping.wait(wait)


@dataclass
class Emulator:
    """Several clusters, one port each or one shared port with a path prefix each, sharing one
    clock."""

    controls: list[ClusterControl]
    clock: EmuClock
    state_file: str | None = None
    _ticker: _Ticker | None = field(default=None, repr=False)

    @property
    def urls(self) -> list[str]:
        return [c.url for c in self.controls]

    def cluster(self, index: int) -> ClusterControl:
        """The control object of cluster `index` (0-based)."""
        return self.controls[index]

    def start(self) -> None:
        for control in self.controls:
            control.server.start()
            control.url = f"http://{control.server.host}:{control.server.port}{control.app.prefix}/"
        self._ticker = _Ticker(self)
        self._ticker.start()

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stopping.set()
            self._ticker.join(timeout=5)
        for control in self.controls:
            control.server.closed.set()
            control.server.stop()
            control.cluster.kill_all()
        if self.state_file:
            self.save()

    def save(self) -> None:
        if self.state_file and any(c.cluster.dirty for c in self.controls):
            save_state(self.state_file, [c.cluster for c in self.controls])

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


EmulatorHandle = Emulator


def admin_handler(control_of: dict[str, ClusterControl]) -> Any:
    """`/_emulator/` admin endpoint: GET `status`, `jobs`; POST `faults`, `outage`, `normal_user`,
    `stress`, `fail_next` with JSON bodies."""

    def handle(request: Request) -> Response:
        control = control_of["self"]
        action = request.raw_path.split("/_emulator/", 1)[1].strip("/")
        try:
            body = json.loads(request.body().decode() or "{}")
        except ValueError:
            return error(400, "Bad request", "JSON body expected")
        if request.method == "GET" and action == "status":
            return json_response(200, _admin_status(control))
        if request.method == "GET" and action == "jobs":
            return json_response(200, control.jobs())
        if request.method == "POST" and _admin_action(control, action, body):
            return json_response(200, {"status": "ok"})
        return error(404, "Not found", f"unknown admin action {action}")

    return handle


def _admin_status(control: ClusterControl) -> dict[str, Any]:
    cluster = control.cluster
    with cluster.lock:
        return {
            "name": cluster.config.name,
            "mode": cluster.config.mode,
            "now": cluster.now(),
            "jobs": len(cluster.jobs),
            "active": len(cluster.active),
            "free_cores": len(cluster.free),
            "requests": control.app.requests,
        }


def _admin_action(control: ClusterControl, action: str, body: dict[str, Any]) -> bool:
    """Carry out one POSTed admin action; False for an unknown one."""
    if action == "faults":
        for key in ("error_rate", "latency", "truncate_rate", "nonjson_rate"):
            if key in body:
                setattr(control.faults, key, float(body[key]))
    elif action == "fail_next":
        control.fail_next(
            int(body.get("status", 500)), int(body.get("count", 1)), body.get("kind", "error")
        )
    elif action == "outage":
        every = float(body["every"]) if body.get("every") else None
        control.outage(
            float(body.get("seconds", 5)),
            start_in=max(0.05, float(body.get("start_in", 0))),
            every=every,
        )
    elif action == "normal_user":
        control.normal_user(
            int(body["cores"]),
            float(body["duration"]),
            start_in=float(body.get("start_in", 0)),
            period=float(body["period"]) if body.get("period") else None,
        )
    elif action == "node_state":
        control.set_node_state(str(body["node"]), str(body["state"]))
    elif action == "stress":
        control.set_stress(body.get("value", "0"))
    else:
        return False
    return True


def _user_homes(users: dict[str, str] | list[str] | None, workdir: str) -> dict[str, str] | None:
    """The logins that exist and their homes; a list of logins gets homes under the workdir."""
    if not isinstance(users, list):
        return users
    homes = {login: os.path.join(os.path.abspath(workdir), "home", login) for login in users}
    for home in homes.values():
        os.makedirs(home, exist_ok=True)
    return homes


def _serve(app: OarApp, router: PrefixRouter, shared: ClusterServer | None, *, host: str,
           port: int) -> ClusterControl:
    """One cluster's API with its `/_emulator/` admin: on its own `port`, or mounted under
    `/<name>` on the `shared` server."""
    control_of: dict[str, ClusterControl] = {}
    app.admin = admin_handler(control_of)
    endpoint: Endpoint
    if shared is not None:
        endpoint = MountedEndpoint(shared, app.cluster.config.name)
        router.mounts[app.cluster.config.name] = (app, endpoint)
    else:
        endpoint = ClusterServer(app, host, port)
    control = ClusterControl(cluster=app.cluster, app=app, server=endpoint, url="")
    control_of["self"] = control
    return control


def build(
    *,
    clusters: int = 1, nodes: int = 4, cores: int = 2, mode: Mode = "execute",
    time_scale: float = 1.0, clock: EmuClock | None = None, workdir: str | None = None,
    host: str = "127.0.0.1", ports: list[int] | None = None, single_port: int | None = None,
    prefix: str = "/oarapi", api: str = "oar2.5", oar_version: str = "2.5.9",
    workload: Workload | None = None, seed: int = 0, state_file: str | None = None,
    users: dict[str, str] | list[str] | None = None, passwords: dict[str, str] | None = None,
    secret: str | None = None, allow_root_jobs: bool = False,
    error_rate: float = 0.0, latency: float = 0.0, truncate_rate: float = 0.0,
    nonjson_rate: float = 0.0,
    kill_grace: float = 2.0, simulate_outputs: bool = False, launch_delay: float = 0.0,
) -> Emulator:
    """Build (without starting) an emulator of `clusters` clusters of `nodes` x `cores`, on
    `ports` (one each; default: ephemeral ports), or all on `single_port` (0: any free port),
    cluster `c<i>` at `/c<i>/oarapi/`.

    Started as root, each login's jobs and `/media` requests run as the Unix user of that name
    (a login with none is refused), unless `allow_root_jobs` keeps them all running as root.
    With `secret`, every request must carry HTTP basic auth with that password (any user name):
    only who knows it reaches the clusters, not every local user who can open a port."""
    if ports and single_port is not None:
        raise ValueError("give either ports (one per cluster) or single_port, not both")
    workdir = workdir or tempfile.mkdtemp(prefix="cigri-oar-emulator-")
    os.makedirs(workdir, exist_ok=True)
    clock = clock or ScaledClock(time_scale)
    router = PrefixRouter()
    shared = ClusterServer(router, host, single_port) if single_port is not None else None
    template = ClusterConfig(
        nodes=nodes,
        cores=cores,
        mode=mode,
        workdir=workdir,
        oar_version=oar_version,
        users=_user_homes(users, workdir),
        kill_grace=kill_grace,
        simulate_outputs=simulate_outputs,
        launch_delay=launch_delay,
        run_as="login" if is_root() and not allow_root_jobs else "self",
    )
    rates: dict[str, Any] = {"error_rate": error_rate, "latency": latency, "truncate_rate": truncate_rate,
             "nonjson_rate": nonjson_rate}
    app_options: dict[str, Any] = {"prefix": prefix, "passwords": passwords, "api": api, "secret": secret}
    controls = []
    for index in range(clusters):
        config = dataclasses.replace(
            template,
            name=f"c{index + 1}",
            node_prefix="node" if index == 0 else f"c{index + 1}node",
            workload=workload or Workload(),
            seed=seed + index,
        )
        app = OarApp(Cluster(config, clock), mount=f"/{config.name}" if shared is not None else "",
                     faults=Faults(**rates), **app_options)
        controls.append(_serve(app, router, shared, host=host, port=ports[index] if ports else 0))
    emulator = Emulator(controls=controls, clock=clock, state_file=state_file)
    if state_file and os.path.exists(state_file):
        load_state(state_file, [c.cluster for c in controls])
    return emulator


def run_in_thread(**options: Any) -> Emulator:
    """Start an emulator in background threads on ephemeral ports (`single_port=0`: every cluster
    on one ephemeral port, under `/c<i>/oarapi/`); `stop()` it (or use `with`). `options` are
    those of `build`, with its defaults."""
    emulator = build(**options)
    try:
        emulator.start()
    except Exception:
        with contextlib.suppress(Exception):
            emulator.stop()
        raise
    return emulator
