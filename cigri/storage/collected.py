"""Collected output files (`collected_files`): what the collector must fetch, has fetched (with its
size) or found missing, so a collector killed mid-way resumes where it stopped.

Owns the rows only; fetching is the collector daemon's, paths are `cigri.domain.collection`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, select, update

from cigri.domain.collection import FileState, FinishedJob
from cigri.domain.states import JobState
from cigri.storage.submissions import oar_job_name
from cigri.storage.tables import (
    campaign_properties,
    campaigns,
    collected_files,
    jobs,
    parameters,
    submissions,
)


@dataclass(frozen=True, kw_only=True)
class CollectedFile:
    id: int
    campaign_id: int
    job_id: int
    remote_path: str
    local_path: str | None
    size: int | None
    state: str
    attempts: int
    message: str | None = None  # why it is missing or failed


def _file_from_row(row: Any) -> CollectedFile:
    return CollectedFile(id=row.id, campaign_id=row.campaign_id, job_id=row.job_id,
                         remote_path=row.remote_path, local_path=row.local_path, size=row.size,
                         state=row.state, attempts=row.attempts, message=row.message)


def list_gathering_campaigns(conn: Connection) -> list[int]:
    """Unpurged campaigns with an `output_gathering_method` other than None on some cluster."""
    rows = conn.execute(select(campaign_properties.c.campaign_id).where(
        campaign_properties.c.name == "output_gathering_method",
        func.lower(campaign_properties.c.value).in_(["collector", "media", "scp", "rsync"]),
    ).distinct().order_by(campaign_properties.c.campaign_id))
    return [int(row.campaign_id) for row in rows]


def list_uncollected_jobs(conn: Connection, campaign_id: int, *, limit: int) -> list[FinishedJob]:
    """Terminated task jobs of the campaign with no `collected_files` row yet."""
    has_rows = exists().where(collected_files.c.job_id == jobs.c.id)
    rows = conn.execute(
        select(jobs.c.id, jobs.c.campaign_id, jobs.c.cluster_id, jobs.c.remote_id,
               jobs.c.param_id, parameters.c.name.label("task_name"), jobs.c.tag,
               submissions.c.key)
        .select_from(jobs.outerjoin(parameters, parameters.c.id == jobs.c.param_id)
                     .outerjoin(submissions, submissions.c.id == jobs.c.submission_id))
        .where(jobs.c.campaign_id == campaign_id, jobs.c.state == JobState.TERMINATED.value,
               jobs.c.param_id.is_not(None), jobs.c.cluster_id.is_not(None), ~has_rows)
        .order_by(jobs.c.id).limit(limit))
    return [FinishedJob(id=r.id, campaign_id=r.campaign_id, cluster_id=r.cluster_id,
                        remote_id=r.remote_id, param_id=r.param_id, task_name=r.task_name,
                        tag=r.tag, oar_name=None if r.key is None else
                        oar_job_name(campaign_id=r.campaign_id, key=r.key))
            for r in rows]


def record_pending_files(conn: Connection, rows: Sequence[tuple[int, int, str, str]], *,
                         refused: str | None = None) -> None:
    """(campaign id, job id, remote path, local path) rows to fetch; with `refused`, rows that
    will not be fetched (`failed` with that message: the destination is not allowed)."""
    if rows:
        conn.execute(insert(collected_files), [
            {"campaign_id": c, "job_id": j, "remote_path": r, "local_path": local,
             "state": FileState.PENDING.value if refused is None else FileState.FAILED.value,
             "message": None if refused is None else refused[:2000], "attempts": 0}
            for c, j, r, local in rows])


def campaign_owner(conn: Connection, campaign_id: int) -> str:
    """The grid user owning the campaign (its results are theirs)."""
    return str(conn.execute(select(campaigns.c.grid_user)
                            .where(campaigns.c.id == campaign_id)).scalar_one())


def list_pending_files(conn: Connection, *, limit: int, max_attempts: int
                       ) -> list[tuple[CollectedFile, int, int | None, str]]:
    """Pending files with their job's cluster, OAR id and owner, oldest first."""
    rows = conn.execute(
        select(collected_files, jobs.c.cluster_id, jobs.c.remote_id,
               campaigns.c.grid_user)
        .select_from(collected_files.join(jobs, jobs.c.id == collected_files.c.job_id)
                     .join(campaigns, campaigns.c.id == collected_files.c.campaign_id))
        .where(collected_files.c.state == FileState.PENDING.value,
               collected_files.c.attempts < max_attempts)
        .order_by(collected_files.c.id).limit(limit))
    return [(_file_from_row(r), int(r.cluster_id), r.remote_id, str(r.grid_user)) for r in rows]


def mark_collected(conn: Connection, file_id: int, *, size: int, now: datetime) -> None:
    conn.execute(update(collected_files).where(collected_files.c.id == file_id).values(
        state=FileState.COLLECTED.value, size=size, collected_at=now, message=None,
        attempts=collected_files.c.attempts + 1))


def mark_missing(conn: Connection, file_id: int, *, message: str) -> None:
    conn.execute(update(collected_files).where(collected_files.c.id == file_id).values(
        state=FileState.MISSING.value, message=message[:2000],
        attempts=collected_files.c.attempts + 1))


def mark_attempt_failed(conn: Connection, file_id: int, *, message: str, give_up: bool) -> None:
    conn.execute(update(collected_files).where(collected_files.c.id == file_id).values(
        state=(FileState.FAILED if give_up else FileState.PENDING).value,
        message=message[:2000], attempts=collected_files.c.attempts + 1))


def list_collected_files(conn: Connection, campaign_id: int) -> list[CollectedFile]:
    return [_file_from_row(r) for r in conn.execute(
        select(collected_files).where(collected_files.c.campaign_id == campaign_id)
        .order_by(collected_files.c.id))]


def collection_summary(conn: Connection, campaign_id: int) -> dict[str, int]:
    """Files per state, and bytes collected (`gridstat` shows it): {"collected": n, ...,
    "bytes": total}."""
    rows = conn.execute(
        select(collected_files.c.state, func.count(), func.coalesce(func.sum(collected_files.c.size), 0))
        .where(collected_files.c.campaign_id == campaign_id).group_by(collected_files.c.state))
    summary: dict[str, int] = {**{state.value: 0 for state in FileState}, "bytes": 0}
    for state, count, size in rows:
        summary[state] = int(count)
        if state == FileState.COLLECTED.value:
            summary["bytes"] = int(size)
    return summary


def list_collected_to_verify(conn: Connection, campaign_id: int) -> list[CollectedFile]:
    """Collected files of a campaign (the collector re-checks their local size on start)."""
    return [_file_from_row(r) for r in conn.execute(
        select(collected_files).where(and_(collected_files.c.campaign_id == campaign_id,
                                           collected_files.c.state == FileState.COLLECTED.value)))]


def reset_to_pending(conn: Connection, file_ids: Sequence[int]) -> None:
    if file_ids:
        conn.execute(update(collected_files).where(collected_files.c.id.in_(list(file_ids)))
                     .values(state=FileState.PENDING.value, size=None, collected_at=None))
