"""The WSGI plumbing of the emulated OAR API: the request (path under the API prefix, query
arguments, identity from OAR's headers or HTTP basic auth), the response and its JSON and error
forms, and the fault knobs a test turns (errors, latency, truncated or non-JSON answers)."""

from __future__ import annotations

import base64
import json
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from cigri.emulator.jobs import login_of

StartResponse = Callable[..., Any]
JSON_TYPE = "application/json; charset=ISO-8859-1"


@dataclass
class Faults:
    """Per-cluster fault knobs, changeable at run time."""

    error_rate: float = 0.0  # share of API answers replaced by a 500
    latency: float = 0.0  # seconds added to every answer
    truncate_rate: float = 0.0  # share of JSON answers cut in half
    nonjson_rate: float = 0.0  # share of answers replaced by an HTML page with status 200
    pending: deque[tuple[int, str]] = field(default_factory=deque)  # (status, kind) for the next answers
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int | None = None, count: int = 1, kind: str = "error") -> None:
        """The next `count` API answers fail: `kind` is `error` (HTTP `status`, default 500),
        `truncated` or `nonjson` (status default 200)."""
        if kind not in ("error", "truncated", "nonjson"):
            raise ValueError(f"unknown fault kind {kind!r}")
        code = status if status is not None else (500 if kind == "error" else 200)
        with self.lock:
            self.pending.extend([(code, kind)] * count)

    def draw(self) -> tuple[int, str] | None:
        with self.lock:
            if self.pending:
                return self.pending.popleft()
            roll = self.rng.random()
            if roll < self.error_rate:
                return 500, "error"
            if roll < self.error_rate + self.truncate_rate:
                return 200, "truncated"
            if roll < self.error_rate + self.truncate_rate + self.nonjson_rate:
                return 200, "nonjson"
            return None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def json_response(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, (json.dumps(data, indent=1) + "\n").encode(), headers=headers or [])


def error(code: int, title: str, message: str) -> Response:
    return json_response(code, {"code": code, "title": title, "message": message})


def send(response: Response, start_response: StartResponse) -> Iterable[bytes]:
    """Hand `response` to the WSGI server."""
    headers = [("Content-Type", response.content_type), *response.headers]
    if response.status != 204:
        headers.append(("Content-Length", str(len(response.body))))
    start_response(f"{response.status} {REASONS.get(response.status, 'Status')}", headers)
    return [response.body] if response.status != 204 else []


def basic_credentials(value: str) -> tuple[str, str] | None:
    """(login, password) of a basic `Authorization` header, or None."""
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        login, _, password = base64.b64decode(credentials).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return login, password


def _identity_from_authorization(value: str) -> str | None:
    """The login of an `Authorization` header: basic auth (as behind the `/oarapi-priv` location;
    the password is checked by `OarApp`) or an OAR 3 JWT bearer token (its `user` claim; the
    signature is not checked)."""
    basic = basic_credentials(value)
    if basic is not None:
        return basic[0] or None
    scheme, _, credentials = value.partition(" ")
    try:
        if scheme.lower() == "bearer":
            payload = credentials.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            user = claims.get("user") or claims.get("sub")
            return str(user) if user else None
    except (ValueError, IndexError, UnicodeDecodeError, AttributeError):
        return None
    return None


APACHE_401 = (
    b'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>401 Unauthorized</title>\n'
    b"</head><body>\n<h1>Unauthorized</h1>\n<p>This server could not verify that you\n"
    b"are authorized to access the document\nrequested.</p>\n</body></html>\n"
)


class Request:
    def __init__(self, environ: dict[str, Any], prefix: str) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        raw_path = environ.get("PATH_INFO", "") or "/"
        self.raw_path = raw_path
        self.path = raw_path[len(prefix) :] if raw_path.startswith(prefix) else None
        self.query = parse_qsl(environ.get("QUERY_STRING", "").replace(";", "&"), keep_blank_values=True)
        self.args: dict[str, str] = {}
        for key, value in self.query:
            self.args.setdefault(key, value)
        ident = environ.get("HTTP_X_REMOTE_IDENT")
        if ident is None:
            ident = environ.get("X_REMOTE_IDENT")
        if ident is None:
            ident = _identity_from_authorization(environ.get("HTTP_AUTHORIZATION", ""))
        self.identity: str | None = ident
        self.login = login_of(ident)

    def all(self, key: str) -> list[str]:
        return [v for k, v in self.query if k == key]

    def body(self) -> bytes:
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        stream = self.environ.get("wsgi.input")
        return stream.read(length) if stream is not None and length > 0 else b""
