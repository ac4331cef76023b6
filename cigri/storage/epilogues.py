"""Epilogue sites: the clusters where a campaign defines an epilogue, with what decides whether it
still has to run there (`cigri.domain.campaigns.next_epilogue_step`).

Read by the meta-scheduler (which epilogue jobs to create or withdraw) and by campaign completion
(`cigri.storage.jobs`, which campaigns may terminate and which epilogues they skip). Owns the
withdrawal of a prologue or epilogue job no runner took and none ever will (or that no longer
serves). Creating them is `cigri.storage.queue.create_tagged_job`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, func, or_, select, tuple_

from cigri.domain.campaigns import EpilogueSite
from cigri.domain.events import BLACKLIST
from cigri.domain.jobs import EPILOGUE, PROLOGUE
from cigri.domain.states import ACTIVE_JOB_STATES, EventState, JobState
from cigri.storage.tables import (
    campaign_cluster_job_stats,
    campaign_properties,
    clusters,
    events,
    jobs,
)

_IN_FLIGHT = frozenset(ACTIVE_JOB_STATES) - {JobState.TO_LAUNCH}
_UNTERMINATED = sorted(state.value for state in JobState if state != JobState.TERMINATED)


def list_epilogue_sites(conn: Connection, campaign_ids: Iterable[int]) -> list[EpilogueSite]:
    """Every (campaign, cluster) of these campaigns with a non-empty `epilogue` property."""
    ids = sorted(set(campaign_ids))
    if not ids:
        return []
    defined = conn.execute(
        select(campaign_properties.c.campaign_id, campaign_properties.c.cluster_id,
               clusters.c.name, clusters.c.enabled)
        .join(clusters, clusters.c.id == campaign_properties.c.cluster_id)
        .where(campaign_properties.c.campaign_id.in_(ids),
               campaign_properties.c.name == "epilogue",
               func.trim(campaign_properties.c.value) != "")
        .order_by(campaign_properties.c.campaign_id, campaign_properties.c.cluster_id)).all()
    if not defined:
        return []
    tagged = _tagged_job_states(conn, ids)
    worked = _worked_sites(conn, {(int(row.campaign_id), int(row.cluster_id)) for row in defined},
                           tagged)
    blacklists = _blacklists(conn, ids, {int(row.cluster_id) for row in defined})
    sites = []
    for row in defined:
        key = (int(row.campaign_id), int(row.cluster_id))
        found = tagged.get((*key, EPILOGUE), set())
        holding = [(since, lasting) for campaign, cluster, since, lasting in blacklists
                   if cluster == key[1] and campaign in (None, key[0])]
        lasting_since = [since for since, lasting in holding if lasting and since is not None]
        sites.append(EpilogueSite(
            campaign_id=key[0], cluster_id=key[1], cluster_name=str(row.name),
            has_worked=key in worked, has_terminated=JobState.TERMINATED in found,
            is_in_flight=bool(found & _IN_FLIGHT), is_to_launch=JobState.TO_LAUNCH in found,
            is_enabled=bool(row.enabled), is_blacklisted=bool(holding),
            blocked_since=min(lasting_since) if lasting_since else None))
    return sites


def _tagged_job_states(conn: Connection, ids: list[int]
                       ) -> dict[tuple[int, int, str], set[JobState]]:
    """The states of the prologue and epilogue jobs per (campaign, cluster, tag), read through
    `ix_jobs_campaign_cluster_tag` (partial on `param_id IS NULL`, which the query repeats)."""
    rows = conn.execute(
        select(jobs.c.campaign_id, jobs.c.cluster_id, jobs.c.tag, jobs.c.state).distinct()
        .where(jobs.c.campaign_id.in_(ids), jobs.c.cluster_id.is_not(None),
               jobs.c.tag.in_((PROLOGUE, EPILOGUE)), jobs.c.param_id.is_(None)))
    found: dict[tuple[int, int, str], set[JobState]] = {}
    for campaign_id, cluster_id, tag, state in rows:
        found.setdefault((int(campaign_id), int(cluster_id), str(tag)), set()).add(JobState(state))
    return found


def _worked_sites(conn: Connection, sites: set[tuple[int, int]],
                  tagged: Mapping[tuple[int, int, str], set[JobState]]) -> set[tuple[int, int]]:
    """The (campaign, cluster) sites where a task job of the campaign went, or a prologue
    terminated.

    A cluster where the campaign never ran has no task job to stop an EXISTS early: over a
    million-job campaign that probe read every job (about 230 ms at each pass while the campaign
    waits for its epilogue). On PostgreSQL the trigger-maintained sums say where tasks terminated;
    what they cannot say (a task job that went there and never terminated) is probed among the
    campaign's other states only, through `ix_jobs_campaign_state`: the failed and active jobs,
    few in a finished campaign. SQLite, without the sums, probes every state."""
    worked = {site for site in sites if JobState.TERMINATED in tagged.get((*site, PROLOGUE), ())}
    states = None
    if conn.dialect.name == "postgresql":
        sums = campaign_cluster_job_stats
        pairs: list[Any] = sorted(sites - worked)
        if pairs:
            terminated_there = conn.execute(
                select(sums.c.campaign_id, sums.c.cluster_id)
                .where(tuple_(sums.c.campaign_id, sums.c.cluster_id).in_(pairs),
                       sums.c.terminated > 0))
            worked |= {(int(campaign), int(cluster)) for campaign, cluster in terminated_there}
        states = _UNTERMINATED
    for campaign_id, cluster_id in sorted(sites - worked):
        probe = exists().where(jobs.c.campaign_id == campaign_id, jobs.c.cluster_id == cluster_id,
                               jobs.c.param_id.is_not(None))
        if states is not None:
            probe = probe.where(jobs.c.state.in_(states))
        if conn.execute(select(probe)).scalar():
            worked.add((campaign_id, cluster_id))
    return worked


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
