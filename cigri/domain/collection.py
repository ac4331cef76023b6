"""Output gathering rules (the collector v3 documented and never built): whether a campaign asks
for it, which remote files a finished job must yield, and where each goes locally.

JDL keys (per cluster): `output_gathering_method` (`collector`, `media`, `scp` or `rsync`; `None`
disables), `output_file` (one or more paths, separated by commas or spaces; relative paths are
relative to `exec_directory`, else the owner's home), `output_destination` (absolute path, used only
when the admin allows it). Macros in `output_file`: `{TASK}` (the task name: first word of the
parameter line), `{PARAM_ID}`, `{JOB_ID}` (cigri job id), `{OAR_JOB_ID}` and `%jobid%` (the OAR job
id), `{CAMPAIGN_ID}`, `{HOME}` and `~` (the owner's home on the cluster).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

GATHERING_METHODS: Final = frozenset({"collector", "media", "scp", "rsync"})
SSH_METHODS: Final = frozenset({"scp", "rsync"})
MISSING_OUTPUT_FILE: Final = "MISSING_OUTPUT_FILE"
OUTPUT_COLLECTION_FAILED: Final = "OUTPUT_COLLECTION_FAILED"
_MACRO: Final = re.compile(r"\{(TASK|PARAM_ID|JOB_ID|OAR_JOB_ID|CAMPAIGN_ID)\}|%jobid%")
_SAFE: Final = re.compile(r"[^A-Za-z0-9._+-]")


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


@dataclass(frozen=True, kw_only=True)
class RemoteFile:
    path: str  # on the cluster, `~/` for the owner's home
    is_flat: bool  # the name is per job: stored side by side, not in a per-task folder


def remote_paths(properties: Mapping[str, str], job: FinishedJob) -> list[RemoteFile]:
    """The files on the cluster the job must have produced, macros expanded."""
    patterns = [p for p in re.split(r"[,\s]+", properties.get("output_file") or "") if p]
    values = {"TASK": job.task_name or str(job.param_id or job.id),
              "PARAM_ID": str(job.param_id or ""), "JOB_ID": str(job.id),
              "OAR_JOB_ID": str(job.remote_id or ""), "CAMPAIGN_ID": str(job.campaign_id)}
    base = _home_relative(properties.get("exec_directory") or "~", job.campaign_id)
    paths = []
    for pattern in patterns:
        expanded = _MACRO.sub(lambda m: values[m.group(1)] if m.group(1)
                              else str(job.remote_id or ""), pattern)
        expanded = _home_relative(expanded, job.campaign_id)
        if not (expanded.startswith("/") or expanded.startswith("~/")):
            expanded = posixpath.join(base, expanded)
        path = (posixpath.normpath(expanded) if not expanded.startswith("~/")
                else "~/" + posixpath.normpath(expanded[2:]))
        paths.append(RemoteFile(path=path, is_flat=is_flat(pattern)))
    return paths


def _home_relative(path: str, campaign_id: int) -> str:
    path = path.replace("{CAMPAIGN_ID}", str(campaign_id)).replace("{HOME}", "~")
    path = path.replace("$HOME", "~")
    return "~/" + path[1:].lstrip("/") if path.startswith("~") else path


def is_flat(pattern: str) -> bool:
    """Every job's file has its own name (the pattern has a per-job macro): store them side by
    side; otherwise one sub-directory per task keeps identical names apart."""
    return bool(re.search(r"\{(TASK|PARAM_ID|JOB_ID|OAR_JOB_ID)\}|%jobid%", pattern))


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


def result_directory(*, collector_directory: str, campaign_id: int,
                     destination: str | None, allow_destination: bool) -> str:
    """The campaign's result directory: the JDL destination when allowed and absolute, else
    `<COLLECTOR_DIRECTORY>/<campaign id>`."""
    if allow_destination and destination and destination.startswith("/"):
        return posixpath.normpath(destination.replace("{CAMPAIGN_ID}", str(campaign_id)))
    return posixpath.join(collector_directory, str(campaign_id))
