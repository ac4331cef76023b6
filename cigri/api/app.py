"""The REST API application: the Flask factory, JSON errors, and who is calling.

Owns identity and the error contract. Identity is never what a client asserts: it is (in this
order) the Unix user the kernel names for a Unix-socket peer (`SO_PEERCRED`, put in the WSGI
environ by `cigri.api.server`, never from a header), the owner of a valid bearer token, or the
`API_HEADER_USERNAME` header only when the TCP peer is one of `API_TRUSTED_PROXIES`. Every error is
`{"status", "title", "message"}` with that status code (`cigri.api.shapes`). The routes live in
`cigri.api.routes`, one module per resource; what they share of the request (identity, owner
checks, the request's transaction) is `cigri.api.access`, of its input `cigri.api.inputs`.
"""

from __future__ import annotations

import io
import logging
import pwd
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs

from flask import Flask, Response, g, request
from sqlalchemy import Engine
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from cigri.api.access import (
    IdConverter,
    Identity,
    ids_in_range,
    release_connection,
    request_connection,
)
from cigri.api.metrics import metrics
from cigri.api.routes import BLUEPRINTS, PUBLIC_ENDPOINTS
from cigri.api.shapes import ApiError, error_response
from cigri.app import build_oar_factory
from cigri.config import Settings
from cigri.domain.clock import Clock, SystemClock
from cigri.domain.errors import CigriError, Conflict, Forbidden, JDLError, NotFound
from cigri.domain.oar import OarApi, OarError, OarNotFound
from cigri.storage.tokens import authenticate_token

log = logging.getLogger(__name__)

PEER_UID_KEY: Final = "cigri.peer_uid"  # WSGI environ key set by the Unix-socket server only
_ANONYMOUS: Final = frozenset({"", "unknown", "null"})

OarFactory = Callable[[Any], OarApi]


def _caused_by_name(error: BaseException, name: str) -> bool:
    """Whether `error`, or what it wraps or was raised from, is of a class named `name` (or a
    subclass of one): driver errors are matched by name, the API knows no driver."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        for candidate in (seen, getattr(seen, "orig", None)):
            if candidate is not None and any(k.__name__ == name for k in type(candidate).__mro__):
                return True
        seen = seen.__cause__ or seen.__context__
    return False


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind) or isinstance(getattr(seen, "orig", None), kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _header_environ_key(name: str) -> str:
    # Accept both a header name (X-Cigri-User) and v3's CGI name (HTTP_X_CIGRI_USER).
    key = name.upper().replace("-", "_")
    return key if key.startswith("HTTP_") else f"HTTP_{key}"


def _login_of_uid(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def resolve_identity(settings: Settings, engine: Engine, clock: Clock) -> Identity | None:
    """Who is calling, from what the kernel, a token or a trusted proxy says; None if unknown."""
    environ = request.environ
    user: str | None = None
    method = ""
    if PEER_UID_KEY in environ:
        user, method = _login_of_uid(int(environ[PEER_UID_KEY])), "socket"
    if user is None:
        authorization = request.headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            conn = request_connection(engine, settings)
            user = authenticate_token(conn, authorization[7:].strip(), now=clock.now())
            if user is None:
                raise ApiError(401, "Unauthorized", "Access denied: invalid, expired or revoked token")
            method = "token"
    if user is None and request.remote_addr in settings.trusted_proxies:
        user, method = environ.get(_header_environ_key(settings.API_HEADER_USERNAME)), "proxy"
    if user is None or user.strip().lower() in _ANONYMOUS:
        return None
    return Identity(user=user, is_admin=user in settings.admins, method=method)


class MethodOverride:
    """v3 accepted a POST whose form field `_method` says PUT or DELETE (HTML forms, old
    scripts). Only small url-encoded bodies are looked at; the body is given back intact."""

    MAX_BYTES: Final = 64 * 1024

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if (environ.get("REQUEST_METHOD") == "POST"
                and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if 0 < length <= self.MAX_BYTES:
                body = environ["wsgi.input"].read(length)
                environ["wsgi.input"] = io.BytesIO(body)
                method = parse_qs(body.decode("latin-1")).get("_method", [""])[0].upper()
                if method in {"PUT", "DELETE"}:
                    environ["REQUEST_METHOD"] = method
        return self.app(environ, start_response)


def create_app(settings: Settings, engine: Engine, *, clock: Clock | None = None,
               oar_factory: OarFactory | None = None) -> Flask:
    """The WSGI application of the REST API, over `engine`.

    `oar_factory(cluster)` gives the OAR client used to read job outputs and details and to remove
    output files (as the job's owner); by default `cigri.app.build_oar_factory` (one cached client
    per cluster, REST_* settings, JWT tokens from `users_mapping`).
    """
    app = Flask("cigri.api")
    app.config["CIGRI_SETTINGS"] = settings
    app.config["CIGRI_ENGINE"] = engine
    app.config["CIGRI_CLOCK"] = clock or SystemClock()
    app.config["CIGRI_OAR_FACTORY"] = oar_factory or build_oar_factory(settings, engine)
    app.url_map.converters["id"] = IdConverter
    app.url_map.strict_slashes = False
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.register_blueprint(metrics)
    from cigri.api.ui import ui

    app.register_blueprint(ui, url_prefix="/ui")
    app.wsgi_app = MethodOverride(app.wsgi_app)  # type: ignore[method-assign]

    _register_request_hooks(app, settings, engine)
    _register_error_handlers(app)
    return app


def _register_request_hooks(app: Flask, settings: Settings, engine: Engine) -> None:
    """Who is calling (before anything else), ids in range, and the request's connection released."""

    @app.before_request
    def _identify() -> None:
        # Who is calling is settled before any body is read: a bad body from nobody is a 403.
        g.identity = resolve_identity(settings, engine, app.config["CIGRI_CLOCK"])
        # the dashboard (blueprint "ui") authenticates its own requests: a signed session or
        # this identity, and a sign-in page instead of a JSON 403 (cigri.api.ui.pages._guard)
        if g.identity is None and request.endpoint is not None \
                and request.endpoint not in PUBLIC_ENDPOINTS and request.blueprint != "ui":
            raise ApiError(403, "Forbidden", "Access denied: not authenticated")

    # After the identity (an unknown caller gets 403 whatever the path says).
    app.before_request(ids_in_range)

    @app.teardown_request
    def _release(error: BaseException | None) -> None:
        release_connection(failed=error is not None)


def _register_error_handlers(app: Flask) -> None:
    """The error contract (api.md § Errors): every failure is a JSON body and a status."""
    handlers: tuple[tuple[type[Exception], Callable[[Any], Response]], ...] = (
        (ApiError, _api_error),
        (HTTPException, _http_error),
        (CigriError, _cigri_error),
        (DataError, _data_error),
        (RecursionError, _too_deep),
        (UnicodeError, _bad_text),
        (Exception, _unexpected),
    )
    for kind, handler in handlers:
        app.register_error_handler(kind, handler)


def _api_error(error: ApiError) -> Response:
    return error_response(error.status, error.title, error.message)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        return error_response(404, "Not found",
                              f"{request.method} {request.url} not found on this server")
    if status == 405:
        return error_response(405, "Method not allowed",
                              f"{request.method} is not allowed on {request.path}")
    return error_response(status, error.name, error.description or error.name)


def _cigri_error(error: CigriError) -> Response:
    status, title = _STATUS_OF.get(type(error), (400, "Error"))
    for kind, (kind_status, kind_title) in _STATUS_OF.items():
        if isinstance(error, kind):
            status, title = kind_status, kind_title
            break
    if isinstance(error, OarError):
        status, title = (404, "Not found") if isinstance(error, OarNotFound) else (
            502, "Cluster error")
    return error_response(status, title, error.message)


def _data_error(error: DataError) -> Response:
    # The database refused a value: a NUL character, a string longer than its column, a
    # number out of range. The request was bad, not the server.
    detail = str(getattr(error, "orig", error)).splitlines()[0] if str(error) else ""
    return error_response(400, "Bad request",
                          f"a value of the request is not acceptable: {detail}")


def _too_deep(_error: RecursionError) -> Response:
    return error_response(400, "Bad request", "the request body is nested too deeply")


def _bad_text(_error: UnicodeError) -> Response:
    return error_response(400, "Bad request", "the request holds text that is not valid "
                          "Unicode (e.g. a lone surrogate)")


def _unexpected(error: Exception) -> Response:
    # Driver errors can arrive unwrapped (a COPY fed by a generator raises psycopg's own).
    if _caused_by_name(error, "QueryCanceled"):
        return error_response(503, "Service unavailable", "the request took longer than "
                              "API_STATEMENT_TIMEOUT allows; ask for less (a smaller page, "
                              "fewer tasks)")
    if _caused_by(error, UnicodeError):
        return _bad_text(UnicodeError())
    if _caused_by_name(error, "DataError"):
        return error_response(400, "Bad request", "a value of the request is not acceptable "
                              "to the database (NUL character, too long, out of range)")
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "Internal server error", "unexpected error; see the API log")


_STATUS_OF: Final[dict[type[CigriError], tuple[int, str]]] = {
    NotFound: (404, "Not found"),
    Forbidden: (403, "Forbidden"),
    Conflict: (400, "Error"),
    JDLError: (400, "Error"),
}
