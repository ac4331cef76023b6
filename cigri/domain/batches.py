"""Temporal grouping (v3 §3.1.9, user doc §1.8): the tasks of one runner pass packed into ONE OAR
job that runs them one after another, and what the per-task state files it leaves mean.

Owns the batch script, its escaping for OAR 2.5's API (which runs the command through a shell, so
our own `$` must reach the job escaped), the batch walltime (single-job walltime × number of tasks;
v3 left a TODO and used the single walltime), and the reading of the batch's state file
`<OAR job name>.state` (lines `<job id> BEGIN_DATE=`, `<job id> RET=`, `<job id> END_DATE=`; one
file per batch, so the updater reads a whole batch with one request, where v3 read one file per
task) into OAR-like records, so the usual failure analysis applies. Fixed from v3: `RET` is scaled
to a wait status (×256), so the special exit statuses 66/67 work for sub-jobs.

Also owns the sizing of a runner pass (v3 fixed 900 s and ignored RUNNER_TEMPORAL_GROUPING_DURATION):
a batch holds about `RUNNER_TEMPORAL_GROUPING_DURATION ÷ average task duration` tasks (capped by
RUNNER_MAX_TEMPORAL_GROUPED_JOBS, at least 1; the tap's initial rate while no duration is known),
and a pass's tasks are spread over more, smaller batches while the cluster has more free resources
than batches, so they fill the free cores instead of queuing behind each other in one long batch.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from cigri.domain.jobs import LaunchContext, LaunchItem
from cigri.domain.oar import OarJob, OarState
from cigri.domain.stats import UsageSample

BATCH_TAG: Final = "batch"
AUTO: Final = "auto"  # `temporal_grouping: auto`: grouped once it pays on the cluster


def state_file(batch_name: str) -> str:
    """The state file of the batch OAR job named `batch_name` (its name carries the submission
    key, so a runner adopting the batch after a crash finds the same file)."""
    return f"{batch_name}.state"


def stdout_file(job_id: int) -> str:
    return f"cigri_batch_stdout_{job_id}"


def stderr_file(job_id: int) -> str:
    return f"cigri_batch_stderr_{job_id}"


def batch_files(batch: OarJob, job_ids: Iterable[int]) -> list[str]:
    """The files a batch OAR job leaves besides OAR's own stdout/stderr, relative to its launching
    directory: each sub-job's stdout and stderr, then the batch's state file (named after the OAR
    job, as the updater reads it)."""
    names = [name for job_id in job_ids for name in (stdout_file(job_id), stderr_file(job_id))]
    return [*names, state_file(batch.name or f"oar-{batch.id}")]


def is_sub_job(tag: str | None) -> bool:
    """The job ran inside a batch: its stdout/stderr are `cigri_batch_std*_<job id>`, not the OAR
    job's own files."""
    return tag == BATCH_TAG


def is_grouped(context: LaunchContext) -> bool:
    """The campaign asked for temporal grouping on this cluster (`temporal_grouping: true`)."""
    return context.prop("temporal_grouping").lower() == "true"


def grouping_of(context: LaunchContext, *, site_default: str = "false") -> str:
    """The campaign's temporal grouping on this cluster: `true`, `auto` or `false`. The JDL's
    `false` (its default) is the site's DEFAULT_TEMPORAL_GROUPING (`false` or `auto`)."""
    value = context.prop("temporal_grouping").strip().lower()
    if value in {"true", AUTO}:
        return value
    return AUTO if site_default.strip().lower() == AUTO else "false"


def batch_script(items: Sequence[LaunchItem], *, campaign_id: int, exec_file: str,
                 name: str) -> str:
    """The command of the batch OAR job called `name`: for each cigri job N, in order,
    `N BEGIN_DATE` to the batch's state file, the task with its own stdout/stderr, then `N RET` and
    `N END_DATE`. One line; our own `$` are backslash-escaped because OAR 2.5's API runs the
    command through a shell (the task's own text is left as for ordinary jobs)."""
    state = state_file(name)
    parts = ["set +e", f"export CIGRI_CAMPAIGN_ID={campaign_id}"]
    for item in items:
        job = item.job_id
        task = f"{exec_file} {item.param or ''}".rstrip()
        parts.append(f"echo {job} BEGIN_DATE=\\$(date +%s) >> {state}")
        parts.append(f"( {task} ) > {stdout_file(job)} 2> {stderr_file(job)}")
        parts.append(f"echo {job} RET=\\$? >> {state}")
        parts.append(f"echo {job} END_DATE=\\$(date +%s) >> {state}")
    return "; ".join(parts)


def _seconds(walltime: str) -> int:
    fields = [int(part) for part in walltime.strip().split(":")]
    seconds = 0
    for value in fields[:3]:
        seconds = seconds * 60 + value
    if len(fields) == 1:
        seconds *= 3600  # OAR reads a bare number as hours
    elif len(fields) == 2:
        seconds *= 60  # HH:MM
    return seconds


def scale_walltime(walltime: str, count: int) -> str:
    """The walltime of a batch of `count` tasks: the single-job walltime × count, `HH:MM:SS`
    (any number of hours). An unreadable walltime is returned as it is."""
    try:
        total = _seconds(walltime) * max(1, count)
    except ValueError:
        return walltime
    return f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"


@dataclass(frozen=True, kw_only=True)
class SubJobState:
    """What a sub-job's state file says; all None when there is no file (never started)."""

    begin: datetime | None = None
    ret: int | None = None  # the shell exit status of the task
    end: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.ret is not None


def _epoch(value: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value.strip()), tz=UTC)
    except ValueError:
        return None


def parse_states(text: str) -> dict[int, SubJobState]:
    """Read a batch state file: `<job id> BEGIN_DATE=`, `<job id> RET=`, `<job id> END_DATE=`
    lines, by job id; anything else is ignored. A job with no line never started."""
    fields: dict[int, dict[str, str]] = {}
    for line in text.splitlines():
        job_text, _, rest = line.strip().partition(" ")
        key, _, value = rest.partition("=")
        if job_text.isdigit() and key in {"BEGIN_DATE", "RET", "END_DATE"}:
            fields.setdefault(int(job_text), {})[key] = value.strip()
    states: dict[int, SubJobState] = {}
    for job_id, values in fields.items():
        ret = values.get("RET")
        states[job_id] = SubJobState(
            begin=_epoch(values.get("BEGIN_DATE", "")), end=_epoch(values.get("END_DATE", "")),
            ret=int(ret) if ret is not None and ret.lstrip("-").isdigit() else None)
    return states


def sub_job_record(batch: OarJob, *, job_id: int, state: SubJobState) -> OarJob:
    """A finished sub-job as an OAR record (v3 mimicked one too): Terminated, its own times and
    files, no OAR events, and `RET` as a wait status (×256, fixed from v3) so exit statuses 66/67
    and the stderr tail work as for ordinary jobs."""
    return dataclasses.replace(
        batch, state=OarState.TERMINATED, events=(),
        exit_code=None if state.ret is None else (state.ret & 0xFF) << 8,
        start_time=state.begin, stop_time=state.end or batch.stop_time,
        stdout_file=stdout_file(job_id), stderr_file=stderr_file(job_id))


# --- sizing a runner pass ------------------------------------------------------------------------


def average_seconds(spans: Iterable[tuple[datetime | None, datetime | None]]) -> float | None:
    """The mean duration of (start, stop) pairs, ignoring incomplete or backwards ones; None when
    there is none (no task of the campaign has finished on the cluster yet)."""
    durations = [(stop - start).total_seconds() for start, stop in spans
                 if start is not None and stop is not None and stop >= start]
    return sum(durations) / len(durations) if durations else None


def batch_size(*, average: float | None, target_seconds: float, max_size: int,
               initial_size: int) -> int:
    """How many tasks one batch holds: as many as fit in `target_seconds` at the `average` task
    duration (rounded down, so a batch stays near its target), at least 1 and at most `max_size`;
    `initial_size` (small: the tap's initial rate) while no duration is known, so the first
    batches end soon and give one."""
    ceiling = max(1, max_size)
    if average is None:
        return max(1, min(initial_size, ceiling))
    if average <= 0:
        return ceiling  # tasks shorter than the state file's one-second resolution
    return max(1, min(ceiling, math.floor(target_seconds / average)))


def usage_max_age(period_seconds: float) -> timedelta:
    """How old a grid-usage sample may be and still tell the free resources: three sampling
    periods, and never under five minutes."""
    return timedelta(seconds=max(300.0, 3 * period_seconds))


def free_resources(sample: UsageSample | None) -> int | None:
    """Resources (the cluster's unit, cores by default) neither used nor unavailable in a grid
    usage sample; None without a sample."""
    if sample is None:
        return None
    return max(0, sample.max_resources - sample.used_resources - sample.unavailable_resources)


def plan_batches(tasks: int, *, size: int, free: int | None) -> list[int]:
    """The sizes of the batches that carry `tasks` tasks in one pass: no batch above `size`; and
    while the cluster has more `free` resources than that makes batches, more and smaller ones (up
    to one task each), one per free resource, so a pass fills the idle cores rather than queuing
    its tasks in one long batch. Sizes differ by at most one, largest first. Unknown `free`
    (no usage sample): batches of `size`."""
    if tasks <= 0:
        return []
    count = math.ceil(tasks / max(1, size))
    if free is not None and free > count:
        count = min(tasks, free)
    share, extra = divmod(tasks, count)
    return [share + 1] * extra + [share] * (count - extra)


# --- auto grouping (`temporal_grouping: auto`) ---------------------------------------------------

# Group while a task lasts less than this many start costs (the start cost is then more than about
# a tenth of the work), and size a batch so the start cost is at most AUTO_OVERHEAD of it.
AUTO_RATIO: Final = 10.0
AUTO_OVERHEAD: Final = 0.05
# A start-cost sample weighs this much against what was measured before (a moving average).
START_COST_WEIGHT: Final = 0.3
MAX_PROBES: Final = 20  # submissions waiting for their first start, per cluster


@dataclass(frozen=True)
class StartCost:
    """OAR's start cost on a cluster as the runner measures it: the time from a submission made
    while the cluster had free resources to the first start among its jobs (a job queued behind
    others on purpose measures the queue, not OAR), as a moving average; `pending`: submissions
    made that way whose jobs have not started yet, (submission id, when it was made)."""

    seconds: float | None = None
    pending: tuple[tuple[int, datetime], ...] = ()

    def submitted(self, submission_id: int, at: datetime) -> StartCost:
        """A submission made into free resources: its first start will be a sample."""
        return dataclasses.replace(
            self, pending=(*self.pending, (submission_id, at))[-MAX_PROBES:])

    def started(self, first_starts: dict[int, datetime]) -> StartCost:
        """The pending submissions whose first job started (`first_starts`, by submission id)
        become samples; the others stay pending."""
        seconds = self.seconds
        pending = []
        for submission_id, at in self.pending:
            start = first_starts.get(submission_id)
            if start is None:
                pending.append((submission_id, at))
                continue
            sample = max(0.0, (start - at).total_seconds())
            seconds = sample if seconds is None else (
                START_COST_WEIGHT * sample + (1 - START_COST_WEIGHT) * seconds)
        return StartCost(seconds=seconds, pending=tuple(pending))


def auto_batch_size(*, task_seconds: float | None, start_cost: float | None,
                    target_seconds: float, max_size: int) -> int | None:
    """`temporal_grouping: auto`: how many tasks a batch holds, or None for no grouping. Grouped
    only once both are measured and a task lasts less than AUTO_RATIO start costs; then a batch
    holds enough tasks for the start cost to be at most AUTO_OVERHEAD of it, within the
    `target_seconds` (RUNNER_TEMPORAL_GROUPING_DURATION) and `max_size`
    (RUNNER_MAX_TEMPORAL_GROUPED_JOBS) of explicit grouping. A batch of one is no batch: None."""
    if task_seconds is None or start_cost is None or start_cost <= 0:
        return None
    if task_seconds >= AUTO_RATIO * start_cost:
        return None
    ceiling = batch_size(average=task_seconds, target_seconds=target_seconds,
                         max_size=max_size, initial_size=1)
    wanted = ceiling if task_seconds <= 0 else math.ceil(
        start_cost / (AUTO_OVERHEAD * task_seconds))
    size = max(1, min(wanted, ceiling))
    return size if size > 1 else None
