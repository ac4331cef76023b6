"""Crash-safe submissions: intents recorded before calling OAR, and what the runner reads to build
a submission (campaign context, taps).

Owns `submissions` (one row per OAR submission: a random key carried in the OAR job name, the
cluster, the campaign, the state `intent` → `submitted` | `uncertain` → `adopted` | `abandoned`, or
`failed`) and the runner's reads and writes of `taps` (state, rate, close date). Does not own
`jobs` (see `cigri.storage.jobs`), nor the creation of taps (`cigri.storage.queue.ensure_taps`,
used by the meta-scheduler and here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, and_, bindparam, exists, insert, or_, select, update

from cigri.domain.jobs import LaunchContext
from cigri.domain.states import JobState, TapState
from cigri.domain.tap import Tap, TapSettings
from cigri.storage.queue import ensure_taps
from cigri.storage.tables import (
    campaign_properties,
    campaigns,
    jobs,
    jobs_to_launch,
    submissions,
    taps,
    users_mapping,
)

log = logging.getLogger(__name__)

INTENT: Final = "intent"  # recorded, OAR not (yet) called
SUBMITTED: Final = "submitted"  # OAR answered, remote ids recorded
UNCERTAIN: Final = "uncertain"  # the call failed without an answer: OAR may or may not have it
ADOPTED: Final = "adopted"  # reconciled: OAR had it, remote ids recorded
ABANDONED: Final = "abandoned"  # reconciled: OAR did not have it, tasks back in the bag
FAILED: Final = "failed"  # OAR refused it


@dataclass(frozen=True, kw_only=True)
class SubmissionRecord:
    id: int
    key: str
    cluster_id: int
    campaign_id: int
    state: str
    nb_jobs: int
    created_at: datetime
    remote_array_id: int | None = None


def oar_job_name(*, campaign_id: int, key: str) -> str:
    """The OAR job name of a submission: v3's `cigri.<campaign id>` plus the submission key."""
    return f"cigri.{campaign_id}.{key}"


def _from_row(row: Any) -> SubmissionRecord:
    return SubmissionRecord(id=row.id, key=row.key, cluster_id=row.cluster_id,
                            campaign_id=row.campaign_id, state=row.state, nb_jobs=row.nb_jobs,
                            created_at=row.created_at, remote_array_id=row.remote_array_id)


def record_intent(conn: Connection, *, key: str, cluster_id: int, campaign_id: int, nb_jobs: int,
                  now: datetime) -> int:
    """Insert the intent of a submission; the caller commits before calling OAR."""
    return int(conn.execute(
        insert(submissions).values(key=key, cluster_id=cluster_id, campaign_id=campaign_id,
                                   state=INTENT, nb_jobs=nb_jobs, created_at=now, updated_at=now)
        .returning(submissions.c.id)
    ).scalar_one())


def set_nb_jobs(conn: Connection, submission_id: int, nb_jobs: int) -> None:
    conn.execute(update(submissions).where(submissions.c.id == submission_id)
                 .values(nb_jobs=nb_jobs))


def mark_submission(conn: Connection, submission_id: int, *, expected: tuple[str, ...], state: str,
                    now: datetime, remote_array_id: int | None = None,
                    message: str | None = None) -> bool:
    """Move a submission to `state` if it is still in one of `expected` (state-guarded)."""
    values: dict[str, Any] = {"state": state, "updated_at": now}
    if remote_array_id is not None:
        values["remote_array_id"] = remote_array_id
    if message is not None:
        values["message"] = message[:4000]
    result = conn.execute(update(submissions).where(
        submissions.c.id == submission_id, submissions.c.state.in_(expected)).values(**values))
    return result.rowcount == 1


# Run by every runner at every pass: built once (bound parameters), not rebuilt and re-keyed.
_RECONCILABLE = and_(
    submissions.c.cluster_id == bindparam("cluster_id"),
    or_(submissions.c.state == UNCERTAIN,
        and_(submissions.c.state == INTENT,
             submissions.c.created_at < bindparam("intent_before"))))
_TO_RECONCILE = (select(submissions).where(_RECONCILABLE)
                 .order_by(submissions.c.id).limit(bindparam("limit")))
_TAPS = select(taps).where(taps.c.cluster_id == bindparam("cluster_id"),
                           taps.c.campaign_id.in_(bindparam("campaign_ids", expanding=True)))
_SAVE_TAP = (update(taps).where(taps.c.cluster_id == bindparam("tap_cluster_id"),
                                taps.c.campaign_id == bindparam("tap_campaign_id"))
             .values(state=bindparam("tap_state"), rate=bindparam("tap_rate"),
                     close_date=bindparam("tap_close_date")))


# What a runner pass may have to do on a cluster, in one round trip (four index probes).
_RUNNER_WORK = select(
    exists().where(_RECONCILABLE).label("to_reconcile"),
    exists().where(jobs_to_launch.c.cluster_id == bindparam("cluster_id")).label("queued"),
    exists().where(jobs.c.cluster_id == bindparam("cluster_id"),
                   jobs.c.state == JobState.REMOTE_WAITING.value).label("waiting"),
    exists().where(jobs.c.cluster_id == bindparam("cluster_id"),
                   jobs.c.state == JobState.TO_LAUNCH.value).label("to_launch"))


@dataclass(frozen=True, kw_only=True)
class RunnerWork:
    """What a runner pass may have to do on a cluster; all False: nothing at all."""

    to_reconcile: bool  # a submission of `list_submissions_to_reconcile`
    queued: bool  # a queue row for the cluster
    waiting: bool  # a job remote_waiting there (it closes its campaign's tap)
    to_launch: bool  # a job created for the cluster and never submitted


def find_runner_work(conn: Connection, *, cluster_id: int, intent_before: datetime) -> RunnerWork:
    """Which of the runner's reads can find anything this pass (so an idle pass skips them)."""
    row = conn.execute(_RUNNER_WORK, {"cluster_id": cluster_id,
                                      "intent_before": intent_before}).one()
    return RunnerWork(to_reconcile=bool(row.to_reconcile), queued=bool(row.queued),
                      waiting=bool(row.waiting), to_launch=bool(row.to_launch))


def list_submissions_to_reconcile(conn: Connection, *, cluster_id: int, intent_before: datetime,
                                  limit: int = 50) -> list[SubmissionRecord]:
    """Submissions whose fate on OAR is unknown: intents older than a lease (their runner died
    between commit and record) and `uncertain` ones (the call failed without an answer)."""
    rows = conn.execute(_TO_RECONCILE, {"cluster_id": cluster_id, "intent_before": intent_before,
                                        "limit": limit})
    return [_from_row(row) for row in rows]


def get_submission(conn: Connection, submission_id: int) -> SubmissionRecord:
    return _from_row(conn.execute(
        select(submissions).where(submissions.c.id == submission_id)).one())


def get_launch_context(conn: Connection, *, campaign_id: int, cluster_id: int) -> LaunchContext:
    """Campaign owner, state and properties on the cluster (cluster rows over campaign-wide ones),
    and the login the owner has on the cluster (`users_mapping`, else the grid login)."""
    campaign = conn.execute(select(campaigns.c.grid_user, campaigns.c.state)
                            .where(campaigns.c.id == campaign_id)).one()
    props: dict[str, str] = {}
    rows = conn.execute(
        select(campaign_properties.c.cluster_id, campaign_properties.c.name,
               campaign_properties.c.value)
        .where(campaign_properties.c.campaign_id == campaign_id,
               or_(campaign_properties.c.cluster_id == cluster_id,
                   campaign_properties.c.cluster_id.is_(None)))
        .order_by(campaign_properties.c.cluster_id.is_not(None), campaign_properties.c.id)
    )
    for row in rows:
        props[row.name] = row.value
    login = conn.execute(select(users_mapping.c.cluster_login).where(
        users_mapping.c.grid_login == campaign.grid_user,
        users_mapping.c.cluster_id == cluster_id)).scalar_one_or_none()
    return LaunchContext(campaign_id=campaign_id, grid_user=campaign.grid_user,
                         cluster_login=login or campaign.grid_user, campaign_state=campaign.state,
                         properties=props)


def _tap_from_row(row: Any) -> Tap:
    return Tap(cluster_id=row.cluster_id, campaign_id=row.campaign_id, state=TapState(row.state),
               rate=row.rate, close_date=row.close_date)


def get_or_create_taps(conn: Connection, *, cluster_id: int, campaign_ids: list[int],
                       settings: TapSettings) -> dict[int, Tap]:
    """The taps of these campaigns on the cluster, created open at the initial rate if missing
    (by `cigri.storage.queue.ensure_taps`, the one place that creates taps)."""
    if not campaign_ids:
        return {}
    ensure_taps(conn, [(campaign, cluster_id) for campaign in campaign_ids],
                initial_rate=settings.initial)
    rows = conn.execute(_TAPS, {"cluster_id": cluster_id, "campaign_ids": list(campaign_ids)})
    return {row.campaign_id: _tap_from_row(row) for row in rows}


def save_tap(conn: Connection, tap: Tap) -> None:
    conn.execute(_SAVE_TAP, {"tap_cluster_id": tap.cluster_id, "tap_campaign_id": tap.campaign_id,
                             "tap_state": tap.state.value, "tap_rate": tap.rate,
                             "tap_close_date": tap.close_date})


