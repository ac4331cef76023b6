"""`cigri-api`: serves the REST API with waitress on `API_LISTEN` (TCP) and, when `API_SOCKET` is
set, on a Unix socket whose peer credentials (`SO_PEERCRED`) name the calling user.

Owns the serving only. On the socket, the kernel-given uid of the peer is put in the WSGI environ
under `cigri.peer_uid` (an environ key no HTTP header can produce); on TCP it never is.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, TcpWSGIServer, create_server
from waitress.task import WSGITask

from cigri.api.app import PEER_UID_KEY

log = logging.getLogger(__name__)

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# Keep reading a connection while its request runs, so waitress sees a client that has gone and
# `environ["waitress.client_disconnected"]()` tells a long ingestion to stop and roll back.
_LOOKAHEAD = 1


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket, as the kernel reports it."""
    _pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return int(uid)


class _PeerCredTask(WSGITask):
    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ[PEER_UID_KEY] = self.channel.peer_uid
        return environ


class _PeerCredChannel(HTTPChannel):
    task_class = _PeerCredTask

    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Any,
                 map: Any = None) -> None:
        self.peer_uid = peer_uid(sock)
        super().__init__(server, sock, addr, adj, map)


def serve_unix_socket(app: Callable[..., Any], path: str, *, threads: int = 4,
                      mode: int = 0o666) -> BaseWSGIServer:
    """A waitress server (not yet running) on a Unix socket that tags requests with peer uids.

    The socket is world-connectable on purpose: the kernel, not the client, says who connects.
    """
    socket_path = Path(path)
    if socket_path.exists() and stat.S_ISSOCK(socket_path.stat().st_mode):
        socket_path.unlink()
    server = create_server(app, unix_socket=str(socket_path), unix_socket_perms=f"{mode:o}",
                           threads=threads, clear_untrusted_proxy_headers=True,
                           channel_request_lookahead=_LOOKAHEAD)
    server.channel_class = _PeerCredChannel
    return server


def serve_tcp(app: Callable[..., Any], listen: str, *, threads: int = 8) -> TcpWSGIServer:
    """A waitress server (not yet running) on host:port (port 0 picks a free one)."""
    host, _, port = listen.rpartition(":")
    server = create_server(app, host=host or "127.0.0.1", port=int(port), threads=threads,
                           max_request_body_size=8 << 30,
                           channel_request_lookahead=_LOOKAHEAD)
    return server


def main() -> None:
    from cigri.api.app import create_app
    from cigri.app import build_engine, load, setup_logging

    settings = load()
    setup_logging(settings, name="cigri-api")
    engine = build_engine(settings)
    app = create_app(settings, engine)
    servers: list[BaseWSGIServer] = [serve_tcp(app, settings.API_LISTEN)]
    if settings.API_SOCKET:
        servers.append(serve_unix_socket(app, settings.API_SOCKET))
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()
        for server in servers:
            server.close()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    threads = [threading.Thread(target=s.run, name=f"cigri-api-{i}", daemon=True)
               for i, s in enumerate(servers)]
    for thread in threads:
        thread.start()
    tcp = servers[0]
    log.info("cigri-api listening on %s:%s%s (pid %d)", tcp.effective_host,
                tcp.effective_port,
                f" and {settings.API_SOCKET}" if settings.API_SOCKET else "", os.getpid())
    try:
        while not stop.wait(0.5):
            if not all(t.is_alive() for t in threads):
                break
    finally:
        engine.dispose()
