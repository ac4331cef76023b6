"""Read models only the web dashboard needs, and its generated session key.

Owns: the `site_secrets` rows (insert if absent, read back: every API process gets the same key);
a task's history (every job it had with its times, and the events of those jobs); capped counts
of open events per campaign (a campaign with a million failures costs `cap` index entries, never
a full count). Everything else the dashboard shows comes from the same storage functions as the
JSON API (`queries`, `stats`, `actions`, `tokens`, `subscriptions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, and_, func, insert, select, true
from sqlalchemy.exc import IntegrityError

from cigri.domain.errors import NotFound
from cigri.domain.states import EventClass, EventState, JobState
from cigri.storage.tables import (
    api_tokens,
    campaign_cluster_throughput,
    campaigns,
    clusters,
    events,
    jobs,
    parameters,
    site_secrets,
)

MAX_TASK_JOBS: Final = 1000
MAX_TASK_EVENTS: Final = 1000


def site_secret(conn: Connection, name: str, *, generate: str, now: datetime) -> str:
    """The secret `name`, stored as `generate` by whoever asked first."""
    found = conn.execute(select(site_secrets.c.value)
                         .where(site_secrets.c.name == name)).scalar_one_or_none()
    if found is not None:
        return str(found)
    try:
        with conn.begin_nested():
            conn.execute(insert(site_secrets).values(name=name, value=generate, created_at=now))
    except IntegrityError:
        pass  # another process stored it first: use theirs
    return str(conn.execute(select(site_secrets.c.value)
                            .where(site_secrets.c.name == name)).scalar_one())


def open_event_counts(conn: Connection, campaign_ids: Sequence[int], *, cap: int = 100
                      ) -> dict[int, int]:
    """Open job and campaign events per campaign, each count stopping at `cap` (so `cap` reads
    "cap or more"); through `ix_events_campaign_state`."""
    open_job_events = and_(events.c.state == EventState.OPEN.value,
                           events.c.class_.in_([EventClass.JOB.value, EventClass.CAMPAIGN.value]))
    if conn.dialect.name == "postgresql" and campaign_ids:
        # One statement: per campaign, a LATERAL read of at most `cap` index entries.
        capped = (select(events.c.id).where(events.c.campaign_id == campaigns.c.id,
                                            open_job_events)
                  .limit(cap).lateral("capped"))
        rows = conn.execute(
            select(campaigns.c.id, func.count(capped.c.id))
            .select_from(campaigns.outerjoin(capped, true()))
            .where(campaigns.c.id.in_(list(campaign_ids))).group_by(campaigns.c.id))
        return {int(campaign_id): int(count) for campaign_id, count in rows}
    found = {}
    for campaign_id in campaign_ids:
        one = (select(events.c.id).where(events.c.campaign_id == campaign_id, open_job_events)
               .limit(cap).subquery())
        found[campaign_id] = int(conn.execute(select(func.count()).select_from(one)).scalar_one())
    return found


@dataclass(frozen=True, kw_only=True)
class TaskJob:
    id: int
    cluster_name: str | None
    remote_id: int | None
    state: str
    return_code: int | None
    submission_time: datetime | None
    start_time: datetime | None
    stop_time: datetime | None
    node_name: str | None
    attempt: int
    tag: str | None
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class TaskHistory:
    id: int
    name: str
    parameters: str
    jobs: list[TaskJob]


def task_history(conn: Connection, campaign_id: int, param_id: int) -> TaskHistory:
    """A task with every job it had (oldest first), each with its events; raises NotFound."""
    row = conn.execute(select(parameters.c.id, parameters.c.name, parameters.c.param)
                       .where(parameters.c.id == param_id,
                              parameters.c.campaign_id == campaign_id)).one_or_none()
    if row is None:
        raise NotFound(f"Task {param_id} of campaign {campaign_id} not found")
    rows = conn.execute(
        select(jobs, clusters.c.name.label("cluster_name"))
        .outerjoin(clusters, clusters.c.id == jobs.c.cluster_id)
        .where(jobs.c.param_id == param_id).order_by(jobs.c.id).limit(MAX_TASK_JOBS)).all()
    by_job: dict[int, list[dict[str, Any]]] = {r.id: [] for r in rows}
    if by_job:
        for event in conn.execute(
                select(events).where(events.c.job_id.in_(list(by_job)))
                .order_by(events.c.id).limit(MAX_TASK_EVENTS)):
            by_job[event.job_id].append(dict(event._mapping))
    return TaskHistory(id=row.id, name=row.name, parameters=row.param, jobs=[
        TaskJob(id=r.id, cluster_name=r.cluster_name, remote_id=r.remote_id, state=r.state,
                return_code=r.return_code, submission_time=r.submission_time,
                start_time=r.start_time, stop_time=r.stop_time, node_name=r.node_name,
                attempt=r.attempt, tag=r.tag, events=by_job[r.id])
        for r in rows])


def token_id(conn: Connection, clear: str) -> int | None:
    """The id of the API token `clear` (to keep in a session, never the token itself)."""
    from cigri.storage.tokens import hash_token

    found = conn.execute(select(api_tokens.c.id)
                         .where(api_tokens.c.token_hash == hash_token(clear))).scalar_one_or_none()
    return None if found is None else int(found)


def live_token_user(conn: Connection, token: int, *, now: datetime) -> str | None:
    """The owner of API token `token` while it is neither revoked nor expired, else None."""
    row = conn.execute(select(api_tokens.c.grid_user, api_tokens.c.revoked_at,
                              api_tokens.c.expires_at)
                       .where(api_tokens.c.id == token)).one_or_none()
    if row is None or row.revoked_at is not None or (row.expires_at is not None
                                                     and row.expires_at <= now):
        return None
    return str(row.grid_user)


def throughput_minutes(conn: Connection, campaign_id: int, *, since: datetime
                       ) -> dict[datetime, int]:
    """Tasks of the campaign that terminated in each minute since `since` (UTC minute starts;
    minutes with none are absent). PostgreSQL reads the trigger-kept per-minute rows (at most
    one per cluster and minute); SQLite groups the campaign's recent terminated jobs."""
    if conn.dialect.name == "postgresql":
        table = campaign_cluster_throughput
        rows = conn.execute(
            select(table.c.minute, func.sum(table.c.terminated))
            .where(table.c.campaign_id == campaign_id, table.c.minute >= since)
            .group_by(table.c.minute))
        return {minute.astimezone(UTC): int(count) for minute, count in rows}
    minute = func.strftime("%Y-%m-%d %H:%M", jobs.c.stop_time)
    rows = conn.execute(
        select(minute, func.count())
        .where(jobs.c.campaign_id == campaign_id, jobs.c.state == JobState.TERMINATED.value,
               jobs.c.param_id.is_not(None), jobs.c.stop_time >= since)
        .group_by(minute))
    return {datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC): int(count)
            for text, count in rows if text}


@dataclass(frozen=True, kw_only=True)
class Candidates:
    """Task ids that may match a filter, in id order, and where the next search starts (None:
    the campaign has no more tasks to look at)."""

    ids: list[int]
    next_after: int | None


def tasks_with_text(conn: Connection, campaign_id: int, text: str, *, after: int, limit: int,
                    window: int) -> Candidates:
    """Tasks after `after` whose parameter line contains `text`, looking at `window` tasks at
    most (a keyset range of `parameters`, so the cost is bounded whatever the campaign's size)."""
    scanned = (select(parameters.c.id, parameters.c.param)
               .where(parameters.c.campaign_id == campaign_id, parameters.c.id > after)
               .order_by(parameters.c.id).limit(window).subquery("scanned"))
    ids = [int(i) for i in conn.execute(
        select(scanned.c.id).where(scanned.c.param.contains(text, autoescape=True))
        .order_by(scanned.c.id).limit(limit)).scalars()]
    if len(ids) == limit:
        return Candidates(ids=ids, next_after=ids[-1])
    last, seen = conn.execute(select(func.max(scanned.c.id), func.count())).one()
    return Candidates(ids=ids, next_after=int(last) if seen == window else None)


def tasks_with_job_state(conn: Connection, campaign_id: int, state: str, *, after: int,
                         limit: int) -> Candidates:
    """Tasks after `after` with a job in `state`, one of the active states (few: bounded by the
    runners' taps), through `ix_jobs_campaign_state`. Whether that job is still the task's
    latest is for `queries.list_tasks` to say."""
    ids = [int(i) for i in conn.execute(
        select(jobs.c.param_id).where(jobs.c.campaign_id == campaign_id, jobs.c.state == state,
                                      jobs.c.param_id > after)
        .group_by(jobs.c.param_id).order_by(jobs.c.param_id).limit(limit)).scalars()]
    return Candidates(ids=ids, next_after=ids[-1] if len(ids) == limit else None)
