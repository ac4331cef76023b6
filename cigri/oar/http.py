"""The HTTP transport to one OAR REST API: one `requests.Session`, authentication, timeouts,
bounded retries of idempotent GETs, request counting, and the mapping of every failure to
`OarUnavailable` / `OarRejected` / `OarNotFound` with cigri's event code (server spec §4.3).

Knows nothing of OAR's routes or payloads (that is `flavours.py` and `client.py`).
"""

from __future__ import annotations

import errno
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests

from cigri.domain.event_codes import EventCode
from cigri.domain.oar import OarError, OarNotFound, OarRejected, OarUnavailable
from cigri.domain.telemetry import OAR_REQUEST_DURATION, OAR_REQUESTS, RECORDER
from cigri.oar.parsing import error_detail

log = logging.getLogger(__name__)

DEFAULT_IDENTITY_HEADER = "X-Remote-Ident"
Params = Sequence[tuple[str, str]] | None  # query parameters, in order (a key may repeat)


@dataclass(frozen=True, kw_only=True)
class OarAuth:
    """How the client proves who it is and for whom it acts.

    - `identity_header`: the header naming the user on a trusted endpoint (OAR 2.5).
    - `tokens`: JWT per login (OAR 3); with tokens, the user goes in `Authorization: Bearer`.
      A user given as `Bearer <token>` (the mapped login of a jwt cluster) is sent as is.
    - `cert`: TLS client certificate file, or (certificate, key) files.
    - `basic`: HTTP basic auth (login, password), sent on every request.
    - `verify`: check the server certificate (True), not (False), or against this CA bundle.
    """

    identity_header: str = DEFAULT_IDENTITY_HEADER
    tokens: Mapping[str, str] = field(default_factory=dict)
    cert: str | tuple[str, str] | None = None
    basic: tuple[str, str] | None = None
    verify: bool | str = True
    jwt: bool = False  # identity by bearer token instead of identity header

    def headers_for(self, user: str | None) -> dict[str, str]:
        """Headers that make a request act as `user` (none for anonymous calls)."""
        if user is None:
            return {}
        if self.jwt:
            if user.lower().startswith("bearer "):
                # already the header value: a jwt cluster's `users_mapping.cluster_login` (v3)
                return {"Authorization": user}
            token = self.tokens.get(user)
            if token is None:
                raise OarRejected(f"no JWT token for user {user}", code=EventCode.JWT_TOKEN_NOT_FOUND)
            value = token if token.lower().startswith("bearer ") else f"Bearer {token}"
            return {"Authorization": value}
        return {self.identity_header: user}


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Retries of idempotent GETs on connection failures, 5xx and garbled answers."""

    attempts: int = 3  # total tries, the first included
    backoff_seconds: float = 0.2  # sleep before the 2nd try; doubled each time
    max_backoff_seconds: float = 2.0

    def delay(self, retry: int) -> float:
        return min(self.max_backoff_seconds, self.backoff_seconds * (2 ** retry))


NO_RETRY = RetryPolicy(attempts=1)
DEFAULT_RETRY = RetryPolicy()

_REJECTION_CODES: Mapping[int, EventCode] = {
    400: EventCode.CLUSTER_API_BAD_REQUEST_ERROR,
    401: EventCode.PERMISSION_DENIED,
    403: EventCode.FORBIDDEN,
    413: EventCode.REQUEST_TOO_LARGE,
}


# OAR 2.5.9 wraps every oarsub failure in a 500 "Oarsub command exited with status N": any
# non-zero N means oarsub ran and refused (1 bad option, 254 admission rule, 248 unknown queue,
# 255 unparsable resource...), so no job exists and the same request will be refused again.
_OARSUB_REFUSAL = re.compile(r"^Oarsub command exited with status [1-9][0-9]*\b")


@dataclass(frozen=True, kw_only=True)
class Answer:
    status: int
    content: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        """The decoded JSON body; `ValueError` when it is not JSON (e.g. truncated)."""
        return json.loads(self.content.decode("utf-8", "replace"))


def _connection_code(exc: BaseException) -> EventCode:
    """The v3 event code of a connection-level failure, from the exception chain."""
    if isinstance(exc, requests.exceptions.SSLError):
        return EventCode.SSL_ERROR
    seen: BaseException | None = exc
    text = ""
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return EventCode.CONNECTION_REFUSED
        if isinstance(seen, ConnectionResetError):
            return EventCode.CONNECTION_RESET
        if isinstance(seen, OSError) and seen.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return EventCode.HOST_UNREACHABLE
        text += " " + str(seen)
        seen = seen.__cause__ or seen.__context__ or (seen.args[0] if seen.args and
                                                       isinstance(seen.args[0], BaseException)
                                                       else None)
    lowered = text.lower()
    if "refused" in lowered:
        return EventCode.CONNECTION_REFUSED
    if "reset" in lowered or "aborted" in lowered or "remote end closed" in lowered:
        return EventCode.CONNECTION_RESET
    if "unreachable" in lowered:
        return EventCode.HOST_UNREACHABLE
    return EventCode.SOCKET_ERROR


class OarHttp:
    """One session to one OAR API base URL (ending in `/`); every request has a timeout."""

    def __init__(self, base_url: str, *, auth: OarAuth, timeout_seconds: float,
                 retry: RetryPolicy = DEFAULT_RETRY,
                 sleep: Callable[[float], None] = time.sleep, cluster: str = "") -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.auth = auth
        self.timeout_seconds = timeout_seconds
        self.retry = retry
        self._sleep = sleep
        self.cluster = cluster  # the `cluster` label of this client's request metrics
        self.request_count = 0  # every request sent
        self.retry_count = 0  # of which repeats of a failed GET
        self.session = requests.Session()
        self.session.trust_env = False  # environment proxies (and netrc) are ignored
        self.session.headers.update({"Accept": "application/json"})
        self.session.verify = auth.verify
        if auth.cert is not None:
            self.session.cert = auth.cert
        if auth.basic is not None:
            self.session.auth = auth.basic

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        """`path` relative to the base URL; an absolute href (`/oarapi/jobs?...`) against the origin."""
        return urljoin(self.base_url, path)

    def get(self, path: str, *, user: str | None, params: Params = None,
            code: EventCode, raw: bool = False) -> Answer:
        """An idempotent GET, retried per the policy on connection errors, 5xx and garbage."""
        attempt = 0
        while True:
            try:
                answer = self._send("GET", path, user=user, params=params, code=code)
                if not raw and answer.status < 300:
                    try:
                        answer.json()
                    except ValueError as exc:
                        raise OarUnavailable(f"GET {path}: answer is not JSON ({exc})",
                                             status=answer.status,
                                             body=answer.content[:500].decode("utf-8", "replace"),
                                             code=code) from exc
                return answer
            except OarUnavailable as exc:
                attempt += 1
                retriable = exc.code != EventCode.TIMEOUT and exc.code != EventCode.SSL_ERROR
                if not retriable or attempt >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt - 1)
                log.info("GET %s failed (%s), retry %d in %.2fs", path, exc, attempt, delay)
                self._sleep(delay)
                self.retry_count += 1

    def post(self, path: str, *, user: str | None, body: Any, code: EventCode) -> Answer:
        """A POST, never retried (it may have been applied even when the answer was lost)."""
        return self._send("POST", path, user=user, body=body, code=code, timeout_code=EventCode.POST_TIMEOUT)

    def delete(self, path: str, *, user: str | None, params: Params = None,
               code: EventCode) -> Answer:
        return self._send("DELETE", path, user=user, params=params, code=code)

    def _send(self, method: str, path: str, *, user: str | None, code: EventCode,
              params: Params = None, body: Any = None,
              timeout_code: EventCode = EventCode.TIMEOUT) -> Answer:
        headers = self.auth.headers_for(user)
        data = None
        if body is not None or method != "GET":
            headers["Content-Type"] = "application/json"
            data = json.dumps(body if body is not None else {})
        url = self.url(path)
        self.request_count += 1
        started = time.monotonic()
        try:
            response = self.session.request(method, url, params=params, data=data, headers=headers,
                                            timeout=self.timeout_seconds, allow_redirects=False)
            content = response.content  # read it all here: a cut connection fails inside the try
        except requests.exceptions.Timeout as exc:
            self._count(method, "timeout", started)
            raise OarUnavailable(f"{method} {url}: timed out after {self.timeout_seconds}s",
                                 code=timeout_code) from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            self._count(method, "connection_error", started)
            raise OarUnavailable(f"{method} {url}: {exc}", code=_connection_code(exc)) from exc
        except requests.exceptions.RequestException as exc:
            self._count(method, "error", started)
            raise OarUnavailable(f"{method} {url}: {exc}", code=code) from exc
        self._count(method, str(response.status_code), started)
        answer = Answer(status=response.status_code, content=content, headers=response.headers)
        if answer.status >= 400:
            raise self._failure(method, url, answer, code)
        return answer

    def _count(self, method: str, status: str, started: float) -> None:
        """One request in the process's metrics (`cigri.domain.telemetry`): by cluster, method
        and status, and its latency."""
        RECORDER.inc(OAR_REQUESTS, {"cluster": self.cluster, "method": method, "status": status})
        RECORDER.observe(OAR_REQUEST_DURATION, {"cluster": self.cluster, "method": method},
                         time.monotonic() - started)

    @staticmethod
    def _failure(method: str, url: str, answer: Answer, code: EventCode) -> OarError:
        body = answer.content.decode("utf-8", "replace")
        try:
            detail = error_detail(answer.json())
        except ValueError:
            detail = None
        message = f"{method} {url}: HTTP {answer.status}" + (f": {detail}" if detail else "")
        if answer.status == 404:
            return OarNotFound(message, status=404, body=body)
        if method == "POST" and answer.status == 500 and detail and _OARSUB_REFUSAL.search(detail):
            # the request is wrong (see _OARSUB_REFUSAL): retrying it cannot help
            return OarRejected(message, status=500, body=body, code=EventCode.CLUSTER_API_SERVER_ERROR)
        if answer.status >= 500:
            return OarUnavailable(message, status=answer.status, body=body,
                                  code=EventCode.CLUSTER_API_SERVER_ERROR)
        return OarRejected(message, status=answer.status, body=body,
                           code=_REJECTION_CODES.get(answer.status, code))
