"""Removing a finished campaign's output files on its clusters (`DELETE /campaigns/<id>/outputs`,
`gridclean --outputs`): the request's states, which files of an OAR job go, the events that
report the outcome and the one-line summary. The API records the request; the collector carries
it out in bounded batches (`cigri.daemons.collector`)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Final

from cigri.domain import batches
from cigri.domain.event_codes import EventCode
from cigri.domain.oar import OarJob

OUTPUTS_REMOVED: Final = EventCode.OUTPUTS_REMOVED
OUTPUTS_REMOVAL_FAILED: Final = EventCode.OUTPUTS_REMOVAL_FAILED


class PurgeState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # finished, but some cluster could not be cleaned (see `errors`)


OPEN_STATES: Final = (PurgeState.PENDING.value, PurgeState.RUNNING.value)


def files_to_remove(details: OarJob, sub_jobs: Sequence[int] = ()) -> list[str]:
    """The absolute paths of an OAR job's output files: its stdout and stderr and, for a
    temporal-grouping batch (`sub_jobs`: its cigri job ids), each sub-job's own files and the
    batch's state file. A relative name is in the launching directory (skipped when OAR does not
    say which)."""
    paths = [details.stdout_file, details.stderr_file]
    if sub_jobs:
        paths += batches.batch_files(details, tuple(sub_jobs))
    return [details.path_of(path) for path in paths
            if path and (path.startswith("/") or details.launching_directory)]


def summary(campaign_id: int, *, removed: int, missing: int, errors: Sequence[str]) -> str:
    message = f"{removed} output files of campaign {campaign_id} removed"
    if missing:
        message += f" ({missing} already gone)"
    if errors:
        message += "; failed on " + "; ".join(errors)
    return message
