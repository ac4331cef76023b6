"""Who may see and change what: the authorisation rules the JSON API and the dashboard share.

Each rule takes the caller's `Identity` and the row it is about, and raises `ApiError(403)` when
the caller may not; the JSON API renders that as JSON, the dashboard as a page. Nothing here reads
the database: callers fetch the row through `cigri.storage` first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cigri.api.app import ApiError, Identity


def check_owner(identity: Identity, campaign_id: int, owner: str) -> None:
    """A user sees and changes only their own campaigns (and what is in them); admins all."""
    if owner != identity.user and not identity.is_admin:
        raise ApiError(403, "Forbidden", f"Campaign {campaign_id} does not belong to you: User "
                       f"'{identity.user}' is not the owner of campaign '{campaign_id}'")


def campaigns_of(identity: Identity, requested: str | None) -> str | None:
    """Whose campaigns a listing shows: a user's own (asking for another's is 403); an admin's
    choice (None: everybody's)."""
    if requested is not None and requested != identity.user and not identity.is_admin:
        raise ApiError(403, "Forbidden", "you may list only your own campaigns")
    if requested is None and not identity.is_admin:
        return identity.user
    return requested


def check_admin(identity: Identity) -> None:
    if not identity.is_admin:
        raise ApiError(403, "Forbidden", f"User '{identity.user}' is not a cigri admin")


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
