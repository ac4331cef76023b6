"""Output gathering rules (the collector v3 documented and never built): whether a campaign asks
for it, which remote files a finished job must yield, and where each goes locally.

JDL keys (per cluster): `output_gathering_method` (`collector`, `media`, `scp` or `rsync`; `None`
disables), `output_file` (one or more paths, separated by commas or spaces; relative paths are
relative to `exec_directory`, else the owner's home), `output_destination` (absolute path, used only
when the admin allows it and the collector finds it inside a place the owner owns). Macros in
`output_file`: `{TASK}` (the task name: first word of the parameter line), `{PARAM_ID}`, `{JOB_ID}`
(cigri job id), `{OAR_JOB_ID}` and `%jobid%` (the OAR job id), `{CAMPAIGN_ID}`, `{HOME}` and `~`
(the owner's home on the cluster), `{STDOUT}` and `{STDERR}` (the job's own stdout/stderr file:
OAR's `OAR.<name>.<OAR id>.stdout`, or for a sub-job of a temporal-grouping batch its
`cigri_batch_stdout_<job id>`).

A sub-job shares its OAR job (and id) with the rest of its batch, and its task's output went to its
own `cigri_batch_std*_<job id>`, not to the batch's OAR files: a declared file named as OAR names a
job's output (`OAR.<...>.%jobid%.stdout`, `.stderr`) means the sub-job's own file, and a name whose
only per-job part is the OAR id is not per job (it goes to the task's folder).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Final

from cigri.domain import batches
from cigri.domain.event_codes import EventCode

GATHERING_METHODS: Final = frozenset({"collector", "media", "scp", "rsync"})
SSH_METHODS: Final = frozenset({"scp", "rsync"})
MISSING_OUTPUT_FILE: Final = EventCode.MISSING_OUTPUT_FILE
OUTPUT_COLLECTION_FAILED: Final = EventCode.OUTPUT_COLLECTION_FAILED
OUTPUT_DESTINATION_REFUSED: Final = EventCode.OUTPUT_DESTINATION_REFUSED
_MACRO: Final = re.compile(
    r"\{(TASK|PARAM_ID|JOB_ID|OAR_JOB_ID|CAMPAIGN_ID|STDOUT|STDERR)\}|%jobid%")
# OAR's own name for a job's output (`OAR.<name>.<id>.stdout`, `OAR.<id>.stderr`), as declared
_OAR_OUTPUT: Final = re.compile(r"^OAR\.(?:.*\.)?(?:%jobid%|\{OAR_JOB_ID\})\.(stdout|stderr)$")
_SAFE: Final = re.compile(r"[^A-Za-z0-9._+-]")


class FileState(StrEnum):
    """Where a declared output file stands (`collected_files.state`)."""

    PENDING = "pending"  # to fetch (again, after a cut transfer or an unreachable cluster)
    COLLECTED = "collected"
    MISSING = "missing"  # OAR does not have it
    FAILED = "failed"  # refused, or given up after MAX_ATTEMPTS


def gathering_method(properties: Mapping[str, str]) -> str | None:
    """The campaign's gathering method on a cluster, or None when it asks for none."""
    method = (properties.get("output_gathering_method") or "").strip().lower()
    return method if method in GATHERING_METHODS and properties.get("output_file") else None


@dataclass(frozen=True, kw_only=True)
class FinishedJob:
    id: int
    campaign_id: int
    cluster_id: int
    remote_id: int | None
    param_id: int | None
    task_name: str | None
    tag: str | None = None  # `batch` for a sub-job of a temporal-grouping batch
    oar_name: str | None = None  # the name of its OAR job (its OAR output files carry it)


@dataclass(frozen=True, kw_only=True)
class RemoteFile:
    path: str  # on the cluster, `~/` for the owner's home
    is_flat: bool  # the name is per job: stored side by side, not in a per-task folder


def output_name(job: FinishedJob, which: str) -> str:
    """The name of the job's own `stdout` or `stderr` file, relative to its working directory:
    a sub-job's `cigri_batch_std*_<job id>`, else OAR's `OAR.<name>.<OAR id>.<which>`."""
    if batches.is_sub_job(job.tag):
        return batches.stdout_file(job.id) if which == "stdout" else batches.stderr_file(job.id)
    name = f"{job.oar_name}." if job.oar_name else ""
    return f"OAR.{name}{job.remote_id or ''}.{which}"


def _sub_job_pattern(pattern: str) -> str:
    """A sub-job's reading of a declared file: OAR's output of the (shared) OAR job is the
    sub-job's own output."""
    directory, _, name = pattern.rpartition("/")
    match = _OAR_OUTPUT.match(name)
    if match is None:
        return pattern
    own = "{STDOUT}" if match.group(1) == "stdout" else "{STDERR}"
    return f"{directory}/{own}" if directory else own


def remote_paths(properties: Mapping[str, str], job: FinishedJob) -> list[RemoteFile]:
    """The files on the cluster the job must have produced, macros expanded."""
    patterns = [p for p in re.split(r"[,\s]+", properties.get("output_file") or "") if p]
    values = {"TASK": job.task_name or str(job.param_id or job.id),
              "PARAM_ID": str(job.param_id or ""), "JOB_ID": str(job.id),
              "OAR_JOB_ID": str(job.remote_id or ""), "CAMPAIGN_ID": str(job.campaign_id),
              "STDOUT": output_name(job, "stdout"), "STDERR": output_name(job, "stderr")}
    base = _home_relative(properties.get("exec_directory") or "~", job.campaign_id)
    sub_job = batches.is_sub_job(job.tag)
    paths = []
    for pattern in patterns:
        if sub_job:
            pattern = _sub_job_pattern(pattern)
        expanded = _MACRO.sub(lambda m: values[m.group(1)] if m.group(1)
                              else str(job.remote_id or ""), pattern)
        expanded = _home_relative(expanded, job.campaign_id)
        if not (expanded.startswith("/") or expanded.startswith("~/")):
            expanded = posixpath.join(base, expanded)
        path = (posixpath.normpath(expanded) if not expanded.startswith("~/")
                else "~/" + posixpath.normpath(expanded[2:]))
        paths.append(RemoteFile(path=path, is_flat=is_flat(pattern, sub_job=sub_job)))
    return paths


def _home_relative(path: str, campaign_id: int) -> str:
    path = path.replace("{CAMPAIGN_ID}", str(campaign_id)).replace("{HOME}", "~")
    path = path.replace("$HOME", "~")
    return "~/" + path[1:].lstrip("/") if path.startswith("~") else path


def is_flat(pattern: str, *, sub_job: bool = False) -> bool:
    """Every job's file has its own name (the pattern has a per-job macro): store them side by
    side; otherwise one sub-directory per task keeps identical names apart. The OAR id is not
    per job for the sub-jobs of a batch, which share it."""
    if sub_job:
        return bool(re.search(r"\{(TASK|PARAM_ID|JOB_ID|STDOUT|STDERR)\}", pattern))
    return bool(re.search(r"\{(TASK|PARAM_ID|JOB_ID|OAR_JOB_ID|STDOUT|STDERR)\}|%jobid%",
                          pattern))


def local_relative_path(remote_path: str, job: FinishedJob, *, flat: bool) -> PurePosixPath:
    """Where a remote file goes inside the campaign's result directory (never outside it)."""
    name = _safe_name(PurePosixPath(remote_path).name, f"job{job.id}")
    if flat:
        return PurePosixPath(name)
    return PurePosixPath(_safe_name(job.task_name or "", f"job{job.id}")) / name


def _safe_name(text: str, fallback: str) -> str:
    """One path component: no separators, and never `.` or `..` (a user's file name must not
    climb out of the result directory)."""
    cleaned = _SAFE.sub("_", text)
    return fallback if cleaned.strip(".") == "" else cleaned


def user_destination(destination: str | None, *, campaign_id: int,
                     allow_destination: bool) -> str | None:
    """The JDL destination asked for, `{CAMPAIGN_ID}` expanded, when the admin allows user
    destinations and it is absolute; else None (the default directory). Not normalised: the
    collector resolves it on disk (symlinks before `..`) and checks where it really lands."""
    if allow_destination and destination and destination.startswith("/"):
        return destination.replace("{CAMPAIGN_ID}", str(campaign_id))
    return None


def result_directory(*, collector_directory: str, campaign_id: int,
                     destination: str | None, allow_destination: bool) -> str:
    """The campaign's result directory as asked for: the JDL destination when allowed and
    absolute, else `<COLLECTOR_DIRECTORY>/<campaign id>` (the collector still checks a
    destination before using it)."""
    asked = user_destination(destination, campaign_id=campaign_id,
                             allow_destination=allow_destination)
    if asked is not None:
        return posixpath.normpath(asked)
    return posixpath.join(collector_directory, str(campaign_id))
