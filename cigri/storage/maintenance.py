"""Housekeeping SQL: which finished campaigns are old enough to purge, their export for an archive,
their deletion, and the database vacuum.

Owns no policy (the age comes from `PURGE_AFTER_DAYS`, through `cigri maintenance`). A purge is one
DELETE per campaign row: every table that belongs to a campaign cascades from `campaigns`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, text

from cigri.domain.states import CampaignState
from cigri.storage.tables import (
    campaign_properties,
    campaigns,
    collected_files,
    events,
    jobs,
    parameters,
)

FINAL_STATES = (CampaignState.TERMINATED.value, CampaignState.CANCELLED.value)


def _finished_at() -> Any:
    # v3 never set completion_time: fall back to the submission time for those campaigns.
    return func.coalesce(campaigns.c.completion_time, campaigns.c.submission_time)


def list_purgeable_campaigns(conn: Connection, *, finished_before: datetime,
                             grid_user: str | None = None) -> list[int]:
    """Finished (terminated or cancelled) campaigns whose end is older than `finished_before`."""
    query = select(campaigns.c.id).where(campaigns.c.state.in_(FINAL_STATES),
                                         _finished_at() < finished_before)
    if grid_user is not None:
        query = query.where(campaigns.c.grid_user == grid_user)
    return [int(row.id) for row in conn.execute(query.order_by(campaigns.c.id))]


def export_campaign(conn: Connection, campaign_id: int) -> dict[str, Any]:
    """Everything stored about a campaign, as JSON-ready data (the archive format)."""
    def rows(table: Any) -> list[dict[str, Any]]:
        found = conn.execute(select(table).where(table.c.campaign_id == campaign_id)
                             .order_by(table.c.id))
        return [{key: _plain(value) for key, value in row._mapping.items()} for row in found]

    campaign = conn.execute(select(campaigns).where(campaigns.c.id == campaign_id)).one()
    return {
        "campaign": {key: _plain(value) for key, value in campaign._mapping.items()},
        "properties": rows(campaign_properties),
        "parameters": rows(parameters),
        "jobs": rows(jobs),
        "events": rows(events),
        "collected_files": rows(collected_files),
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def purge_campaigns(conn: Connection, campaign_ids: Sequence[int]) -> int:
    """Delete these campaigns and, by cascade, all their rows; returns how many were deleted."""
    if not campaign_ids:
        return 0
    return int(conn.execute(delete(campaigns).where(campaigns.c.id.in_(list(campaign_ids))))
               .rowcount)


def vacuum(engine: Engine) -> None:
    """VACUUM ANALYZE (PostgreSQL) or VACUUM (SQLite), outside any transaction."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
        return
    # The SQLite engine opens its own BEGIN on every connection; VACUUM needs the raw driver.
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        driver.isolation_level = None
        driver.execute("VACUUM")
    finally:
        raw.close()
