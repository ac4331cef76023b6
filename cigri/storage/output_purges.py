"""Requests to remove a finished campaign's output files on its clusters (`output_purges`): the
API records one, the collector reads the campaign's finished OAR jobs in pages (one row per
(cluster, OAR job), keyset on that pair, so a temporal-grouping batch is never split between two
pages), records how far it got and the counts after each page, and closes the request with the event
that says how it ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, tuple_, update

from cigri.domain.batches import is_sub_job
from cigri.domain.errors import NotFound
from cigri.domain.output_purge import (
    OPEN_STATES,
    OUTPUTS_REMOVAL_FAILED,
    OUTPUTS_REMOVED,
    PurgeState,
    summary,
)
from cigri.domain.states import EventClass, EventState, JobState
from cigri.storage.events import record_event
from cigri.storage.tables import jobs, output_purges, users_mapping


@dataclass(frozen=True, kw_only=True)
class OutputJobs:
    """The OAR jobs of a campaign on one cluster whose output files may be removed."""

    cluster_id: int
    cluster_login: str  # the owner's login there (the grid login on JWT clusters)
    remote_ids: tuple[int, ...]
    # temporal-grouping batches: OAR id → its sub-jobs' cigri ids (each wrote its own files)
    batch_jobs: Mapping[int, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class OutputPurge:
    id: int
    campaign_id: int
    requested_by: str
    state: str
    requested_at: datetime
    finished_at: datetime | None
    last_cluster_id: int
    last_remote_id: int
    removed: int
    missing: int
    errors: tuple[str, ...]


def _purge(r: Row[Any]) -> OutputPurge:
    return OutputPurge(
        id=int(r.id), campaign_id=int(r.campaign_id), requested_by=str(r.requested_by),
        state=str(r.state), requested_at=r.requested_at, finished_at=r.finished_at,
        last_cluster_id=int(r.last_cluster_id), last_remote_id=int(r.last_remote_id),
        removed=int(r.removed), missing=int(r.missing),
        errors=tuple(line for line in str(r.errors or "").split("\n") if line))


def request_purge(conn: Connection, campaign_id: int, *, requested_by: str, now: datetime) -> int:
    """A new request for the campaign, or the one still open (asking twice starts nothing new)."""
    open_id = conn.execute(select(output_purges.c.id).where(
        output_purges.c.campaign_id == campaign_id, output_purges.c.state.in_(OPEN_STATES))
        .order_by(output_purges.c.id).limit(1)).scalar_one_or_none()
    if open_id is not None:
        return int(open_id)
    return int(conn.execute(insert(output_purges).values(
        campaign_id=campaign_id, requested_by=requested_by, state=PurgeState.PENDING.value,
        requested_at=now).returning(output_purges.c.id)).scalar_one())


def get_purge(conn: Connection, purge_id: int, *, campaign_id: int) -> OutputPurge:
    row = conn.execute(select(output_purges).where(
        output_purges.c.id == purge_id, output_purges.c.campaign_id == campaign_id)).first()
    if row is None:
        raise NotFound(f"No output removal request {purge_id} for campaign {campaign_id}")
    return _purge(row)


def list_open_purges(conn: Connection) -> list[OutputPurge]:
    return [_purge(r) for r in conn.execute(select(output_purges).where(
        output_purges.c.state.in_(OPEN_STATES)).order_by(output_purges.c.id))]


def output_jobs_page(conn: Connection, campaign_id: int, *, grid_user: str,
                     after: tuple[int, int], limit: int) -> tuple[list[OutputJobs], tuple[int, int]]:
    """The next `limit` (cluster, OAR job) pairs after `after` of the campaign's finished
    (terminated or event) jobs, as `OutputJobs` per cluster (with the sub-jobs of temporal-grouping
    batches and the owner's cluster login), and the last pair (the next page's `after`)."""
    finished = (jobs.c.campaign_id == campaign_id, jobs.c.remote_id.is_not(None),
                jobs.c.cluster_id.is_not(None),
                jobs.c.state.in_([JobState.TERMINATED.value, JobState.EVENT.value]))
    pair = tuple_(jobs.c.cluster_id, jobs.c.remote_id)
    pairs = [(int(r.cluster_id), int(r.remote_id)) for r in conn.execute(
        select(jobs.c.cluster_id, jobs.c.remote_id).where(*finished, pair > tuple_(*after))
        .group_by(jobs.c.cluster_id, jobs.c.remote_id)
        .order_by(jobs.c.cluster_id, jobs.c.remote_id).limit(limit))]
    if not pairs:
        return [], after
    by_cluster: dict[int, list[int]] = {}
    for cluster_id, remote_id in pairs:
        by_cluster.setdefault(cluster_id, []).append(remote_id)
    sub_jobs: dict[int, dict[int, list[int]]] = {}
    for row in conn.execute(
            select(jobs.c.id, jobs.c.cluster_id, jobs.c.remote_id, jobs.c.tag)
            .where(*finished, pair >= tuple_(*pairs[0]), pair <= tuple_(*pairs[-1]))
            .order_by(jobs.c.cluster_id, jobs.c.remote_id, jobs.c.id)):
        if is_sub_job(row.tag):
            sub_jobs.setdefault(int(row.cluster_id), {}).setdefault(
                int(row.remote_id), []).append(int(row.id))
    logins = {int(r.cluster_id): str(r.cluster_login) for r in conn.execute(
        select(users_mapping.c.cluster_id, users_mapping.c.cluster_login).where(
            users_mapping.c.grid_login == grid_user,
            users_mapping.c.cluster_id.in_(sorted(by_cluster))))}
    found = [OutputJobs(cluster_id=cluster_id,
                        cluster_login=(grid_user if logins.get(cluster_id, "").startswith("Bearer ")
                                       or cluster_id not in logins else logins[cluster_id]),
                        remote_ids=tuple(ids),
                        batch_jobs={remote: tuple(job_ids) for remote, job_ids
                                    in sub_jobs.get(cluster_id, {}).items()})
             for cluster_id, ids in by_cluster.items()]
    return found, pairs[-1]


def record_progress(conn: Connection, purge: OutputPurge, *, after: tuple[int, int],
                    removed: int, missing: int, errors: list[str]) -> OutputPurge:
    """Add one page's counts and errors to the request and move its cursor past the page."""
    all_errors = (*purge.errors, *errors)
    conn.execute(update(output_purges).where(output_purges.c.id == purge.id).values(
        state=PurgeState.RUNNING.value, last_cluster_id=after[0], last_remote_id=after[1],
        removed=output_purges.c.removed + removed, missing=output_purges.c.missing + missing,
        errors="\n".join(all_errors)))
    return OutputPurge(**{**purge.__dict__, "state": PurgeState.RUNNING.value,
                          "last_cluster_id": after[0], "last_remote_id": after[1],
                          "removed": purge.removed + removed,
                          "missing": purge.missing + missing, "errors": all_errors})


def finish_purge(conn: Connection, purge: OutputPurge, *, now: datetime) -> str:
    """Close a request (`done`, or `failed` when a cluster refused) with the one event that says
    how it ended; returns that event's message."""
    message = summary(purge.campaign_id, removed=purge.removed, missing=purge.missing,
                      errors=purge.errors)
    failed = bool(purge.errors)
    conn.execute(update(output_purges).where(output_purges.c.id == purge.id)
                 .values(state=(PurgeState.FAILED if failed else PurgeState.DONE).value,
                         finished_at=now))
    record_event(conn, class_=EventClass.NOTIFY, campaign_id=purge.campaign_id,
                 code=OUTPUTS_REMOVAL_FAILED if failed else OUTPUTS_REMOVED,
                 message=message, state=EventState.CLOSED, now=now, checked=True)
    return message
