"""Per-user API bearer tokens (`api_tokens`): create, authenticate, list, revoke.

Owns the token format and its hashing: a token is `secrets.token_urlsafe(32)`, shown once to its
owner; only its sha256 is stored, so a database leak gives no usable token. Does not own who may
create tokens for whom (the API and the `cigri token` command decide).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection, insert, select, update

from cigri.storage.tables import api_tokens

log = logging.getLogger(__name__)

LAST_USED_RESOLUTION: Final = timedelta(minutes=1)


@dataclass(frozen=True, kw_only=True)
class ApiToken:
    id: int
    grid_user: str
    name: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def is_valid(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _from_row(row: object) -> ApiToken:
    m = row._mapping  # type: ignore[attr-defined]
    return ApiToken(id=m["id"], grid_user=m["grid_user"], name=m["name"], created_at=m["created_at"],
                    expires_at=m["expires_at"], last_used_at=m["last_used_at"],
                    revoked_at=m["revoked_at"])


def create_token(conn: Connection, *, grid_user: str, now: datetime, name: str | None = None,
                 expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Create a token for `grid_user`; return its row and the clear token (never stored)."""
    clear = secrets.token_urlsafe(32)
    token_id = conn.execute(
        insert(api_tokens).values(grid_user=grid_user, name=name, token_hash=hash_token(clear),
                                  created_at=now, expires_at=expires_at).returning(api_tokens.c.id)
    ).scalar_one()
    log.info("API token %d created for %s", token_id, grid_user, extra={"action": "token_create"})
    return get_token(conn, token_id), clear


def get_token(conn: Connection, token_id: int) -> ApiToken:
    row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one()
    return _from_row(row)


def authenticate_token(conn: Connection, clear: str, *, now: datetime) -> str | None:
    """The grid user owning this valid (not revoked, not expired) token, or None."""
    row = conn.execute(
        select(api_tokens).where(api_tokens.c.token_hash == hash_token(clear))
    ).one_or_none()
    if row is None:
        return None
    token = _from_row(row)
    if not token.is_valid(now):
        return None
    # Record use at most once a minute: a write (and its commit) on every request would cost
    # more than the request itself.
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        conn.execute(update(api_tokens).where(api_tokens.c.id == token.id)
                     .values(last_used_at=now))
    return token.grid_user


def list_tokens(conn: Connection, *, grid_user: str | None = None) -> list[ApiToken]:
    """Tokens of one user (or everyone's when `grid_user` is None), oldest first."""
    query = select(api_tokens).order_by(api_tokens.c.id)
    if grid_user is not None:
        query = query.where(api_tokens.c.grid_user == grid_user)
    return [_from_row(row) for row in conn.execute(query)]


def revoke_token(conn: Connection, token_id: int, *, now: datetime,
                 grid_user: str | None = None) -> bool:
    """Revoke a token (of `grid_user` only, when given). False when no such live token."""
    query = update(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
    if grid_user is not None:
        query = query.where(api_tokens.c.grid_user == grid_user)
    revoked = conn.execute(query.values(revoked_at=now)).rowcount > 0
    if revoked:
        log.info("API token %d revoked", token_id, extra={"action": "token_revoke"})
    return revoked
