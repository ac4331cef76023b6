"""Who may do what, within one request: the caller's `Identity` (settled by `cigri.api.app`
before any route runs), the admin and owner checks, the request's one database connection and its
transactions (`tx`), the application's settings, clock and OAR clients, and the path-id rules.

Every route module reaches the request's context through here, never through `current_app` or
`g` directly, so the checks are written once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from flask import current_app, g, request
from sqlalchemy import Connection, Engine
from werkzeug.routing import BaseConverter

from cigri.api.shapes import ApiError
from cigri.config import Settings
from cigri.domain.clock import Clock
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi
from cigri.storage import queries
from cigri.storage.db import set_statement_timeout


@dataclass(frozen=True, kw_only=True)
class Identity:
    user: str
    is_admin: bool
    method: str  # socket, token, proxy


def settings() -> Settings:
    return current_app.config["CIGRI_SETTINGS"]


def engine() -> Engine:
    return current_app.config["CIGRI_ENGINE"]


def now() -> datetime:
    clock: Clock = current_app.config["CIGRI_CLOCK"]
    return clock.now()


def oar_for(cluster: Cluster) -> OarApi:
    """The OAR client of a cluster (`create_app`'s `oar_factory`)."""
    client: OarApi = current_app.config["CIGRI_OAR_FACTORY"](cluster)
    return client


def request_connection(engine: Engine, settings: Settings) -> Connection:
    """The request's one database connection, in a transaction (begun here when none is open,
    each statement bounded by API_STATEMENT_TIMEOUT). A request checks one connection out of the
    pool, once: the token check and the route's first transaction share it (fewer round trips
    under load; `tx` commits it). Closed at the end of the request."""
    conn: Connection | None = g.get("cigri_conn")
    if conn is None:
        conn = g.cigri_conn = engine.connect()
    if not conn.in_transaction():
        conn.begin()
        set_statement_timeout(conn, settings.API_STATEMENT_TIMEOUT)
    return conn


def release_connection(failed: bool) -> None:
    """End of request: commit what is left open (e.g. a token's last use) unless it failed."""
    conn: Connection | None = g.pop("cigri_conn", None)
    if conn is None:
        return
    try:
        if conn.in_transaction():
            if failed:
                conn.rollback()
            else:
                conn.commit()
    finally:
        conn.close()


@contextlib.contextmanager
def tx() -> Iterator[Connection]:
    """One transaction of request work, on the request's connection (the token check's
    transaction when one is open), each statement bounded by API_STATEMENT_TIMEOUT; committed
    at the end of the block, rolled back on any error."""
    conn = request_connection(engine(), settings())
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def who() -> Identity:
    identity: Identity | None = g.get("identity")
    if identity is None:
        raise ApiError(403, "Forbidden", "Access denied: not authenticated")
    return identity


def admin() -> Identity:
    identity = who()
    check_admin(identity)
    return identity


def own_campaign(conn: Connection, campaign_id: int) -> tuple[str, str]:
    """(owner, state) of a campaign the caller may see and change; 404 or 403 otherwise."""
    identity = who()
    owner, state = queries.get_campaign_owner(conn, campaign_id)
    check_owner(identity, campaign_id, owner)
    return owner, state


# --- the authorisation rules the JSON API and the dashboard share: each takes the caller and
# the row it is about (fetched through cigri.storage first) and raises ApiError(403) when the
# caller may not; the API renders that as JSON, the dashboard as a page.


def check_owner(identity: Identity, campaign_id: int, owner: str) -> None:
    """A user sees and changes only their own campaigns (and what is in them); admins all."""
    if owner != identity.user and not identity.is_admin:
        raise ApiError(403, "Forbidden", f"Campaign {campaign_id} does not belong to you: User "
                       f"'{identity.user}' is not the owner of campaign '{campaign_id}'")


def check_admin(identity: Identity) -> None:
    if not identity.is_admin:
        raise ApiError(403, "Forbidden", f"User '{identity.user}' is not a cigri admin")


def campaigns_of(identity: Identity, requested: str | None) -> str | None:
    """Whose campaigns a listing shows: a user's own (asking for another's is 403); an admin's
    choice (None: everybody's)."""
    if requested is not None and requested != identity.user and not identity.is_admin:
        raise ApiError(403, "Forbidden", "you may list only your own campaigns")
    if requested is None and not identity.is_admin:
        return identity.user
    return requested


def check_event_readable(identity: Identity, event_id: int, row: Mapping[str, Any]) -> None:
    """Cluster-wide events are public to authenticated users; the others only to the owner of
    their campaign (a job event without a campaign: admins only). `row` is
    `queries.get_event_row`'s."""
    owner = row.get("campaign_owner")
    if owner is not None and owner != identity.user and not identity.is_admin:
        raise ApiError(403, "Forbidden", f"Event {event_id} belongs to a campaign of another user")
    if owner is None and row["job_id"] is not None and not identity.is_admin:
        raise ApiError(403, "Forbidden", f"Event {event_id} is not yours")


def check_event_closable(identity: Identity, event_id: int, row: Mapping[str, Any]) -> None:
    """Closing (fixing) an event: its reader may, except that an event of no campaign (a
    cluster-wide one) is closed by admins only."""
    check_event_readable(identity, event_id, row)
    if row.get("campaign_owner") is None and not identity.is_admin:
        raise ApiError(403, "Forbidden", f"Event {event_id} is not specific to a campaign "
                       f"belonging to you: only an admin may close it")


def check_job_owner(identity: Identity, job_id: int, job: Mapping[str, Any]) -> None:
    """A job is its campaign owner's; `job` is `queries.get_job`'s row."""
    if job["grid_user"] != identity.user and not identity.is_admin:
        raise ApiError(403, "Forbidden", f"Job {job_id} does not belong to you: User "
                       f"'{identity.user}' is not the owner of job '{job_id}'")


def own_job(conn: Connection, job_id: int) -> dict[str, Any]:
    """The job row of a job the caller may see; 404 or 403 otherwise."""
    job = queries.get_job(conn, job_id)
    check_job_owner(who(), job_id, job)
    return job


class IdConverter(BaseConverter):
    """A database id in a path: 1 to 18 digits (anything else is a 404). Whether it fits its
    column is `ids_in_range`'s business: a converter that refuses a value makes werkzeug answer
    405 when another method's rule has the same path."""

    regex = r"\d{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


# Path ids kept in INTEGER columns (campaigns, clusters, API tokens, rules, schedules); the
# others (tasks, jobs, events) are BIGINT, which 18 digits always fit.
_INT4_IDS: Final = frozenset({"campaign_id", "cluster_id", "token_id", "rule_id",
                              "schedule_id"})
_INT4_MAX: Final = 2**31 - 1


def ids_in_range() -> None:
    """An id beyond its column names no object: 404, never a database error."""
    for name, value in (request.view_args or {}).items():
        if name in _INT4_IDS and isinstance(value, int) and value > _INT4_MAX:
            raise ApiError(404, "Not found",
                           f"{request.method} {request.url} not found on this server")
