"""Epilogue sites: the clusters where a campaign defines an epilogue, with what decides whether it
still has to run there (`cigri.domain.campaigns.next_epilogue_step`).

Read by the meta-scheduler (which epilogue jobs to create or withdraw) and by campaign completion
(`cigri.storage.jobs`, which campaigns may terminate and which epilogues they skip). Owns the
withdrawal of a prologue or epilogue job no runner took and none ever will (or that no longer
serves). Creating them is `cigri.storage.queue.create_tagged_job`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, or_, select, tuple_

from cigri.domain.campaigns import EpilogueSite
from cigri.domain.events import BLACKLIST
from cigri.domain.jobs import EPILOGUE, PROLOGUE
from cigri.domain.states import ACTIVE_JOB_STATES, EventState, JobState
from cigri.storage.tables import campaign_properties, clusters, events, jobs

_IN_FLIGHT = frozenset(ACTIVE_JOB_STATES) - {JobState.TO_LAUNCH}


def list_epilogue_sites(conn: Connection, campaign_ids: Iterable[int]) -> list[EpilogueSite]:
    """Every (campaign, cluster) of these campaigns with a non-empty `epilogue` property."""
    ids = sorted(set(campaign_ids))
    if not ids:
        return []
    # An EXISTS per site stops at the first job, even in a million-job campaign.
    worked = exists().where(
        jobs.c.campaign_id == campaign_properties.c.campaign_id,
        jobs.c.cluster_id == campaign_properties.c.cluster_id,
        or_(jobs.c.param_id.is_not(None),
            and_(jobs.c.tag == PROLOGUE, jobs.c.state == JobState.TERMINATED.value)))
    defined = conn.execute(
        select(campaign_properties.c.campaign_id, campaign_properties.c.cluster_id,
               clusters.c.name, clusters.c.enabled, worked.label("has_worked"))
        .join(clusters, clusters.c.id == campaign_properties.c.cluster_id)
        .where(campaign_properties.c.campaign_id.in_(ids),
               campaign_properties.c.name == "epilogue",
               func.trim(campaign_properties.c.value) != "")
        .order_by(campaign_properties.c.campaign_id, campaign_properties.c.cluster_id)).all()
    if not defined:
        return []
    states = _epilogue_states(conn, ids)
    blacklists = _blacklists(conn, ids, {int(row.cluster_id) for row in defined})
    sites = []
    for row in defined:
        key = (int(row.campaign_id), int(row.cluster_id))
        found = states.get(key, set())
        holding = [(since, lasting) for campaign, cluster, since, lasting in blacklists
                   if cluster == key[1] and campaign in (None, key[0])]
        lasting_since = [since for since, lasting in holding if lasting and since is not None]
        sites.append(EpilogueSite(
            campaign_id=key[0], cluster_id=key[1], cluster_name=str(row.name),
            has_worked=bool(row.has_worked), has_terminated=JobState.TERMINATED in found,
            is_in_flight=bool(found & _IN_FLIGHT), is_to_launch=JobState.TO_LAUNCH in found,
            is_enabled=bool(row.enabled), is_blacklisted=bool(holding),
            blocked_since=min(lasting_since) if lasting_since else None))
    return sites


def _epilogue_states(conn: Connection, ids: list[int]) -> dict[tuple[int, int], set[JobState]]:
    rows = conn.execute(
        select(jobs.c.campaign_id, jobs.c.cluster_id, jobs.c.state).distinct()
        .where(jobs.c.campaign_id.in_(ids), jobs.c.tag == EPILOGUE,
               jobs.c.cluster_id.is_not(None)))
    found: dict[tuple[int, int], set[JobState]] = {}
    for campaign_id, cluster_id, state in rows:
        found.setdefault((int(campaign_id), int(cluster_id)), set()).add(JobState(state))
    return found


def _blacklists(conn: Connection, ids: list[int], cluster_ids: Collection[int]
                ) -> list[tuple[int | None, int, datetime | None, bool]]:
    """(campaign or None for the whole cluster, cluster, opened at, lasting) of the open
    BLACKLISTs on these clusters that concern these campaigns. *Lasting*: its cause is still open
    (or it has none, an admin's); one whose cause is closed is lifted at the updater's next pass."""
    cause = events.alias("cause")
    rows = conn.execute(
        select(events.c.campaign_id, events.c.cluster_id, events.c.date_open,
               cause.c.id.label("cause_id"), cause.c.state.label("cause_state"))
        .outerjoin(cause, cause.c.id == events.c.parent)
        .where(events.c.code == BLACKLIST, events.c.state == EventState.OPEN.value,
               events.c.cluster_id.in_(sorted(cluster_ids)),
               or_(events.c.campaign_id.is_(None), events.c.campaign_id.in_(ids))))
    return [(None if row.campaign_id is None else int(row.campaign_id), int(row.cluster_id),
             row.date_open, row.cause_id is None or row.cause_state == EventState.OPEN.value)
            for row in rows]


def withdraw_untaken_jobs(conn: Connection, couples: Collection[tuple[int, int]], *,
                          tag: str) -> int:
    """Delete the prologue or epilogue (`tag`) jobs still `to_launch` (no runner took them) of
    these (campaign, cluster) couples; a job a runner took meanwhile is left alone. Returns how
    many went."""
    if not couples:
        return 0
    pairs: list[Any] = sorted(couples)
    return int(conn.execute(delete(jobs).where(
        jobs.c.tag == tag, jobs.c.state == JobState.TO_LAUNCH.value,
        tuple_(jobs.c.campaign_id, jobs.c.cluster_id).in_(pairs))).rowcount)
