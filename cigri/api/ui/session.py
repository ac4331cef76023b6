"""Who is looking at the dashboard, and the CSRF tokens of its forms.

Browsers cannot use the Unix socket, so a user signs in with an API token: `sign_in` checks it
with `cigri.storage.tokens.authenticate_token` (as the API does for a bearer token) and keeps,
in a signed cookie (HttpOnly, SameSite=Strict, Secure over HTTPS, with an expiry), the user, the
token's id (never the token), the expiry and a random nonce. Every request re-checks the token:
revoking it ends the session. Without a session, the API's own identity applies (trusted proxy
header, Unix socket, bearer), resolved by `cigri.api.app`.

Every state-changing form carries `csrf_token()`: an HMAC, under the signing key, of the user and
the session's nonce (of the proxy user for proxy sign-ins; of a pre-session cookie for the
sign-in form itself), checked by `check_csrf` before any POST runs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any, Final

from flask import current_app, g, request
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response

from cigri.api.access import Identity
from cigri.api.shapes import ApiError
from cigri.config import Settings
from cigri.domain.clock import Clock
from cigri.storage import dashboard
from cigri.storage.tokens import authenticate_token

COOKIE: Final = "cigri_ui"
LOGIN_COOKIE: Final = "cigri_ui_login"
SECRET_NAME: Final = "ui_session_key"
_SALT: Final = "cigri-ui-session"


def _settings() -> Settings:
    return current_app.config["CIGRI_SETTINGS"]


def _now() -> datetime:
    clock: Clock = current_app.config["CIGRI_CLOCK"]
    return clock.now()


def signing_key() -> str:
    """`UI_SECRET_KEY`, else the key kept in the database (made by the first process asking)."""
    key: str | None = current_app.config.get("CIGRI_UI_KEY")
    if key:
        return key
    key = _settings().UI_SECRET_KEY
    if not key:
        with current_app.config["CIGRI_ENGINE"].begin() as conn:
            key = dashboard.site_secret(conn, SECRET_NAME, generate=secrets.token_urlsafe(48),
                                        now=_now())
    current_app.config["CIGRI_UI_KEY"] = key
    return key


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(signing_key(), salt=_SALT)


def _mac(*parts: str) -> str:
    message = "|".join(parts).encode()
    return hmac.new(signing_key().encode(), message, hashlib.sha256).hexdigest()


def _session() -> dict[str, Any] | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer().loads(raw)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("x"), int | float):
        return None
    now = _now()
    if data["x"] <= now.timestamp():
        return None
    with current_app.config["CIGRI_ENGINE"].begin() as conn:
        user = dashboard.live_token_user(conn, int(data.get("t", 0)), now=now)
    return data if user is not None and user == data.get("u") else None


def viewer() -> Identity | None:
    """Who is looking: the API's identity (proxy, socket, bearer) or the signed-in session."""
    if "ui_identity" in g:
        found: Identity | None = g.ui_identity
        return found
    found = g.get("identity")
    g.ui_session = None
    if found is None:
        data = _session()
        if data is not None:
            g.ui_session = data
            found = Identity(user=data["u"], is_admin=data["u"] in _settings().admins,
                             method="session")
    g.ui_identity = found
    return found


def require_viewer() -> Identity:
    found = viewer()
    if found is None:
        raise ApiError(401, "Sign in", "Sign in with an API token to see the dashboard")
    return found


def sign_in(token: str, response: Response) -> str | None:
    """Check an API token; on success set the session cookie on `response`, return the user."""
    now = _now()
    with current_app.config["CIGRI_ENGINE"].begin() as conn:
        user = authenticate_token(conn, token, now=now)
        found = dashboard.token_id(conn, token) if user else None
    if user is None or found is None:
        return None
    lifetime = timedelta(hours=_settings().UI_SESSION_HOURS)
    expires = now + lifetime
    value = _serializer().dumps({"u": user, "t": found, "x": int(expires.timestamp()),
                                 "c": secrets.token_urlsafe(16)})
    response.set_cookie(COOKIE, value, max_age=int(lifetime.total_seconds()), path="/ui/",
                        httponly=True, samesite="Strict", secure=request.is_secure)
    response.delete_cookie(LOGIN_COOKIE, path="/ui/")
    return user


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui/", httponly=True, samesite="Strict",
                           secure=request.is_secure)


def login_nonce(response: Response) -> str:
    """The pre-session nonce the sign-in form's CSRF token is bound to (set if absent)."""
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not nonce:
        nonce = secrets.token_urlsafe(16)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/ui/", httponly=True,
                            samesite="Strict", secure=request.is_secure)
    return nonce


def login_csrf(nonce: str) -> str:
    return _mac("login", nonce)


def csrf_token() -> str:
    """The token the signed-in viewer's forms carry."""
    identity = viewer()
    if identity is None:
        return ""
    data = g.get("ui_session")
    nonce = data["c"] if data else f"{identity.method}"
    return _mac("csrf", identity.user, nonce)


def check_csrf() -> None:
    """Refuse (403) a POST whose form lacks the right token, or that comes from another site."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.rstrip("/") != request.host_url.rstrip("/"):
        raise ApiError(403, "Forbidden", "This form was posted from another site")
    sent = request.form.get("csrf_token", "")
    if request.endpoint == "ui.login":
        expected = login_csrf(request.cookies.get(LOGIN_COOKIE, ""))
        if not request.cookies.get(LOGIN_COOKIE):
            expected = ""
    else:
        expected = csrf_token()
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise ApiError(403, "Forbidden", "This form has expired or was not sent by the dashboard "
                       "(missing or wrong CSRF token): reload the page and try again")
