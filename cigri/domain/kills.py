"""What nikita kills, and when: walltime parsing and overdue rules, and the grouping that sends
each remote OAR job one delete only.

Pure. `cigri.daemons.nikita` reads targets through `cigri.storage.kills`, decides with these
functions, calls OAR outside any transaction and records the outcome.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cigri.domain.batches import BATCH_TAG
from cigri.domain.states import JobState

WALLTIME_GRACE: Final = timedelta(minutes=30)  # v3: OAR gets 30 min beyond the walltime
_HMS = re.compile(r"^\s*(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?\s*$")


@dataclass(frozen=True, kw_only=True)
class KillTarget:
    """A job nikita may have to delete on its cluster."""

    job_id: int
    campaign_id: int
    cluster_id: int | None
    state: JobState
    remote_id: int | None
    login: str  # the cluster login to delete as (users_mapping, else the grid user)
    tag: str | None = None
    param_id: int | None = None
    start_time: datetime | None = None
    submission_time: datetime | None = None
    walltime: str | None = None  # the campaign's walltime on that cluster
    array_id: int | None = None  # the OAR array of its submission, if known
    batch_size: int | None = None  # tasks of its temporal-grouping batch (tag `batch`)


def parse_walltime(text: str | None) -> timedelta | None:
    """`HH:MM:SS`, `HH:MM` or `HH` with any number of hours (v3 cast it to a time of day and so
    never fired for walltimes of 23:30 or more); None if unparsable."""
    if not text:
        return None
    match = _HMS.match(text)
    if match is None:
        return None
    hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def is_overdue(target: KillTarget, now: datetime, default_walltime: str) -> bool:
    """A running job past its walltime plus 30 minutes: OAR should have killed it. A sub-job of a
    temporal-grouping batch is judged as its batch: its start is the OAR job's, its walltime the
    batch's (one task's × the tasks of the batch, as the runner submitted it)."""
    if target.state is not JobState.RUNNING or target.start_time is None:
        return False
    walltime = parse_walltime(target.walltime) or parse_walltime(default_walltime)
    if walltime is None:
        return False
    if target.tag == BATCH_TAG and target.batch_size:
        walltime *= target.batch_size
    return now - target.start_time > walltime + WALLTIME_GRACE


def has_waited_too_long(target: KillTarget, now: datetime, timeout: timedelta) -> bool:
    """A job `remote_waiting` on OAR longer than REMOTE_WAITING_TIMEOUT since its submission."""
    return (target.state is JobState.REMOTE_WAITING and target.submission_time is not None
            and now - target.submission_time > timeout)


@dataclass(frozen=True, kw_only=True)
class RemoteKill:
    """One OAR delete, and the cigri jobs it settles (sub-jobs of a batch share a remote id; all
    elements of an array go with one array delete)."""

    cluster_id: int
    remote_id: int  # a job id, or an array id when `is_array`
    login: str
    job_ids: tuple[int, ...]
    is_array: bool = False


def plan_remote_kills(targets: Iterable[KillTarget], *,
                      whole_campaigns: frozenset[int] = frozenset()) -> list[RemoteKill]:
    """One delete per distinct (cluster, remote id) — every one of them, not one per cluster as
    v3 ended up doing. For campaigns that die whole (cancelled), one delete per OAR array instead
    of one per element. Targets with no cluster or remote id need no OAR call."""
    grouped: dict[tuple[int, int, bool], list[KillTarget]] = {}
    for target in targets:
        if target.cluster_id is None or target.remote_id is None:
            continue
        if target.campaign_id in whole_campaigns and target.array_id is not None:
            key = (target.cluster_id, target.array_id, True)
        else:
            key = (target.cluster_id, target.remote_id, False)
        grouped.setdefault(key, []).append(target)
    return [RemoteKill(cluster_id=cluster_id, remote_id=remote_id, login=group[0].login,
                       job_ids=tuple(t.job_id for t in group), is_array=is_array)
            for (cluster_id, remote_id, is_array), group in sorted(grouped.items())]


ON_CLUSTER_STATES: Final[Sequence[JobState]] = (
    JobState.SUBMITTED, JobState.REMOTE_WAITING, JobState.RUNNING, JobState.BATCH_WAITING)
