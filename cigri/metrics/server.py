"""`/metrics` on a port of its own (`cigri metrics serve`), for sites that keep the REST API
private: a waitress server with the grid registry and nothing else (any other path is a 404)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from waitress.server import create_server

log = logging.getLogger(__name__)


def metrics_app(registry: CollectorRegistry) -> Any:
    """A WSGI application answering `GET /metrics` (and `/`) with the registry's exposition."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO", "/") not in {"/", "/metrics"}:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics here\n"]
        if environ.get("REQUEST_METHOD") not in {"GET", "HEAD"}:
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"),
                                                      ("Allow", "GET, HEAD")])
            return [b"GET /metrics\n"]
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve(registry: CollectorRegistry, listen: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    host, _, port = listen.rpartition(":")
    server = create_server(metrics_app(registry), host=host or "127.0.0.1", port=int(port),
                           threads=2)
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()
        server.close()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    thread = threading.Thread(target=server.run, name="cigri-metrics", daemon=True)
    thread.start()
    log.info("cigri metrics on http://%s:%s/metrics", server.effective_host,
             server.effective_port)
    while not stop.wait(0.5) and thread.is_alive():
        pass
