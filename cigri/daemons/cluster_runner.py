"""One cluster's runner loop (`ClusterRunner`, lease and heartbeat `runner:<cluster>`), run by the
runner process (`cigri.daemons.runner`) in a thread per enabled cluster (v3 §3.1).

Each pass on a cluster: reconcile submissions whose fate on OAR is unknown, move the taps (closed
while jobs wait, reopened otherwise), then submit the cluster's `to_launch` jobs (prologue,
epilogue, leftovers) or else queued tasks, as many as the cluster's injection policy says
(`cigri.domain.injection`: `capacity`, `pi`, or v3's tap rate), one OAR array job per campaign.
Submission and reconciliation themselves (intent, OAR call, outcome) are
`cigri.daemons.submission`'s. Each pass re-reads its cluster row and gets its OAR client for that
row from the process's one client cache, so an edited cluster (`cigri cluster set`: URL, auth,
chunk size, timeout) is used from the next pass on.

The OAR job type of a submission is decided here, when it is made (`ClusterRunner.mode`): the
campaign's type, test mode and the cluster's night window at the clock's time (`nightly` waits by
day, `semi-best-effort` is best-effort by day), whatever the queue row said when it was queued.

Temporal grouping (`temporal_grouping: true` on the cluster): the tasks claimed in one pass are
split into batches of about RUNNER_TEMPORAL_GROUPING_DURATION ÷ the campaign's recent task duration
there (at most RUNNER_MAX_TEMPORAL_GROUPED_JOBS), smaller while the cluster has free resources to
fill (its newest grid-usage sample); each batch is one OAR job running its tasks in turn
(`cigri.domain.batches`); its jobs are tagged `batch` and share its OAR id as `remote_id`.
`temporal_grouping: auto` (or DEFAULT_TEMPORAL_GROUPING = auto) groups once the campaign's tasks are
short compared with OAR's start cost on the cluster, which the loop measures on its own
submissions into free resources (`batches.StartCost`, in memory like the pi integral).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection

from cigri.config import Settings
from cigri.daemons import submission
from cigri.daemons.base import Daemon, DaemonContext
from cigri.domain import batches, injection
from cigri.domain.admission import may_run_normal_jobs
from cigri.domain.clusters import Cluster
from cigri.domain.jobs import Job, LaunchContext
from cigri.domain.night import JobMode, NightWindow, job_mode
from cigri.domain.oar import OarApi
from cigri.domain.states import CampaignState
from cigri.domain.tap import (
    Tap,
    TapSettings,
    increase_tap,
    is_in_grace,
    plan_tap,
    reset_tap,
    should_increase,
)
from cigri.storage import batches as batch_store
from cigri.storage import events as event_store
from cigri.storage import injection as injection_store
from cigri.storage import jobs as job_store
from cigri.storage import submissions as submission_store
from cigri.storage.clusters import get_cluster
from cigri.storage.heartbeats import notify_daemons
from cigri.storage.queries import list_admission_rules

log = logging.getLogger(__name__)

_PENDING_LIMIT: Final = 100


def tap_settings(settings: Settings) -> TapSettings:
    return TapSettings(initial=settings.RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS,
                       factor=settings.RUNNER_TAP_INCREASE_FACTOR,
                       maximum=settings.RUNNER_TAP_INCREASE_MAX,
                       grace=settings.runner_tap_grace_period)


def injection_settings(settings: Settings) -> injection.InjectionSettings:
    return injection.InjectionSettings(
        policy=settings.RUNNER_INJECTION_POLICY, reference=settings.RUNNER_WAITING_REFERENCE,
        max_jobs=settings.RUNNER_MAX_JOBS_PER_PASS, kp=settings.RUNNER_PI_KP,
        ki=settings.RUNNER_PI_KI, interval=settings.RUNNER_MIN_CYCLE_DURATION,
        poll=settings.UPDATER_INTERVAL)



class ClusterRunner(Daemon):
    """The runner loop of one cluster (lease and heartbeat name `runner:<cluster>`)."""

    role = "runner"

    def __init__(self, context: DaemonContext, *, cluster: Cluster,
                 interval: timedelta | None = None, lease: timedelta | None = None,
                 owner: str | None = None, listen: bool = True) -> None:
        super().__init__(engine=context.engine, settings=context.settings, clock=context.clock,
                         stop=context.stop, interval=interval, name=f"runner:{cluster.name}",
                         lease=lease, owner=owner)
        self.cluster = cluster  # re-read at every pass
        self.oar_factory = context.oar_factory
        self.taps = tap_settings(context.settings)
        self.injection = injection_settings(context.settings)
        self._pi = injection.PiState()  # the pi policy's integral, this cluster's, in memory
        self._start_cost = batches.StartCost()  # OAR's start cost here (auto grouping), in memory
        self.listen = listen  # False: the RunnerProcess listens for all its clusters

    @property
    def oar(self) -> OarApi:
        """The OAR client for the cluster row read this pass (rebuilt when it was edited)."""
        return self.oar_factory(self.cluster)

    def wake_channels(self) -> Sequence[str]:
        return super().wake_channels() if self.listen else ()

    @classmethod
    def default_interval(cls, settings: Settings) -> timedelta:
        return settings.runner_min_cycle_duration

    def run_once(self) -> bool | None:
        """One pass; False (idle: the daemon frame may stretch the wait) when the cluster has
        nothing queued, waiting, to launch or to reconcile; the meta-scheduler's queueing wakes
        the runner (NOTIFY)."""
        # One transaction reads what the pass needs (and moves the taps); a pass with nothing to
        # do ends there. Only settling submissions changes the taps' inputs: then they move again.
        now = self.clock.now()
        pending: list[submission_store.SubmissionRecord] = []
        taps: dict[int, Tap] = {}
        to_launch: list[Job] = []
        idle = False
        with self.engine.begin() as conn:
            self.cluster = get_cluster(conn, self.cluster.id)
            blacklisted = event_store.is_cluster_blacklisted(conn, self.cluster.id)
            if blacklisted:
                self._close_all_taps(conn)
            elif self.cluster.enabled:
                # one probe says which reads can find anything: an idle pass skips them all
                work = submission_store.find_runner_work(conn, cluster_id=self.cluster.id,
                                                         intent_before=now - self.lease)
                idle = not (work.to_reconcile or work.queued or work.waiting or work.to_launch)
                if work.to_reconcile:
                    pending = submission_store.list_submissions_to_reconcile(
                        conn, cluster_id=self.cluster.id, intent_before=now - self.lease)
                if not pending and (work.queued or work.waiting):
                    taps = self._move_taps_in(conn, now)
                if work.to_launch:
                    to_launch = job_store.list_to_launch_jobs(conn, cluster_id=self.cluster.id,
                                                              limit=_PENDING_LIMIT)
        if blacklisted or not self.cluster.enabled:
            log.debug("%s: cluster blacklisted or disabled, no OAR call", self.name)
            return None
        if idle:
            return False
        if pending:
            self.reconcile(pending)
            taps = self._move_taps()
        if not self._submit_pending(to_launch):
            self._submit_from_queue(taps)
        return True

    def window_mode(self, context: LaunchContext) -> JobMode:
        """The campaign's type, test mode and the cluster's night window (its own or
        NIGHT_WINDOW) at the clock's time (`cigri.domain.night.job_mode`)."""
        window = NightWindow.for_cluster(self.cluster, default_window=self.settings.NIGHT_WINDOW,
                                         default_zone=self.settings.NIGHT_TIME_ZONE)
        return job_mode(context.prop("type", "best-effort"), is_test=context.is_test_mode,
                        is_night=window.is_night(self.clock.now()))

    def mode(self, context: LaunchContext) -> JobMode:
        """What the campaign submits here now (`window_mode`). A normal job is submitted only if
        `normal_authorized` lets the owner run one here now (the campaign may predate the list,
        or the owner may have been removed from it): otherwise the job goes best-effort."""
        mode = self.window_mode(context)
        if mode is not JobMode.NORMAL or context.is_test_mode:
            return mode
        with self.engine.begin() as conn:
            rules = list_admission_rules(conn)
        if may_run_normal_jobs(context.grid_user, self.cluster.name, rules):
            return mode
        log.warning("%s: campaign %d: %s may not run normal jobs here (admission rule); "
                    "submitting best-effort", self.name, context.campaign_id, context.grid_user)
        return JobMode.BESTEFFORT

    # --- taps ------------------------------------------------------------------------------

    def _close_all_taps(self, conn: Connection) -> None:
        """Behaviour 22: a blacklisted cluster gets its taps reset to the initial rate, closed."""
        now = self.clock.now()
        campaigns = job_store.list_queued_campaigns(conn, cluster_id=self.cluster.id)
        for tap in submission_store.get_or_create_taps(
                conn, cluster_id=self.cluster.id, campaign_ids=campaigns,
                settings=self.taps).values():
            submission_store.save_tap(conn, reset_tap(tap, now, self.taps))

    def _move_taps(self) -> dict[int, Tap]:
        with self.engine.begin() as conn:
            return self._move_taps_in(conn, self.clock.now())

    def _move_taps_in(self, conn: Connection, now: datetime) -> dict[int, Tap]:
        """Close or reopen the taps of the campaigns queued or waiting here; returns the queued
        campaigns' taps in queue order."""
        waiting = job_store.count_waiting_jobs(conn, cluster_id=self.cluster.id)
        campaigns = job_store.list_queued_campaigns(conn, cluster_id=self.cluster.id)
        wanted = sorted(set(campaigns) | set(waiting))
        taps = submission_store.get_or_create_taps(
            conn, cluster_id=self.cluster.id, campaign_ids=wanted, settings=self.taps)
        for campaign_id, tap in list(taps.items()):
            moved = plan_tap(tap, has_waiting_jobs=waiting.get(campaign_id, 0) > 0, now=now,
                             settings=self.taps)
            if moved != tap:
                submission_store.save_tap(conn, moved)
                taps[campaign_id] = moved
        return {campaign: taps[campaign] for campaign in campaigns if campaign in taps}

    # --- submission ------------------------------------------------------------------------

    def _submit_pending(self, pending: Sequence[Job] | None = None) -> bool:
        """Behaviour 10: existing `to_launch` jobs go first, one submission per campaign and tag;
        True if there were any (then nothing is taken from the queue this pass). `pending`: the
        cluster's `to_launch` jobs when the caller has read them already."""
        if pending is None:
            with self.engine.begin() as conn:
                pending = job_store.list_to_launch_jobs(conn, cluster_id=self.cluster.id,
                                                        limit=_PENDING_LIMIT)
        groups: dict[tuple[int, str | None], list[int]] = {}
        for job in pending:
            key = (job.campaign_id, job.tag if job.is_prologue_or_epilogue else None)
            if job.is_prologue_or_epilogue and groups.get(key):
                continue  # prologue/epilogue jobs are submitted alone
            groups.setdefault(key, []).append(job.id)
        for (campaign_id, _tag), job_ids in groups.items():
            self.keep_lease()
            with self.engine.begin() as conn:
                if event_store.is_campaign_blacklisted(conn, campaign_id=campaign_id,
                                                       cluster_id=self.cluster.id):
                    continue
                context = submission_store.get_launch_context(
                    conn, campaign_id=campaign_id, cluster_id=self.cluster.id)
            if context.campaign_state != CampaignState.IN_TREATMENT:
                continue  # fixed from v3: a paused campaign's prologue waits for the resume
            if self.window_mode(context) is JobMode.WAIT:
                continue  # a nightly campaign's jobs (prologue too) wait for the night
            self._submit(campaign_id, submission.take_existing(self, job_ids))
        return bool(pending)

    def _submit_from_queue(self, taps: dict[int, Tap]) -> None:
        """Behaviour 9: one campaign per pass, at most its tap rate, in queue order; the scan stops
        at a campaign whose tap closed less than the grace period ago. Under the `capacity` and
        `pi` injection policies, `_inject` instead."""
        policy = injection.policy_of(self.cluster.injection_policy, self.injection.policy)
        if policy != injection.TAP:
            self._inject(taps, policy)
            return
        now = self.clock.now()
        for campaign_id, tap in taps.items():
            with self.engine.begin() as conn:
                context = submission_store.get_launch_context(
                    conn, campaign_id=campaign_id, cluster_id=self.cluster.id)
                blacklisted = event_store.is_campaign_blacklisted(
                    conn, campaign_id=campaign_id, cluster_id=self.cluster.id)
            if context.campaign_state != CampaignState.IN_TREATMENT:
                continue
            if is_in_grace(tap, now, self.taps):
                return
            if not tap.is_open or blacklisted:
                continue
            if self.window_mode(context) is JobMode.WAIT:
                continue  # a nightly campaign by day: its queued tasks wait for the night
            rate = 1 if context.is_test_mode else tap.rate
            submitted = self._submit_tasks(context, campaign_id, rate)
            if should_increase(tap, submitted=submitted, settings=self.taps):
                with self.engine.begin() as conn:
                    submission_store.save_tap(conn, increase_tap(tap, self.taps))
            return

    def _inject(self, taps: dict[int, Tap], policy: str) -> None:
        """`capacity` and `pi` (`cigri.domain.injection`): the policy decides how many tasks the
        cluster takes this pass, shared among the queued campaigns in queue order (an equal share
        of what is left each, so what one cannot take goes to the next; one array job each), so users still
        alternate on the cluster under fair share. A test-mode campaign gets one job at a time,
        while none of its jobs waits."""
        budget: int | None = None
        for index, (campaign_id, tap) in enumerate(taps.items()):
            if budget is not None and budget <= 0:
                return
            self.keep_lease()
            with self.engine.begin() as conn:
                context = submission_store.get_launch_context(
                    conn, campaign_id=campaign_id, cluster_id=self.cluster.id)
                blacklisted = event_store.is_campaign_blacklisted(
                    conn, campaign_id=campaign_id, cluster_id=self.cluster.id)
                test_waiting = (injection_store.count_campaign_waiting(
                    conn, cluster_id=self.cluster.id, campaign_id=campaign_id)
                    if context.is_test_mode else 0)
            if context.campaign_state != CampaignState.IN_TREATMENT or blacklisted:
                continue
            if context.is_test_mode:
                amount = injection.decide(policy, injection.ClusterView(), self.injection,
                                          tap_rate=1, pi=self._pi, available=1, test_mode=True,
                                          campaign_waiting=test_waiting).tasks
            else:
                if budget is None:
                    budget, flow = self._injection_budget(policy, campaign_id)
                self._record_flow(tap, flow)
                amount = injection.share(budget, len(taps) - index)
            if amount <= 0:
                continue
            submitted = self._submit_tasks(context, campaign_id, amount)
            if budget is not None and not context.is_test_mode:
                budget -= submitted

    def _injection_budget(self, policy: str, campaign_id: int) -> tuple[int, int]:
        """(tasks the cluster takes this pass, the rate to record for the meta-scheduler), from
        the cluster's state and the first campaign's durations (`cigri.domain.injection`)."""
        with self.engine.begin() as conn:
            inputs = injection_store.read_inputs(
                conn, cluster_id=self.cluster.id, campaign_id=campaign_id, now=self.clock.now(),
                usage_period=self.settings.GRID_USAGE_UPDATE_PERIOD,
                max_jobs=self.injection.max_jobs)
        decision = injection.decide(policy, inputs.view, self.injection, tap_rate=0,
                                    pi=self._pi, available=inputs.available)
        self._pi = decision.pi
        log.debug("%s: %s: %d task(s) this pass, flow %d (%s)", self.name, policy,
                  decision.tasks, decision.flow, inputs.view)
        return decision.tasks, max(self.taps.initial, decision.queue_rate)

    def _record_flow(self, tap: Tap, flow: int) -> None:
        """The meta-scheduler queues up to 10 × a tap's rate: make that the policy's flow, and
        let it queue more at once when the flow grew."""
        if flow == tap.rate:
            return
        with self.engine.begin() as conn:
            submission_store.save_tap(conn, dataclasses.replace(tap, rate=flow))
            if flow > tap.rate:
                notify_daemons(conn, "metascheduler")

    def _submit_tasks(self, context: LaunchContext, campaign_id: int, amount: int) -> int:
        """Up to `amount` queued tasks of the campaign: as temporal-grouping batches when it is
        grouped here (`temporal_grouping: true`, or `auto` once it pays, `_auto_batch_size`),
        else as one array job."""
        grouping = batches.grouping_of(context,
                                       site_default=self.settings.DEFAULT_TEMPORAL_GROUPING)
        if grouping == "true":
            return self._submit_batches(campaign_id, amount)
        if grouping != batches.AUTO:
            return self._submit(campaign_id, submission.take_queued(self, campaign_id, amount))
        size, free = self._auto_batch_size(campaign_id)
        probe = self._probe if free is not None and free > 0 else None
        if size is not None:  # each free resource gets a whole batch; the rest is as counted
            tasks = amount + max(0, free or 0) * (size - 1)
            return self._submit_batches(campaign_id, tasks, size=size, free=free, probe=probe)
        return submission.submit(self, campaign_id,
                                 submission.take_queued(self, campaign_id, amount),
                                 grouped=False, on_submitted=probe)

    def _auto_batch_size(self, campaign_id: int) -> tuple[int | None, int | None]:
        """`temporal_grouping: auto`: (the batch size, or None for no grouping; the cluster's free
        resources now), from the campaign's recent task duration here and OAR's start cost
        measured on this cluster's submissions into free resources (`batches.StartCost`)."""
        with self.engine.begin() as conn:
            inputs = injection_store.read_grouping_inputs(
                conn, cluster_id=self.cluster.id, campaign_id=campaign_id, now=self.clock.now(),
                usage_period=self.settings.GRID_USAGE_UPDATE_PERIOD,
                probes=[submission_id for submission_id, _at in self._start_cost.pending])
        self._start_cost = self._start_cost.started(inputs.first_starts)
        size = batches.auto_batch_size(
            task_seconds=inputs.task_seconds, start_cost=self._start_cost.seconds,
            target_seconds=self.settings.RUNNER_TEMPORAL_GROUPING_DURATION,
            max_size=self.settings.RUNNER_MAX_TEMPORAL_GROUPED_JOBS)
        log.debug("%s: campaign %d: auto grouping: batches of %s (tasks %s s, start cost %s s)",
                  self.name, campaign_id, size, inputs.task_seconds, self._start_cost.seconds)
        return size, inputs.free

    def _probe(self, submission_id: int, at: datetime) -> None:
        """A submission made while the cluster had free resources: its first start measures
        OAR's start cost here."""
        self._start_cost = self._start_cost.submitted(submission_id, at)

    def _submit_batches(self, campaign_id: int, rate: int, *, size: int | None = None,
                        free: int | None = None,
                        probe: Callable[[int, datetime], None] | None = None) -> int:
        """Temporal grouping: up to `rate` tasks this pass, as the batch jobs `_plan_batches`
        sizes (one OAR job per batch, each its own intent). Auto grouping gives its `size` and
        the cluster's `free` resources now (else `RUNNER_TEMPORAL_GROUPING_DURATION` ÷ the
        recent task duration, and the newest usage sample's free resources)."""
        submitted = 0
        for tasks in self._plan_batches(campaign_id, rate, size=size, free=free):
            if self.stop.is_set():
                break
            self.keep_lease()
            taken = submission.submit(self, campaign_id,
                                      submission.take_queued(self, campaign_id, tasks),
                                      grouped=True, on_submitted=probe)
            if taken == 0:
                break
            submitted += taken
        return submitted

    def _plan_batches(self, campaign_id: int, rate: int, *, size: int | None = None,
                      free: int | None = None) -> list[int]:
        """Batch sizes from the campaign's recent task durations here, the target duration and
        the cluster's free resources in its newest usage sample (`cigri.domain.batches`)."""
        settings = self.settings
        since = self.clock.now() - batches.usage_max_age(settings.GRID_USAGE_UPDATE_PERIOD)
        with self.engine.begin() as conn:
            spans = batch_store.list_recent_durations(conn, campaign_id=campaign_id,
                                                      cluster_id=self.cluster.id)
            usage = batch_store.find_usage(conn, cluster_id=self.cluster.id, since=since)
            tasks = batch_store.count_queued_tasks(conn, campaign_id=campaign_id,
                                                   cluster_id=self.cluster.id, limit=rate)
        average = batches.average_seconds(spans)
        if size is None:
            size = batches.batch_size(
                average=average, target_seconds=settings.RUNNER_TEMPORAL_GROUPING_DURATION,
                max_size=settings.RUNNER_MAX_TEMPORAL_GROUPED_JOBS,
                initial_size=settings.RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS)
        if free is None:
            free = batches.free_resources(usage)
        plan = batches.plan_batches(tasks, size=size, free=free)
        log.debug("%s: campaign %d: %d task(s) in %d batch(es) (size %d, average %s s, %s free)",
                  self.name, campaign_id, tasks, len(plan), size, average, free)
        return plan

    def _submit(self, campaign_id: int, take: submission.Take) -> int:
        return submission.submit(self, campaign_id, take)

    def reconcile(self, pending: Sequence[submission_store.SubmissionRecord] | None = None) -> int:
        """Settle submissions whose fate on OAR is unknown (`pending`, when the caller has read
        them already); returns how many were settled (`cigri.daemons.submission.reconcile`)."""
        return submission.reconcile(self, pending)
