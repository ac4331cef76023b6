"""Real servers for the notification tests: an SMTP server (aiosmtpd, in a subprocess, delivering to
a Maildir), an XMPP server (prosody, with a generated config, TLS certificate and accounts in a temp
dir) and an HTTP receiver for webhooks and Apprise URLs. All on ephemeral ports."""

from __future__ import annotations

import json
import mailbox
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from cigri.storage.tables import campaigns, clusters, user_notifications


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
                  ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def wait_until(condition: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


SECURE_SMTP = """
import ssl, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"{user}"
          and auth_data.password == b"{password}")
    return AuthResult(success=ok)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain("{cert}", "{key}")
controller = Controller(Mailbox("{maildir}"), hostname="127.0.0.1", port={port},
                        tls_context=context, require_starttls=True,
                        authenticator=authenticate, auth_require_tls=True)
controller.start()
while True:
    time.sleep(3600)
"""


class SmtpServer:
    """aiosmtpd in a subprocess, storing every mail in a Maildir; can be stopped and restarted
    on the same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.maildir = directory / "maildir"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
             "-c", "aiosmtpd.handlers.Mailbox", str(self.maildir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)

    def start_secure(self, *, user: str, password: str) -> None:
        """The same server requiring STARTTLS (throwaway certificate) and AUTH LOGIN/PLAIN."""
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(self.directory / "smtp.key"), "-out", str(self.directory / "smtp.crt"),
                        "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
        script = SECURE_SMTP.format(cert=self.directory / "smtp.crt",
                                    key=self.directory / "smtp.key", maildir=self.maildir,
                                    port=self.port, user=user, password=password)
        self.process = subprocess.Popen([sys.executable, "-c", script],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def messages(self) -> list[Message]:
        if not self.maildir.exists():
            return []
        return list(mailbox.Maildir(str(self.maildir), create=False))


@dataclass
class XmppServer:
    directory: Path
    port: int
    domain: str = "localhost"
    process: subprocess.Popen[bytes] | None = None

    @property
    def offline_file(self) -> Path:
        return self.directory / "data" / self.domain / "offline"

    def offline_messages(self, user: str) -> str:
        path = self.offline_file / f"{user}.list"
        return path.read_text() if path.exists() else ""


PROSODY_CONFIG = """
daemonize = false
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
run_as_root = true
admins = {{}}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "message"; "c2s"; "offline" }}
modules_disabled = {{ "s2s"; "posix" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{}}
legacy_ssl_ports = {{}}
s2s_ports = {{}}
http_ports = {{}}
https_ports = {{}}
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
certificates = "{dir}/certs"
log = {{ info = "{dir}/prosody.log" }}
ssl = {{ key = "{dir}/localhost.key"; certificate = "{dir}/localhost.crt" }}
VirtualHost "localhost"
"""


def start_prosody(directory: Path, accounts: dict[str, str]) -> XmppServer:
    """A private prosody with STARTTLS (self-signed certificate) and the given accounts."""
    for tool in ("prosody", "prosodyctl", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (see .ci/apt-packages)")
    server = XmppServer(directory=directory, port=free_port())
    (directory / "certs").mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(directory / "localhost.key"), "-out", str(directory / "localhost.crt"),
                    "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    config = directory / "prosody.cfg.lua"
    config.write_text(PROSODY_CONFIG.format(dir=directory, port=server.port))
    for user, password in accounts.items():
        subprocess.run(["prosodyctl", "--config", str(config), "register", user, server.domain,
                        password], check=True, capture_output=True)
    env = {**os.environ, "HOME": str(directory)}
    server.process = subprocess.Popen(["prosody", "--config", str(config)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for_port(server.port, process=server.process)
    return server


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 200  # what the receiver answered


def accepted(received: list[Received]) -> list[Received]:
    """The requests the receiver accepted (a 503 one was refused: not a delivery)."""
    return [request for request in received if request.status < 300]


@dataclass
class HttpReceiver:
    """A local HTTP server recording every POST (a JSON body decoded, another kept as text);
    answers `status` (changeable). `port` 0 takes a free one; a given port lets a test start it
    where a notifier found nothing listening. `with` starts and stops it."""

    status: int = 200
    port: int = 0
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                receiver.received.append(Received(
                    path=self.path, headers=dict(self.headers.items()), body=body,
                    status=receiver.status))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> HttpReceiver:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def add_cluster(engine: Engine, name: str = "alpha") -> int:
    with engine.begin() as conn:
        return int(conn.execute(insert(clusters).values(
            name=name, api_url=f"http://127.0.0.1:1/{name}/")).inserted_primary_key[0])


def add_campaign(engine: Engine, *, user: str = "alice", name: str = "c1",
                 state: str = "in_treatment", **values: Any) -> int:
    with engine.begin() as conn:
        return int(conn.execute(insert(campaigns).values(
            grid_user=user, name=name, state=state, **values)).inserted_primary_key[0])


def subscribe(engine: Engine, *, user: str, type_: str, identity: str, severity: str = "low",
              format_: str | None = None) -> int:
    with engine.begin() as conn:
        return int(conn.execute(insert(user_notifications).values(
            grid_user=user, type=type_, identity=identity, severity=severity, format=format_,
        )).inserted_primary_key[0])


SSHD_CONFIG = """
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/hostkey
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
"""


@dataclass
class SshServer:
    port: int
    key: Path
    process: subprocess.Popen[bytes]

    @property
    def options(self) -> str:
        """COLLECTOR_SSH_OPTIONS to reach this server as any local user."""
        return (f"-o Port={self.port} -o IdentityFile={self.key} -o BatchMode=yes "
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")


def start_sshd(directory: Path) -> SshServer:
    """A private OpenSSH server (key authentication only) on an ephemeral port."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists() or shutil.which("ssh-keygen") is None:
        pytest.fail("openssh-server and openssh-client are needed (see .ci/apt-packages)")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("hostkey", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(directory / name)], check=True, capture_output=True)
    shutil.copy(directory / "client.pub", directory / "authorized_keys")
    port = free_port()
    (directory / "sshd_config").write_text(SSHD_CONFIG.format(port=port, dir=directory))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(directory / "sshd_config")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return SshServer(port=port, key=directory / "client", process=process)
