"""The HTTP client of cigri's own REST API, used by the grid tools (gridsub, gridstat, ...).

Owns the client configuration and the transport. The tools are clients: they read their own
configuration, never the server's. Sources, later ones winning: the client file
(`$CIGRI_CLIENT_CONF`, else v3's `$CIGRICONFFILE`, else `/etc/cigri/api-clients.conf`; v3's
`KEY = "value"` lines), then `CIGRI_API_URL`, `CIGRI_API_SOCKET`, `CIGRI_API_TOKEN`. The Unix
socket, when set, wins over the URL: there the kernel names the user and no token is needed.
Bodies may be iterables of bytes, sent chunked, so a parameter file is streamed, never loaded.
A token file holds the token alone on one line (whitespace around it is stripped); a missing,
empty or malformed one is refused with one line naming the file (`ClientConfigError`).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import quote, urlencode, urlsplit

import click

DEFAULT_CONF: Final = Path("/etc/cigri/api-clients.conf")
DEFAULT_URL: Final = "http://127.0.0.1:8080"
UPLOAD_TIMEOUT_SECONDS: Final = 3600.0


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    url: str = DEFAULT_URL
    socket: str | None = None
    token: str | None = None
    timeout_seconds: float = 60.0


class ApiCallError(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, title: str, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.body = body


class ApiUnreachable(Exception):
    """The API could not be reached."""


class ClientConfigError(Exception):
    """The client configuration (its file, the token file) is unusable."""


def read_token_file(path: Path) -> str:
    """The token in `path`: one line, surrounding whitespace stripped; anything else (a missing
    or unreadable file, an empty one, two lines, spaces or control characters inside) is refused
    with one line naming the file."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise ClientConfigError(f"token file {path} does not exist (create one with "
                                f"`gridtoken create > {path}`)") from None
    except OSError as error:
        raise ClientConfigError(f"cannot read token file {path}: {error.strerror}") from None
    token = text.strip()
    if not token:
        raise ClientConfigError(f"token file {path} is empty (create a token with "
                                f"`gridtoken create > {path}`)")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        lines = len(token.splitlines())
        what = f"{lines} lines" if lines > 1 else "spaces or control characters"
        raise ClientConfigError(f"token file {path} is malformed: a token is one word on one "
                                f"line, it has {what} (write only the token, e.g. "
                                f"`gridtoken create > {path}`)")
    return token


def _read_conf(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        key, sep, value = line.partition("=")
        value = value.strip()
        if sep and len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            values[key.strip().upper()] = value[1:-1]
    return values


def load_client_config(environ: Mapping[str, str] | None = None) -> ClientConfig:
    """The client configuration from the client file and the CIGRI_API_* variables."""
    env = os.environ if environ is None else environ
    conf_path = env.get("CIGRI_CLIENT_CONF") or env.get("CIGRICONFFILE")
    path = Path(conf_path) if conf_path else DEFAULT_CONF
    values = _read_conf(path) if path.is_file() else {}
    url = values.get("API_URL")
    if not url and values.get("API_HOST"):
        scheme = "https" if values.get("API_SSL", "false").lower() != "false" else "http"
        url = (f"{scheme}://{values['API_HOST']}:{values.get('API_PORT', '80')}"
               f"{values.get('API_BASE', '')}")
    token = values.get("API_TOKEN")
    token_file = env.get("CIGRI_API_TOKEN_FILE") or values.get("API_TOKEN_FILE")
    sock = env.get("CIGRI_API_SOCKET") or values.get("API_SOCKET") or None
    if token_file and not env.get("CIGRI_API_TOKEN") and not sock:  # the socket needs none
        token = read_token_file(Path(os.path.expanduser(token_file)))
    token = (env.get("CIGRI_API_TOKEN") or token or "").strip() or None
    if token and any(ch.isspace() or not ch.isprintable() for ch in token):
        source = "CIGRI_API_TOKEN" if env.get("CIGRI_API_TOKEN") else f"API_TOKEN in {path}"
        raise ClientConfigError(f"{source} is malformed: a token is one word on one line")
    try:
        timeout = float(values.get("API_TIMEOUT", "60"))
    except ValueError:
        raise ClientConfigError(f"{path}: API_TIMEOUT must be a number of seconds, got "
                                f"{values['API_TIMEOUT']!r}") from None
    return ClientConfig(
        url=env.get("CIGRI_API_URL") or url or DEFAULT_URL,
        socket=sock, token=token, timeout_seconds=timeout)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ApiClient:
    """Calls the cigri REST API; returns decoded JSON, raises ApiCallError/ApiUnreachable."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        parts = urlsplit(config.url)
        self._scheme = parts.scheme or "http"
        self._netloc = parts.netloc
        self._base = parts.path.rstrip("/")

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.config.socket:
            return _UnixConnection(self.config.socket, timeout)
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._netloc, timeout=timeout)
        return http.client.HTTPConnection(self._netloc, timeout=timeout)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, body: Iterable[bytes] | bytes | None = None,
                content_type: str | None = None, timeout_seconds: float | None = None) -> Any:
        """Send one request; `path` is API-relative (links the API returns are used as is).

        A streamed body waits up to UPLOAD_TIMEOUT_SECONDS for the answer: the API ingests the
        whole stream (a million lines take a while) before it can answer."""
        target = self._base + path
        if params:
            query = urlencode({k: v for k, v in params.items() if v is not None})
            if query:
                target += ("&" if "?" in target else "?") + query
        headers = {"Accept": "application/json"}
        if self.config.token and not self.config.socket:
            headers["Authorization"] = f"Bearer {self.config.token}"
        payload: Any = None
        chunked = False
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif body is not None:
            payload = body
            headers["Content-Type"] = content_type or "text/plain; charset=utf-8"
            chunked = not isinstance(body, bytes)
            if chunked:
                headers["Transfer-Encoding"] = "chunked"
        if timeout_seconds is None:
            timeout_seconds = self.config.timeout_seconds
            if chunked:
                timeout_seconds = max(timeout_seconds, UPLOAD_TIMEOUT_SECONDS)
        connection = self._connection(timeout_seconds)
        try:
            connection.request(method, target, body=payload, headers=headers,
                               encode_chunked=chunked)
            response = connection.getresponse()
            raw = response.read()
        except OSError as error:
            where = self.config.socket or self.config.url
            reason = error.strerror or str(error) or type(error).__name__
            raise ApiUnreachable(
                f"API server not reachable at {where} ({reason}); is cigri-api running? Set "
                "CIGRI_API_URL or CIGRI_API_SOCKET, or API_URL in the client file "
                "(CIGRI_CLIENT_CONF, default /etc/cigri/api-clients.conf)") from error
        except http.client.HTTPException as error:
            raise ApiUnreachable(f"API server answered badly: {error!r}") from error
        finally:
            connection.close()
        try:
            data = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            data = None
        if response.status >= 400:
            if isinstance(data, dict) and "message" in data:
                raise ApiCallError(response.status, str(data.get("title", "Error")),
                                   str(data["message"]), data)
            text = raw.decode(errors="replace").strip().splitlines()
            raise ApiCallError(response.status, response.reason,
                               f"HTTP {response.status} {response.reason}"
                               + (f": {text[0][:200]}" if text else ""))
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)


def client_from_environment() -> ApiClient:
    return ApiClient(load_client_config())


def quoted(value: str) -> str:
    return quote(value, safe="")


def fail(tool: str, message: str, code: int = 1) -> NoReturn:
    """Print one readable error line (v3's wording where v3 had one) and exit non-zero."""
    click.echo(message, err=True)
    sys.exit(code)


def request_or_fail(api: ApiClient, method: str, path: str, *, tool: str, failure: str,
                    **options: Any) -> Any:
    """`api.request(method, path, **options)`; a refusal prints "<failure>: <the API's message>."
    (v3's wording) and exits 1."""
    try:
        return api.request(method, path, **options)
    except ApiCallError as error:
        fail(tool, f"{failure}: {error.message}.")


def run_tool(tool: str, command: click.Command) -> None:
    """Run a grid tool inside the error boundary: API errors, an unreachable API, a bad token
    file and any other failure become one line and a non-zero exit status."""
    from cigri.cli.failures import guard

    def run() -> Any:
        try:
            return command.main(prog_name=tool, standalone_mode=False)
        except (ApiUnreachable, ClientConfigError) as error:
            fail(tool, f"{tool}: {error}")
        except ApiCallError as error:
            fail(tool, f"{tool}: {error.message}")

    guard(tool, run)


def dump_json(data: Any, *, pretty: bool = True) -> None:
    click.echo(json.dumps(data, indent=2 if pretty else None, default=str))


def echo_answer(answer: Any, *, as_json: bool, verbose: bool, pretty: bool = False) -> None:
    """What a grid tool prints after a change: the API's answer with --json, its message with -v."""
    if as_json:
        dump_json(answer, pretty=pretty)
    elif verbose:
        click.echo(f"{answer['message']}.")
