"""Tokens: the OAR 3 (JWT) cluster tokens cigri uses on a user's behalf (`/tokens`,
`/tokens/<cluster id>`; an admin's are the clusters' admin tokens unless `mine=1`) and the
caller's own API bearer tokens (`/api-tokens`, `/api-tokens/<id>`). No token is ever answered in
clear except once, when an API token is created."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from cigri.api.access import Identity, now, tx, who
from cigri.api.inputs import flag, json_body
from cigri.api.shapes import ApiError, iso, json_response, link, status
from cigri.domain import cluster_tokens
from cigri.domain.errors import NotFound
from cigri.domain.states import AuthType
from cigri.storage import cluster_tokens as token_store
from cigri.storage import tokens as api_tokens
from cigri.storage.clusters import get_cluster

tokens = Blueprint("tokens", __name__)


# ---------------------------------------------------------------- cluster tokens (OAR 3 JWT)


def _token_login(identity: Identity) -> str:
    """Whose cluster tokens a call is about. As in v3 (root's tokens are the `oar` login's), an
    admin's tokens are the clusters' admin tokens, unless `mine=1` asks for the admin's own;
    `admin=1` says so explicitly and is refused to non-admins (never stored as their own)."""
    if flag("admin") and not identity.is_admin:
        raise ApiError(403, "Forbidden", f"User '{identity.user}' is not a cigri admin: only an "
                       "admin sets a cluster-admin token")
    if identity.is_admin and (flag("admin") or not flag("mine")):
        return cluster_tokens.ADMIN_LOGIN
    return identity.user


@tokens.get("/tokens")
def list_cluster_tokens() -> ResponseReturnValue:
    identity = who()
    login = _token_login(identity)
    with tx() as conn:
        found = token_store.list_tokens(conn, grid_login=login)
    # v3 printed tokens in clear; only the end of each is shown now.
    admin = login == cluster_tokens.ADMIN_LOGIN
    items = [{"cluster_id": cluster_id, "token": cluster_tokens.mask(token), "admin": admin,
              **cluster_tokens.claims(token)} for cluster_id, token in found]
    return json_response({"items": items, "admin": admin,
                          "links": [link("self", "/tokens/")]})


def _jwt_cluster(conn: Connection, cluster_id: Any) -> None:
    if not isinstance(cluster_id, int) or isinstance(cluster_id, bool):
        raise ApiError(400, "Bad request", "cluster_id must be an integer")
    try:
        cluster = get_cluster(conn, cluster_id)
    except NotFound as error:
        raise ApiError(404, "Not found", f"Cluster {cluster_id} not found") from error
    if cluster.api_auth_type is not AuthType.JWT:
        raise ApiError(400, "Error", f"Cluster {cluster_id} auth_type is not JWT!")


@tokens.post("/tokens")
def add_cluster_token() -> ResponseReturnValue:
    identity = who()
    login = _token_login(identity)
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise ApiError(400, "Bad request", "expected {\"cluster_id\": int, \"token\": str}")
    try:
        token = cluster_tokens.normalize_token(body["token"])
    except cluster_tokens.BadToken as error:
        raise ApiError(400, "Bad request", error.message) from error
    with tx() as conn:
        _jwt_cluster(conn, body.get("cluster_id"))
        token_store.set_token(conn, grid_login=login, cluster_id=body["cluster_id"], token=token)
    admin = login == cluster_tokens.ADMIN_LOGIN
    message = (f"Cluster-admin token of cluster {body['cluster_id']} registered"
               if admin else "New token registered")
    return json_response({"status": 201, "title": "Created", "message": message,
                          "cluster_id": body["cluster_id"], "admin": admin,
                          "token": cluster_tokens.mask(token)}, 201)


@tokens.delete("/tokens/<id:cluster_id>")
def remove_cluster_token(cluster_id: int) -> ResponseReturnValue:
    identity = who()
    login = _token_login(identity)
    with tx() as conn:
        _jwt_cluster(conn, cluster_id)
        if not token_store.remove_token(conn, grid_login=login, cluster_id=cluster_id):
            raise ApiError(404, "Not found", f"No token on cluster {cluster_id}")
    return status(202, "Accepted", "Token removed")


# ---------------------------------------------------------------- API bearer tokens


def _token_json(token: api_tokens.ApiToken) -> dict[str, Any]:
    return {"id": token.id, "user": token.grid_user, "name": token.name,
            "created_at": iso(token.created_at), "expires_at": iso(token.expires_at),
            "last_used_at": iso(token.last_used_at), "revoked_at": iso(token.revoked_at)}


@tokens.get("/api-tokens")
def list_api_tokens() -> ResponseReturnValue:
    identity = who()
    with tx() as conn:
        found = api_tokens.list_tokens(conn, grid_user=identity.user)
    return json_response({"items": [_token_json(t) for t in found],
                          "links": [link("self", "/api-tokens")]})


@tokens.post("/api-tokens")
def create_api_token() -> ResponseReturnValue:
    identity = who()
    body = json_body() if request.content_length else {}
    if not isinstance(body, dict):
        raise ApiError(400, "Bad request", "expected a JSON object")
    name = body.get("name")
    expires = body.get("expires_in_days")
    if expires is not None and (not isinstance(expires, int) or isinstance(expires, bool)
                                or not 0 < expires <= 3650):
        raise ApiError(400, "Bad request", "expires_in_days must be an integer from 1 to 3650")
    at = now()
    with tx() as conn:
        token, clear = api_tokens.create_token(
            conn, grid_user=identity.user, now=at, name=name if isinstance(name, str) else None,
            expires_at=at + timedelta(days=expires) if expires else None)
    body = _token_json(token)
    body["token"] = clear
    return json_response(body, 201, headers={"Location": f"/api-tokens/{token.id}"})


@tokens.delete("/api-tokens/<id:token_id>")
def revoke_api_token(token_id: int) -> ResponseReturnValue:
    identity = who()
    with tx() as conn:
        owner = None if identity.is_admin else identity.user
        if not api_tokens.revoke_token(conn, token_id, now=now(), grid_user=owner):
            raise ApiError(404, "Not found", f"No live token {token_id} of yours")
    return status(202, "Accepted", f"Token {token_id} revoked")
