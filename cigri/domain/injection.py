"""Injection policies: how many tasks the runner submits to a cluster in one pass (issue 15).

Owns the choice between the policies and their arithmetic; the runner reads what they need (the
cluster's newest grid-usage sample, cigri's jobs running and waiting there, recent start latency
and task durations), calls `decide` with it, and submits that many tasks as one array job (or the
batches of temporal grouping). Pure: no I/O, no clock.

- `tap`: CiGri v3's multiplicative tap (`cigri.domain.tap`), kept for sites that want it: the rate
  grows by a factor after each pass that used it, and nothing is submitted while the campaign
  has jobs waiting on OAR.
- `capacity`: fill the cluster's free resources plus a small waiting reference at once, then keep
  cigri's waiting queue on OAR at that reference (topped up once a quarter of it has started).
- `pi`: a proportional-integral controller on the number of cigri jobs waiting on OAR (Guilloteau
  et al., control theory for CiGri): e = reference − waiting, u = kp·e + ki·Σe; u tasks are
  submitted. Needs no knowledge of the free resources; its integral lives in the runner's memory.

The reference (waiting jobs to keep on OAR) is never below RUNNER_WAITING_REFERENCE, and grows
with the jobs that end while a freed core waits for the next start: twice cigri's running jobs ×
(runner interval + updater interval + start cost) ÷ task duration (twice: ends come in waves), at
most twice the cluster's usable resources.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cigri.domain.stats import UsageSample

TAP: Final = "tap"
CAPACITY: Final = "capacity"
PI: Final = "pi"
POLICIES: Final = (TAP, CAPACITY, PI)


@dataclass(frozen=True, kw_only=True)
class InjectionSettings:
    policy: str = CAPACITY  # RUNNER_INJECTION_POLICY (a cluster's injection_policy overrides it)
    reference: int = 4  # RUNNER_WAITING_REFERENCE: the least number of jobs kept waiting on OAR
    max_jobs: int = 1000  # RUNNER_MAX_JOBS_PER_PASS: the largest submission of one pass
    kp: float = 1.0  # RUNNER_PI_KP
    ki: float = 0.2  # RUNNER_PI_KI
    interval: float = 5.0  # seconds between two runner passes (RUNNER_MIN_CYCLE_DURATION)
    poll: float = 5.0  # seconds between two updater passes (UPDATER_INTERVAL)


@dataclass(frozen=True, kw_only=True)
class ClusterView:
    """What the runner knows about a cluster at one pass."""

    capacity: int | None = None  # usable resources (max − unavailable); None without a sample
    used_by_others: int = 0  # resources busy with jobs that are not cigri's (from that sample)
    running: int = 0  # cigri's jobs running there now, every campaign
    waiting: int = 0  # cigri's jobs submitted but not started there now, every campaign
    start_latency: float | None = None  # what starting a job costs there (`start_cost`)
    task_seconds: float | None = None  # recent mean task duration of the campaign there

    @property
    def free(self) -> int | None:
        """Resources neither busy nor promised to a waiting cigri job (negative when more cigri
        jobs wait than there are free resources); None when the capacity is unknown."""
        if self.capacity is None:
            return None
        return self.capacity - self.used_by_others - self.running - self.waiting


@dataclass(frozen=True)
class PiState:
    """The PI controller's memory: the sum of past errors (per cluster, in the runner)."""

    integral: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Decision:
    tasks: int  # how many tasks to submit now
    pi: PiState = PiState()
    flow: int = 0  # tasks the policy wanted this pass (before the queued tasks capped it), at
    #                least what the cluster consumes per pass on average
    queue_rate: int = 0  # the tap rate the runner records for the meta-scheduler (`queue_rate`)


def cluster_view(sample: UsageSample | None, *, running: int, waiting: int,
                 start_latency: float | None, task_seconds: float | None) -> ClusterView:
    """The view from a grid-usage sample (possibly some passes old: cigri's own jobs are counted
    from the database, only the other users' share comes from the sample) and cigri's counts."""
    if sample is None:
        return ClusterView(running=running, waiting=waiting, start_latency=start_latency,
                           task_seconds=task_seconds)
    capacity = max(0, sample.max_resources - sample.unavailable_resources)
    others = max(0, sample.used_resources - sample.used_by_cigri)
    return ClusterView(capacity=capacity, used_by_others=others, running=running,
                       waiting=waiting, start_latency=start_latency, task_seconds=task_seconds)


MAX_START_COST: Final = 30.0  # seconds: a larger measure is clock skew between cigri and OAR


def start_cost(pairs: Iterable[tuple[datetime | None, datetime | None]]) -> float | None:
    """What starting a job costs on the cluster, from recent (submitted, started) pairs: their
    10th percentile (the jobs that found a free core; the others waited in the queue on purpose),
    at most MAX_START_COST (cigri's and OAR's clocks may disagree); None without a pair."""
    spans = sorted((start - submitted).total_seconds() for submitted, start in pairs
                   if submitted is not None and start is not None)
    if not spans:
        return None
    return max(0.0, min(MAX_START_COST, spans[len(spans) // 10]))


def reference(view: ClusterView, settings: InjectionSettings) -> int:
    """How many cigri jobs to keep waiting on OAR: at least `settings.reference`, and enough to
    replace twice (ends come in waves) the jobs that end on average while a freed core is seen
    (an updater poll), refilled (a runner pass) and started (the start cost), so a core freed
    between two passes finds a job already waiting; never above twice the usable resources
    (when known: tasks shorter than the time to see and refill a core need a cluster's worth
    waiting, and more) nor the largest submission."""
    wanted = settings.reference
    if view.task_seconds is not None and view.task_seconds > 0:
        gap = settings.interval + settings.poll + (view.start_latency or 0.0)
        # twice the mean: jobs started together end together, in waves
        wanted = max(wanted, math.ceil(2 * view.running * gap / view.task_seconds))
    ceiling = settings.max_jobs
    if view.capacity is not None:
        ceiling = min(ceiling, max(settings.reference, 2 * view.capacity))
    return max(0, min(wanted, ceiling))


def per_pass(view: ClusterView, settings: InjectionSettings) -> int:
    """The tasks the cluster consumes per runner pass on average (cigri's running jobs × the
    interval ÷ the task duration); the reference while no duration is known."""
    if view.task_seconds is None or view.task_seconds <= 0:
        return reference(view, settings)
    return math.ceil(view.running * settings.interval / view.task_seconds)


def capacity_tasks(view: ClusterView, settings: InjectionSettings) -> int:
    """`capacity`: the free resources plus the reference, minus what already waits; without a
    usage sample, only the reference minus what waits. With no free resource, the queue is
    topped up only once a quarter of the reference has started (one POST for several jobs rather than
    one per job that starts)."""
    target = reference(view, settings)
    free = view.free
    wanted = target - view.waiting if free is None else free + target
    if (free is None or free <= 0) and wanted < max(1, target // 4):
        return 0
    return max(0, min(settings.max_jobs, wanted))


def pi_step(view: ClusterView, state: PiState, settings: InjectionSettings, *,
            available: int) -> Decision:
    """`pi`: e = reference − waiting; u = kp·e + ki·(Σe + e). The integral is clamped to
    ±max_jobs and does not grow while the output is held back by the tasks `available` (or
    the largest submission): no wind-up while the campaign has nothing more to give."""
    error = reference(view, settings) - view.waiting
    integral = state.integral + error
    bound = float(settings.max_jobs)
    integral = max(-bound, min(bound, integral))
    output = settings.kp * error + settings.ki * integral
    tasks = max(0, min(settings.max_jobs, math.floor(output + 0.5)))
    if tasks > available and error > 0:
        integral = state.integral  # saturated: conditional integration
        tasks = available
    return Decision(tasks=max(0, tasks), pi=PiState(integral))


def decide(policy: str, view: ClusterView, settings: InjectionSettings, *, tap_rate: int,
           pi: PiState, available: int, test_mode: bool = False,
           campaign_waiting: int = 0) -> Decision:
    """How many of the `available` queued tasks of a campaign to submit this pass. Test mode
    submits one job at a time whatever the policy (v3 §7.17): one while none waits."""
    if test_mode:
        return Decision(tasks=min(1, available) if campaign_waiting == 0 else 0, pi=pi)
    if policy == TAP:
        return Decision(tasks=min(tap_rate, available), pi=pi)
    if policy == PI:
        decision = pi_step(view, pi, settings, available=available)
        wanted = decision.tasks
    else:
        wanted = capacity_tasks(view, settings)
        decision = Decision(tasks=min(available, wanted), pi=pi)
    consumed = per_pass(view, settings)
    # `pi` records its whole output: its integral would wind down on a shorter queue
    rate = queue_rate(wanted, consumed) if policy == CAPACITY else max(wanted, consumed)
    return dataclasses.replace(decision, flow=max(wanted, consumed), queue_rate=rate)


QUEUED_PASSES: Final = 10  # the meta-scheduler queues up to 10 × a tap's rate per couple


def queue_rate(wanted: int, consumed: int) -> int:
    """The rate the runner records on a campaign's tap, of which the meta-scheduler queues up to
    QUEUED_PASSES ×: ten passes of the cluster's mean consumption, and at least what this pass
    wanted. Not ten times what it wanted: the one-off fill of an empty cluster × 10 dealt the
    whole campaign out among the clusters at its first passes, and tasks queued on one cluster
    cannot go to another that frees up (a cluster slowed by preemption then held the tail)."""
    return max(consumed, math.ceil(max(0, wanted) / QUEUED_PASSES))


def share(budget: int, campaigns: int) -> int:
    """The next campaign's share of what is left of a pass's tasks, with `campaigns` campaigns
    still to serve (itself included): an equal part, rounded up."""
    return max(0, math.ceil(budget / max(1, campaigns)))


def policy_of(cluster_policy: str | None, default: str) -> str:
    """The cluster's own policy, else the grid-wide default (an unknown name falls back to it)."""
    if cluster_policy and cluster_policy.strip().lower() in POLICIES:
        return cluster_policy.strip().lower()
    return default
