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
            has_worked=_has_worked(conn, *key), has_terminated=JobState.TERMINATED in found,
            is_in_flight=bool(found & _IN_FLIGHT), is_to_launch=JobState.TO_LAUNCH in found,
            is_enabled=bool(row.enabled), is_blacklisted=bool(holding),
            blocked_since=min(lasting_since) if lasting_since else None))
    return sites


def _epilogue_states(conn: Connection, ids: list[int]) -> dict[tuple[int, int], set[JobState]]:
    """The states of the epilogue jobs per (campaign, cluster), read through
    `ix_jobs_campaign_cluster_tag` (partial on `param_id IS NULL`, which the query repeats)."""
    rows = conn.execute(
        select(jobs.c.campaign_id, jobs.c.cluster_id, jobs.c.state).distinct()
        .where(jobs.c.campaign_id.in_(ids), jobs.c.tag == EPILOGUE,
               jobs.c.cluster_id.is_not(None), jobs.c.param_id.is_(None)))
    found: dict[tuple[int, int], set[JobState]] = {}
    for campaign_id, cluster_id, state in rows:
        found.setdefault((int(campaign_id), int(cluster_id)), set()).add(JobState(state))
    return found


def _has_worked(conn: Connection, campaign_id: int, cluster_id: int) -> bool:
    """Whether a task job of the campaign went to the cluster, or a prologue terminated there.

    A cluster where the campaign never ran has no task job to stop an EXISTS early: over a
    million-job campaign that probe read every job (a few hundred ms at each pass while the
    campaign waits for its epilogue). On PostgreSQL the trigger-maintained sums say whether tasks
    terminated there; what they cannot say (a task job that went there and never terminated) is
    probed among the campaign's other states only, the failed and active jobs, few in a finished
    campaign. SQLite, without the sums, probes every state. One statement per site: the sums and
    the jobs are read in one snapshot, so a job terminating meanwhile is seen by one of them."""
    here = (jobs.c.campaign_id == campaign_id, jobs.c.cluster_id == cluster_id)
    prologue = exists().where(*here, jobs.c.param_id.is_(None), jobs.c.tag == PROLOGUE,
                              jobs.c.state == JobState.TERMINATED.value)
    tasks: Any = exists().where(*here, jobs.c.param_id.is_not(None))
    if conn.dialect.name == "postgresql":
        sums = campaign_cluster_job_stats
        terminated = exists().where(sums.c.campaign_id == campaign_id,
                                    sums.c.cluster_id == cluster_id, sums.c.terminated > 0)
        tasks = or_(terminated, tasks.where(jobs.c.state.in_(_UNTERMINATED)))
    return bool(conn.execute(select(or_(prologue, tasks))).scalar())


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
