"""The HTTP side of the emulator: a threaded WSGI server per cluster on its own port (closing its
listening socket during an outage, so clients get connection refused), or one server for every
cluster with a path prefix each (`/c1/oarapi/`, ...), where an outage drops a cluster's
connections unanswered."""

from __future__ import annotations

import logging
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from cigri.emulator.api import OarApp
from cigri.emulator.http import StartResponse, error, json_response, send

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Handler(WSGIRequestHandler):
    """wsgiref handler that keeps headers with underscores (`X_REMOTE_IDENT`), as the CiGri
    Apache setup does with its rewrite rule, and logs through `logging`."""

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        for name, value in self.headers.items():
            if "_" in name:
                environ.setdefault("HTTP_" + name.upper(), value)
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        app = self.server.get_app() if isinstance(self.server, WSGIServer) else None
        if isinstance(app, PrefixRouter) and app.refuses(self.path):
            # a cluster in outage on a shared port: hang up without an answer (the port stays
            # open for the other clusters, so "connection refused" cannot be had)
            self.close_connection = True
            return False
        return True


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients that hang up (timeouts, killed daemons) are normal here: no traceback on stderr
        log.debug("connection from %s ended badly", client_address, exc_info=True)


class ClusterServer:
    """The HTTP endpoint of one cluster (or of the router of a shared port); can go away (outage)
    and come back on the same port."""

    def __init__(self, app: WsgiApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._outage_until = 0.0
        self.closed = threading.Event()  # the emulator stopped: no coming back

    def start(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            server = _ThreadingServer((self.host, self.port), _Handler)
            server.set_app(self.app)
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                daemon=True,
                name=f"oar-emulator-http-{self.port}",
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def outage(self, seconds: float) -> None:
        """Refuse connections for `seconds` real seconds."""
        self._outage_until = max(self._outage_until, time.monotonic() + seconds)
        self.stop()
        threading.Thread(target=self._come_back, daemon=True, name=f"oar-emulator-outage-{self.port}").start()

    def _come_back(self) -> None:
        while (left := self._outage_until - time.monotonic()) > 0:
            if self.closed.wait(min(left, 0.1)):
                return
        for _ in range(50):
            try:
                self.start()
                return
            except OSError:
                time.sleep(0.1)
        log.error("cluster endpoint on port %s could not come back after the outage", self.port)

    @property
    def up(self) -> bool:
        return self._server is not None

    def wait_up(self, timeout: float) -> bool:
        """Wait (real seconds) until the endpoint accepts connections again after an outage."""
        return _wait_up(self, timeout)


def _wait_up(endpoint: ClusterServer | MountedEndpoint, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not endpoint.up and time.monotonic() < deadline:
        time.sleep(0.02)
    return endpoint.up


class MountedEndpoint:
    """The endpoint of one cluster under `/<name>/` on a port shared by every cluster. An outage
    drops this cluster's connections unanswered (clients see a connection error) while the
    other clusters keep answering on the same port."""

    def __init__(self, shared: ClusterServer, name: str) -> None:
        self.shared = shared
        self.name = name
        self._outage_until = 0.0
        self.closed = threading.Event()  # the emulator stopped: no coming back

    @property
    def host(self) -> str:
        return self.shared.host

    @property
    def port(self) -> int:
        return self.shared.port

    def start(self) -> None:
        self.shared.start()

    def stop(self) -> None:
        self.shared.stop()

    def outage(self, seconds: float) -> None:
        """Drop this cluster's connections for `seconds` real seconds."""
        self._outage_until = max(self._outage_until, time.monotonic() + seconds)

    @property
    def in_outage(self) -> bool:
        return time.monotonic() < self._outage_until

    @property
    def up(self) -> bool:
        return self.shared.up and not self.in_outage

    def wait_up(self, timeout: float) -> bool:
        """Wait (real seconds) until the cluster answers again after an outage."""
        return _wait_up(self, timeout)


class PrefixRouter:
    """The WSGI application of a shared port: `/<name>/...` goes to cluster `<name>` (whose app
    serves `/<name>/oarapi/` and `/<name>/_emulator/`), `/` lists the clusters, any other path
    is a JSON 404."""

    def __init__(self) -> None:
        self.mounts: dict[str, tuple[OarApp, MountedEndpoint]] = {}

    @staticmethod
    def _name(path: str) -> str:
        return path.split("?", 1)[0].lstrip("/").split("/", 1)[0]

    def refuses(self, path: str) -> bool:
        """True when `path` (a request target) belongs to a cluster that is in an outage."""
        mount = self.mounts.get(self._name(path))
        return mount is not None and mount[1].in_outage

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        name = self._name(environ.get("PATH_INFO") or "/")
        if name in self.mounts:
            return self.mounts[name][0](environ, start_response)
        if name == "":
            clusters = [{"name": n, "href": f"{app.prefix}/"} for n, (app, _) in self.mounts.items()]
            return send(json_response(200, {"clusters": clusters}), start_response)
        names = ", ".join(self.mounts)
        return send(error(404, "Not found", f"No cluster {name} on this port (clusters: {names})"),
                    start_response)


Endpoint = ClusterServer | MountedEndpoint
