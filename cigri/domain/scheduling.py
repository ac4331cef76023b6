"""Scheduling decisions of the meta-scheduler: which (campaign, cluster) couples get work, how much,
in which order, which cluster each task goes to, and when a prologue or epilogue job is due.

Pure functions over a `Snapshot` read by `cigri.daemons.metascheduler`; they return decisions that
the daemon applies in short transactions. v3 rules (`cigri-v3-server.md` §3.2) with these changes:
- a couple blacklisted for its campaign, or on a disabled cluster, gets nothing queued (v3 queued
  there anyway and let nikita expire the rows);
- the epilogue runs only on the clusters where the campaign ran, and not at all where it cannot
  run any more (`cigri.domain.campaigns.next_epilogue_step`; v3 ran it on every cluster and let
  a blacklisted or disabled one hold the campaign for ever); a prologue job no runner took is
  withdrawn once its cluster is disabled or the campaign's tasks are all done, and tasks queued
  on a disabled cluster, or one where the campaign is blacklisted, go back to the bag for
  another cluster;
- test couples really come first (v3's in-place list edit could leave one behind), and their
  queue rows say `besteffort: false`: test mode runs normal jobs whatever the campaign's type
  (v3 user ref §1.8);
- `semi-best-effort` couples queue best-effort work by day and normal work at night, `nightly`
  couples get nothing queued by day (`Snapshot.night_clusters`, `cigri.domain.night`); the
  runner checks the window again when it submits;
- policy `fair_share` (default): on each cluster, users of the same (test, users_priority) tier take
  turns task by task; within a user, v3 order (oldest campaign first). `fifo` is v3: strict
  users_priority, then campaign age.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from cigri.domain.campaigns import EpilogueSite, EpilogueStep, next_epilogue_step
from cigri.domain.clusters import Cluster
from cigri.domain.night import JobMode, job_mode
from cigri.domain.states import ACTIVE_JOB_STATES, JobState

TAP_QUEUE_FACTOR: Final = 10  # v3: at most 10 x the tap rate queued per couple
STACK_LIMIT: Final = 500  # v3: at most 500 candidate tasks fetched per couple and pass
PROLOGUE: Final = "prologue"
EPILOGUE: Final = "epilogue"

Couple = tuple[int, int]  # (campaign id, cluster id)


class Policy(StrEnum):
    FAIR_SHARE = "fair_share"
    FIFO = "fifo"


@dataclass(frozen=True, kw_only=True)
class CampaignCluster:
    """A running campaign on one of its clusters, with the properties that drive scheduling."""

    campaign_id: int
    cluster_id: int
    grid_user: str
    campaign_type: str = "best-effort"  # the JDL `type` on this cluster
    is_test: bool = False
    max_jobs: int | None = None
    has_prologue: bool = False
    has_epilogue: bool = False
    temporal_grouping: bool = False
    dimensional_grouping: bool = False


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """What the meta-scheduler read at the start of a pass."""

    couples: Sequence[CampaignCluster]
    clusters: Mapping[int, Cluster]
    blacklisted_clusters: frozenset[int] = frozenset()
    blacklisted_couples: frozenset[Couple] = frozenset()
    active_jobs: Mapping[Couple, int] = field(default_factory=dict)
    queued_jobs: Mapping[Couple, int] = field(default_factory=dict)
    tap_rates: Mapping[Couple, int] = field(default_factory=dict)
    users_priority: Mapping[tuple[str, int], int] = field(default_factory=dict)
    prologue_states: Mapping[Couple, frozenset[JobState]] = field(default_factory=dict)
    unscheduled_tasks: Mapping[int, int] = field(default_factory=dict)  # > 0: some left
    queued_tasks: Mapping[int, int] = field(default_factory=dict)  # per campaign, any cluster
    unfinished_jobs: Mapping[int, int] = field(default_factory=dict)  # per campaign, task jobs
    stress_threshold: float = 0.8
    initial_tap_rate: int = 2
    night_clusters: frozenset[int] = frozenset()  # clusters inside their night window now


@dataclass(frozen=True, kw_only=True)
class TaggedJobPlan:
    """Create a prologue or epilogue job of a campaign on a cluster."""

    campaign_id: int
    cluster_id: int
    tag: str


@dataclass(frozen=True, kw_only=True)
class CoupleLimit:
    """A couple that may get up to `limit` more queued tasks in this pass."""

    campaign_id: int
    cluster_id: int
    grid_user: str
    user_priority: int
    is_test: bool
    limit: int
    is_besteffort: bool
    temporal_grouping: bool = False
    dimensional_grouping: bool = False

    @property
    def key(self) -> Couple:
        return (self.campaign_id, self.cluster_id)

    @property
    def fifo_key(self) -> tuple[bool, int, int]:
        """v3 order on a cluster: test first, then users_priority desc, then oldest campaign."""
        return (not self.is_test, -self.user_priority, self.campaign_id)


@dataclass(frozen=True, kw_only=True)
class TaskCandidate:
    task_id: int
    campaign_id: int
    param_id: int
    priority: int
    affinity: int = 0  # for the cluster it was fetched for


@dataclass(frozen=True, kw_only=True)
class QueueEntry:
    """One `jobs_to_launch` row to insert."""

    task_id: int
    campaign_id: int
    cluster_id: int
    order_num: int  # rank of its batch on the cluster in this pass (1, 2, ...)
    runner_options: Mapping[str, object]


@dataclass(frozen=True, kw_only=True)
class StaleEntry:
    """A queue row that waited too long (nikita removes it and lowers the task's affinity)."""

    queue_id: int
    task_id: int
    cluster_id: int
    param_id: int
    campaign_id: int


def _is_blocked(snapshot: Snapshot, couple: Couple) -> bool:
    _campaign_id, cluster_id = couple
    cluster = snapshot.clusters.get(cluster_id)
    return (cluster is None or not cluster.enabled
            or cluster_id in snapshot.blacklisted_clusters
            or couple in snapshot.blacklisted_couples)


def is_prologue_done(snapshot: Snapshot, couple: CampaignCluster) -> bool:
    """No prologue defined, or one has terminated on that cluster."""
    key = (couple.campaign_id, couple.cluster_id)
    return not couple.has_prologue or JobState.TERMINATED in snapshot.prologue_states.get(
        key, frozenset())


def is_campaign_drained(snapshot: Snapshot, campaign_id: int) -> bool:
    """No unscheduled task, no queued task and no unfinished job left (epilogue time)."""
    return (snapshot.unscheduled_tasks.get(campaign_id, 0) == 0
            and snapshot.queued_tasks.get(campaign_id, 0) == 0
            and snapshot.unfinished_jobs.get(campaign_id, 0) == 0)


def plan_tagged_jobs(snapshot: Snapshot) -> list[TaggedJobPlan]:
    """Prologue jobs to create now (v3 §3.2.1, behaviour 8): one per couple while needed, none
    while one is in flight or the couple is blacklisted. Epilogues: `plan_epilogues`."""
    plans = []
    for couple in snapshot.couples:
        key = (couple.campaign_id, couple.cluster_id)
        if _is_blocked(snapshot, key):
            continue
        if (couple.has_prologue and not is_prologue_done(snapshot, couple)
                and snapshot.unscheduled_tasks.get(couple.campaign_id, 0) > 0):
            states = snapshot.prologue_states.get(key, frozenset())
            if not states & ACTIVE_JOB_STATES:
                plans.append(TaggedJobPlan(campaign_id=couple.campaign_id,
                                           cluster_id=couple.cluster_id, tag=PROLOGUE))
    return plans


def plan_prologue_withdrawals(snapshot: Snapshot) -> list[Couple]:
    """Prologue jobs created but not taken by a runner that can no longer serve: on a cluster that
    is disabled or gone (no runner will take them), or of a campaign whose tasks are all done
    (nothing would run after them). Left `to_launch`, they would hold the campaign for ever."""
    found = []
    for couple in snapshot.couples:
        key = (couple.campaign_id, couple.cluster_id)
        if JobState.TO_LAUNCH not in snapshot.prologue_states.get(key, frozenset()):
            continue
        cluster = snapshot.clusters.get(couple.cluster_id)
        if cluster is None or not cluster.enabled \
                or is_campaign_drained(snapshot, couple.campaign_id):
            found.append(key)
    return found


def plan_queue_withdrawals(snapshot: Snapshot) -> list[Couple]:
    """Couples with tasks queued on a cluster that no longer takes the campaign's work: disabled
    or gone, or the campaign blacklisted there. No runner took those tasks (a runner deletes the
    queue row in the transaction that records its submission intent); back in the bag, they go to
    another cluster at once instead of waiting for nikita to expire their rows
    (`REMOTE_WAITING_TIMEOUT`). A cluster-wide blacklist keeps its rows: it is most often a
    passing outage that autofix lifts, and the runner resets the taps of the campaigns queued
    there so they restart slowly."""
    found = []
    for couple in snapshot.couples:
        key = (couple.campaign_id, couple.cluster_id)
        cluster = snapshot.clusters.get(couple.cluster_id)
        if snapshot.queued_jobs.get(key, 0) > 0 and (
                cluster is None or not cluster.enabled or key in snapshot.blacklisted_couples):
            found.append(key)
    return found


def list_epilogue_campaigns(snapshot: Snapshot) -> list[int]:
    """Campaigns whose tasks are all done and that define an epilogue on one of their clusters:
    the meta-scheduler reads their epilogue sites."""
    return sorted({c.campaign_id for c in snapshot.couples
                   if c.has_epilogue and is_campaign_drained(snapshot, c.campaign_id)})


@dataclass(frozen=True, kw_only=True)
class EpiloguePlan:
    create: list[TaggedJobPlan]
    withdraw: list[Couple]  # epilogue jobs no runner took, on clusters where they cannot run


def plan_epilogues(sites: Sequence[EpilogueSite], *, now: datetime,
                   blacklist_wait: timedelta) -> EpiloguePlan:
    """Epilogue jobs to create (v3 §3.2.1, on the clusters where the campaign ran) and to
    withdraw (`cigri.domain.campaigns.next_epilogue_step`)."""
    create, withdraw = [], []
    for site in sites:
        step = next_epilogue_step(site, now=now, blacklist_wait=blacklist_wait)
        if step is EpilogueStep.RUN:
            create.append(TaggedJobPlan(campaign_id=site.campaign_id, cluster_id=site.cluster_id,
                                        tag=EPILOGUE))
        elif step is EpilogueStep.SKIP and site.is_to_launch:
            withdraw.append((site.campaign_id, site.cluster_id))
    return EpiloguePlan(create=create, withdraw=withdraw)


def couple_limit(snapshot: Snapshot, couple: CampaignCluster) -> int:
    """How many more tasks the couple may have queued (v3 §3.2.2, behaviour 5): `max_jobs` (1 in
    test mode) minus active and queued jobs, and at most 10 x tap rate minus queued jobs."""
    key = (couple.campaign_id, couple.cluster_id)
    queued = snapshot.queued_jobs.get(key, 0)
    in_flight = snapshot.active_jobs.get(key, 0) + queued
    max_jobs = 1 if couple.is_test else couple.max_jobs
    limit = math.inf if max_jobs is None else max_jobs - in_flight
    rate = snapshot.tap_rates.get(key, snapshot.initial_tap_rate)
    tap_limit = max(0, TAP_QUEUE_FACTOR * rate - queued)
    return int(max(0, min(limit, tap_limit)))


def couple_mode(snapshot: Snapshot, couple: CampaignCluster) -> JobMode:
    """What the couple submits now: its campaign type, test mode and whether it is night on the
    cluster (`cigri.domain.night.job_mode`)."""
    return job_mode(couple.campaign_type, is_test=couple.is_test,
                    is_night=couple.cluster_id in snapshot.night_clusters)


def plan_couples(snapshot: Snapshot) -> list[CoupleLimit]:
    """The couples that may get work this pass, with their limits, grouped by cluster (clusters in
    the order campaigns first name them) and in v3 order within a cluster (behaviours 6 and 7)."""
    kept: dict[int, list[CoupleLimit]] = {}
    for couple in snapshot.couples:
        key = (couple.campaign_id, couple.cluster_id)
        if _is_blocked(snapshot, key) or not is_prologue_done(snapshot, couple):
            continue
        cluster = snapshot.clusters[couple.cluster_id]
        if cluster.is_stressed(snapshot.stress_threshold):
            continue
        mode = couple_mode(snapshot, couple)
        if mode is JobMode.WAIT:
            continue  # a nightly campaign by day: its tasks wait in the bag
        kept.setdefault(couple.cluster_id, []).append(CoupleLimit(
            campaign_id=couple.campaign_id, cluster_id=couple.cluster_id,
            grid_user=couple.grid_user,
            user_priority=snapshot.users_priority.get((couple.grid_user, couple.cluster_id), 0),
            is_test=couple.is_test, limit=couple_limit(snapshot, couple),
            is_besteffort=mode is JobMode.BESTEFFORT,
            temporal_grouping=couple.temporal_grouping,
            dimensional_grouping=couple.dimensional_grouping))
    ordered = []
    for cluster_couples in kept.values():
        ordered += sorted(cluster_couples, key=lambda c: c.fifo_key)
    return ordered


class _ClusterTurns:
    """Which couple of one cluster gets the next task, under a policy."""

    def __init__(self, couples: Sequence[CoupleLimit], policy: Policy) -> None:
        self.couples = sorted(couples, key=lambda c: c.fifo_key)
        self.policy = policy
        self.last_user: str | None = None
        self.user_order: list[str] = []  # users by their oldest campaign
        for couple in sorted(couples, key=lambda c: c.campaign_id):
            if couple.grid_user not in self.user_order:
                self.user_order.append(couple.grid_user)

    def pick(self, has_work: Mapping[Couple, bool]) -> CoupleLimit | None:
        eligible = [c for c in self.couples if has_work[c.key]]
        if not eligible:
            return None
        if self.policy is Policy.FIFO:
            return eligible[0]
        # Fair share: only the best (test, priority) tier competes; its users take turns in the
        # order of their oldest campaign, and each user's own campaigns keep v3 order.
        tier = eligible[0].fifo_key[:2]
        users = {c.grid_user for c in eligible if c.fifo_key[:2] == tier}
        start = (self.user_order.index(self.last_user) + 1
                 if self.last_user in self.user_order else 0)
        rotation = self.user_order[start:] + self.user_order[:start]
        user = next(u for u in rotation if u in users)
        self.last_user = user
        return next(c for c in eligible if c.grid_user == user and c.fifo_key[:2] == tier)


def distribute(couples: Sequence[CoupleLimit],
               stacks: Mapping[Couple, Sequence[TaskCandidate]], *,
               policy: Policy = Policy.FAIR_SHARE,
               first_batch_id: int = 1) -> list[QueueEntry]:
    """Queue each candidate task on exactly one cluster (v3 §3.2.3, round-robin over clusters).

    `stacks` holds, per couple, its candidate tasks in the cluster's preferred order (already cut
    to the couple's limit). Clusters take turns one task at a time; on a cluster the policy picks
    the couple. Consecutive tasks of one campaign on a cluster form a batch (`order_num`).
    """
    by_cluster: dict[int, list[CoupleLimit]] = {}
    for couple in couples:
        by_cluster.setdefault(couple.cluster_id, []).append(couple)
    pending = {c.key: deque(stacks.get(c.key, ())[:c.limit]) for c in couples}
    taken: set[int] = set()
    turns = {cluster: _ClusterTurns(group, policy) for cluster, group in by_cluster.items()}
    assigned: dict[int, list[tuple[CoupleLimit, TaskCandidate]]] = {c: [] for c in by_cluster}

    def has_work(key: Couple) -> bool:
        stack = pending[key]
        while stack and stack[0].task_id in taken:
            stack.popleft()
        return bool(stack)

    while True:
        progressed = False
        for cluster_id, turn in turns.items():
            work = {c.key: has_work(c.key) for c in turn.couples}
            chosen = turn.pick(work)
            if chosen is None:
                continue
            task = pending[chosen.key].popleft()
            taken.add(task.task_id)
            assigned[cluster_id].append((chosen, task))
            progressed = True
        if not progressed:
            break
    return _batch(assigned, first_batch_id)


def _batch(assigned: Mapping[int, Sequence[tuple[CoupleLimit, TaskCandidate]]],
           first_batch_id: int) -> list[QueueEntry]:
    entries = []
    batch_id = first_batch_id - 1
    for cluster_id, items in assigned.items():
        order_num = 0
        previous: int | None = None
        for couple, task in items:
            if couple.campaign_id != previous:
                order_num += 1
                batch_id += 1
                previous = couple.campaign_id
            options: dict[str, object] = {"besteffort": couple.is_besteffort,
                                          "batch_id": batch_id}
            if couple.temporal_grouping:
                options["temporal_grouping"] = True
            elif couple.dimensional_grouping:
                options["dimensional_grouping"] = True
            entries.append(QueueEntry(task_id=task.task_id, campaign_id=couple.campaign_id,
                                      cluster_id=cluster_id, order_num=order_num,
                                      runner_options=options))
    return entries


def stack_size(couple: CoupleLimit) -> int:
    """How many candidates to fetch for a couple."""
    return min(STACK_LIMIT, couple.limit)
