"""The runner: turns queued tasks into OAR jobs, one loop per enabled cluster (v3 §3.1).

Owns submission and the tap. Each pass on a cluster: reconcile submissions whose fate on OAR is
unknown, move the taps (closed while jobs wait, reopened otherwise), then submit the cluster's
`to_launch` jobs (prologue, epilogue, leftovers) or else queued tasks of the first eligible
campaign, as many as the cluster's injection policy says (`cigri.domain.injection`: `capacity`,
`pi`, or v3's tap rate), as one OAR array job. Polling job states on OAR is the updater's job (the
runner reads `remote_waiting` counts from the database); killing is nikita's.

Crash safety: the intent (a `submissions` row with a random key, and the jobs in `launching` with
their `array_index`) is committed before the OAR call, the OAR job name carries the key, and the
OAR ids are recorded in a new transaction. An intent left behind (runner killed) or a call that
failed without an answer is reconciled by asking OAR for jobs of that name: adopted if OAR has them,
otherwise the tasks go back to the bag. Each job's `remote_id` is the OAR job of its own array index.

One process runs a `ClusterRunner` thread per enabled cluster, each holding the lease
`runner:<cluster>`, so only one instance per cluster is active across hosts; clusters added or
enabled later are picked up without a restart, disabled ones are dropped. Each pass re-reads its
cluster row and gets its OAR client for that row from the process's one client cache, so an edited
cluster (`cigri cluster set`: URL, auth, chunk size, timeout) is used from the next pass on. A
failed cluster discovery (the database away for a moment) is retried like a failed pass.

Settings: RUNNER_MIN_CYCLE_DURATION (pass interval), RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS,
RUNNER_TAP_INCREASE_FACTOR, RUNNER_TAP_INCREASE_MAX, RUNNER_TAP_GRACE_PERIOD, DEFAULT_JOB_RESOURCES,
DEFAULT_JOB_WALLTIME, LEASE_SECONDS, REST_QUERIES_TIMEOUT, RUNNER_MAX_TEMPORAL_GROUPED_JOBS,
RUNNER_TEMPORAL_GROUPING_DURATION, GRID_USAGE_UPDATE_PERIOD, RUNNER_INJECTION_POLICY,
RUNNER_WAITING_REFERENCE, RUNNER_MAX_JOBS_PER_PASS, RUNNER_PI_KP, RUNNER_PI_KI.

The OAR job type of a submission is decided here, when it is made (`ClusterRunner.mode`): the
campaign's type, test mode and the cluster's night window at the clock's time (`nightly` waits by
day, `semi-best-effort` is best-effort by day), whatever the queue row said when it was queued.

Temporal grouping (`temporal_grouping: true` on the cluster): the tasks claimed in one pass (the
tap rate) are split into batches of about RUNNER_TEMPORAL_GROUPING_DURATION ÷ the campaign's recent
task duration there (at most RUNNER_MAX_TEMPORAL_GROUPED_JOBS), smaller while the cluster has free
resources to fill (its newest grid-usage sample); each batch is one OAR job running its tasks in
turn (`cigri.domain.batches`); its jobs are tagged `batch` and share its OAR id as `remote_id`.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection

from cigri.config import Settings
from cigri.daemons.base import (
    Daemon,
    DaemonContext,
    daemon_context,
    first_line,
    is_database_outage,
    start_listener,
)
from cigri.domain import batches, cluster_tokens, injection
from cigri.domain.admission import may_run_normal_jobs
from cigri.domain.clusters import Cluster
from cigri.domain.event_codes import EventCode
from cigri.domain.jobs import EPILOGUE, PROLOGUE, Job, JobChange, LaunchContext, LaunchItem
from cigri.domain.night import JobMode, NightWindow, job_mode
from cigri.domain.oar import OarApi, OarError, OarJob, OarRejected, SubmitRequest
from cigri.domain.states import (
    PRIORITY_RESUBMIT,
    AuthType,
    CampaignState,
    EventClass,
    EventState,
    JobState,
)
from cigri.domain.tap import (
    Tap,
    TapSettings,
    increase_tap,
    is_in_grace,
    plan_tap,
    reset_tap,
    should_increase,
)
from cigri.domain.telemetry import JOBS_SUBMITTED, RECORDER
from cigri.storage import batches as batch_store
from cigri.storage import events as event_store
from cigri.storage import injection as injection_store
from cigri.storage import jobs as job_store
from cigri.storage import submissions as submission_store
from cigri.storage.clusters import get_cluster, list_clusters
from cigri.storage.heartbeats import notify_daemons
from cigri.storage.incidents import open_campaign_blacklist, record_cluster_error
from cigri.storage.queries import list_admission_rules

log = logging.getLogger(__name__)

STUCK_LAUNCHING_JOB: Final = EventCode.STUCK_LAUNCHING_JOB
# A parameter whose jobs OAR never received this many times is not put back in the bag again: its
# last job stays in `event` with an open RUNNER_SUBMIT_ERROR (v3's code for any other submission
# failure, which the notifier aggregates per campaign) and the campaign is blacklisted on
# the cluster, instead of looping for ever when OAR fails every submission without an answer.
MAX_STUCK_LAUNCHES: Final = 3
RUNNER_SUBMIT_ERROR: Final = EventCode.RUNNER_SUBMIT_ERROR
_SUBMIT_ERROR_CODES: Final = {401: EventCode.RUNNER_SUBMIT_PERMISSION_DENIED,
                              413: EventCode.RUNNER_SUBMIT_TOO_LARGE}
_PENDING_LIMIT: Final = 100


class _NothingTaken(Exception):
    """Nothing left to take: roll the intent back."""


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


def build_request(context: LaunchContext, items: Sequence[LaunchItem], *, name: str,
                  settings: Settings, besteffort: bool | None = None) -> SubmitRequest:
    """The OAR submission of a set of jobs of one campaign (behaviour 12): an array job whose lines
    are the parameters, or a plain job for one parameter; prologue/epilogue as normal single jobs.
    `besteffort`: the runner's choice for this submission (`job_mode`: campaign type, test mode,
    night window); None: the queue row's flag, never in test mode."""
    if besteffort is None:
        besteffort = items[0].besteffort and not context.is_test_mode
    campaign_id = context.campaign_id
    prefix = f"export CIGRI_CAMPAIGN_ID={campaign_id};"
    job_types = [t.strip() for t in context.prop("cluster_job_type").split(",") if t.strip()]
    tag = items[0].tag
    if tag == batches.BATCH_TAG:
        return _batch_request(context, items, name=name, settings=settings, job_types=job_types,
                              besteffort=besteffort)
    if tag in {PROLOGUE, EPILOGUE}:
        return SubmitRequest(
            command=prefix + context.prop(tag), resources="/resource_id=1",
            walltime=context.prop(f"{tag}_walltime",
                                  context.prop("walltime", settings.DEFAULT_JOB_WALLTIME)),
            name=name, types=job_types,
            properties=context.prop("properties") or None, project=context.prop("project") or None)
    # v3 §7.17: test mode submits normal jobs, whatever the campaign's type
    if besteffort and "besteffort" not in job_types:
        job_types.append("besteffort")
    command = prefix + context.prop("exec_file")
    params = [item.param or "" for item in items]
    if len(params) == 1:
        command, params = f"{command} {params[0]}", []
    directory = context.prop("exec_directory") or None
    if directory:
        directory = directory.replace("{CAMPAIGN_ID}", str(campaign_id))
    return SubmitRequest(
        command=command, resources=context.prop("resources", settings.DEFAULT_JOB_RESOURCES),
        walltime=context.prop("walltime", settings.DEFAULT_JOB_WALLTIME), params=params,
        name=name, directory=directory, types=job_types,
        properties=context.prop("properties") or None, project=context.prop("project") or None)


def _directory(context: LaunchContext) -> str | None:
    directory = context.prop("exec_directory") or None
    return directory.replace("{CAMPAIGN_ID}", str(context.campaign_id)) if directory else None


def _batch_request(context: LaunchContext, items: Sequence[LaunchItem], *, name: str,
                   settings: Settings, job_types: list[str], besteffort: bool) -> SubmitRequest:
    """One OAR job (not an array) running the batch script; walltime scaled by the number of
    tasks (v3 left it at the single-job walltime)."""
    if besteffort and "besteffort" not in job_types:
        job_types.append("besteffort")
    walltime = context.prop("walltime", settings.DEFAULT_JOB_WALLTIME)
    return SubmitRequest(
        command=batches.batch_script(items, campaign_id=context.campaign_id, name=name,
                                     exec_file=context.prop("exec_file")),
        resources=context.prop("resources", settings.DEFAULT_JOB_RESOURCES),
        walltime=batches.scale_walltime(walltime, len(items)), name=name,
        directory=_directory(context), types=job_types,
        properties=context.prop("properties") or None, project=context.prop("project") or None)


def remote_ids_by_index(found: Sequence[OarJob], nb_jobs: int) -> dict[int, int]:
    """Which OAR job runs which array index, from OAR's listing of a submission's jobs."""
    if nb_jobs == 1 and len(found) == 1:
        return {1: found[0].id}
    if found and all(job.array_index is not None for job in found):
        return {int(job.array_index or 0): job.id for job in found}
    # OAR numbers the jobs of an array consecutively in index order.
    return {index: job.id for index, job in enumerate(sorted(found, key=lambda j: j.id), start=1)}


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

    def run_once(self) -> None:
        # One transaction reads what the pass needs (and moves the taps); a pass with nothing to
        # do ends there. Only settling submissions changes the taps' inputs: then they move again.
        now = self.clock.now()
        pending: list[submission_store.SubmissionRecord] = []
        taps: dict[int, Tap] = {}
        to_launch: list[Job] = []
        with self.engine.begin() as conn:
            self.cluster = get_cluster(conn, self.cluster.id)
            blacklisted = event_store.is_cluster_blacklisted(conn, self.cluster.id)
            if blacklisted:
                self._close_all_taps(conn)
            elif self.cluster.enabled:
                # one probe says which reads can find anything: an idle pass skips them all
                work = submission_store.find_runner_work(conn, cluster_id=self.cluster.id,
                                                         intent_before=now - self.lease)
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
            return
        if pending:
            self.reconcile(pending)
            taps = self._move_taps()
        if not self._submit_pending(to_launch):
            self._submit_from_queue(taps)

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
            self._submit(campaign_id, self._existing(job_ids))
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
            if batches.is_grouped(context):
                submitted = self._submit_batches(campaign_id, rate)
            else:
                submitted = self._submit(campaign_id, self._queued(campaign_id, rate))
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
            if batches.is_grouped(context):
                submitted = self._submit_batches(campaign_id, amount)
            else:
                submitted = self._submit(campaign_id, self._queued(campaign_id, amount))
            if budget is not None and not context.is_test_mode:
                budget -= submitted

    def _injection_budget(self, policy: str, campaign_id: int) -> tuple[int, int]:
        """(tasks the cluster takes this pass, the flow per pass the policy wants), from the
        cluster's state and the first campaign's durations (`cigri.domain.injection`)."""
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
        return decision.tasks, max(self.taps.initial, decision.flow)

    def _record_flow(self, tap: Tap, flow: int) -> None:
        """The meta-scheduler queues up to 10 × a tap's rate: make that the policy's flow, and
        let it queue more at once when the flow grew."""
        if flow == tap.rate:
            return
        with self.engine.begin() as conn:
            submission_store.save_tap(conn, dataclasses.replace(tap, rate=flow))
            if flow > tap.rate:
                notify_daemons(conn, "metascheduler")

    def _submit_batches(self, campaign_id: int, rate: int) -> int:
        """Temporal grouping: up to `rate` tasks this pass, as the batch jobs `_plan_batches`
        sizes (one OAR job per batch, each its own intent)."""
        submitted = 0
        for size in self._plan_batches(campaign_id, rate):
            if self.stop.is_set():
                break
            self.keep_lease()
            taken = self._submit(campaign_id, self._queued(campaign_id, size))
            if taken == 0:
                break
            submitted += taken
        return submitted

    def _plan_batches(self, campaign_id: int, rate: int) -> list[int]:
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
        size = batches.batch_size(
            average=average, target_seconds=settings.RUNNER_TEMPORAL_GROUPING_DURATION,
            max_size=settings.RUNNER_MAX_TEMPORAL_GROUPED_JOBS,
            initial_size=settings.RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS)
        free = batches.free_resources(usage)
        plan = batches.plan_batches(tasks, size=size, free=free)
        log.debug("%s: campaign %d: %d task(s) in %d batch(es) (size %d, average %s s, %s free)",
                  self.name, campaign_id, tasks, len(plan), size, average, free)
        return plan

    def _existing(self, job_ids: list[int]) -> Callable[[Connection, int], list[LaunchItem]]:
        def take(conn: Connection, submission_id: int) -> list[LaunchItem]:
            return job_store.launch_existing_jobs(conn, job_ids, submission_id=submission_id,
                                                  now=self.clock.now())
        return take

    def _queued(self, campaign_id: int,
                rate: int) -> Callable[[Connection, int], list[LaunchItem]]:
        def take(conn: Connection, submission_id: int) -> list[LaunchItem]:
            return job_store.claim_queued_tasks(conn, cluster_id=self.cluster.id,
                                                campaign_id=campaign_id, limit=rate,
                                                submission_id=submission_id,
                                                now=self.clock.now())
        return take

    def _submit(self, campaign_id: int,
                take: Callable[[Connection, int], list[LaunchItem]]) -> int:
        """Record the intent (submission row + `launching` jobs), commit, call OAR, record the
        OAR ids. Returns how many jobs went to OAR."""
        key = secrets.token_hex(8)
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                submission_id = submission_store.record_intent(
                    conn, key=key, cluster_id=self.cluster.id, campaign_id=campaign_id,
                    nb_jobs=0, now=now)
                items = take(conn, submission_id)
                if not items:
                    raise _NothingTaken
                submission_store.set_nb_jobs(conn, submission_id, len(items))
                context = submission_store.get_launch_context(conn, campaign_id=campaign_id,
                                                              cluster_id=self.cluster.id)
                if batches.is_grouped(context) and not any(
                        item.tag in {PROLOGUE, EPILOGUE} for item in items):
                    job_store.set_tag(conn, [item.job_id for item in items], batches.BATCH_TAG)
                    items = [dataclasses.replace(item, tag=batches.BATCH_TAG) for item in items]
        except _NothingTaken:
            return 0  # rolled back: the tasks went elsewhere meanwhile
        name = submission_store.oar_job_name(campaign_id=campaign_id, key=key)
        request = build_request(context, items, name=name, settings=self.settings,
                                besteffort=self.mode(context) is JobMode.BESTEFFORT)
        try:
            answer = self.oar.submit(request, user=context.cluster_login)
        except OarRejected as error:
            self._record_rejection(submission_id, items, error, login=context.cluster_login)
            return 0
        except OarError as error:
            log.warning("%s: submission %s of campaign %d has no answer (%s); will reconcile",
                        self.name, key, campaign_id, error)
            with self.engine.begin() as conn:
                submission_store.mark_submission(
                    conn, submission_id, expected=(submission_store.INTENT,),
                    state=submission_store.UNCERTAIN, now=self.clock.now(), message=str(error))
                record_cluster_error(conn, cluster_id=self.cluster.id, error=error,
                                     now=self.clock.now())
            return 0
        remote_ids = dict(enumerate(answer.job_ids, start=1))
        if items[0].tag == batches.BATCH_TAG:  # one OAR job runs them all
            remote_ids = {item.array_index: answer.job_ids[0] for item in items}
        with self.engine.begin() as conn:
            recorded = job_store.record_remote_ids(
                conn, submission_id=submission_id, remote_ids=remote_ids, now=self.clock.now())
            done = recorded == len(items)
            submission_store.mark_submission(
                conn, submission_id, expected=(submission_store.INTENT,),
                state=submission_store.SUBMITTED if done else submission_store.UNCERTAIN,
                now=self.clock.now(), remote_array_id=answer.array_id)
        RECORDER.inc(JOBS_SUBMITTED, {"cluster": self.cluster.name}, recorded)
        log.info("%s: submitted %d job(s) of campaign %d as OAR %d", self.name, recorded,
                 campaign_id, answer.array_id,
                 extra={"campaign_id": campaign_id, "cluster": self.cluster.name,
                        "action": "submit"})
        return recorded

    def _record_rejection(self, submission_id: int, items: Sequence[LaunchItem],
                          error: OarRejected, *, login: str = "") -> None:
        """Behaviour 21: OAR refused; one RUNNER_SUBMIT_* event per job, campaign blacklisted.
        On a jwt cluster a missing or refused user token says which `gridtoken` fixes it."""
        code = _SUBMIT_ERROR_CODES.get(error.status or 0, RUNNER_SUBMIT_ERROR)
        message = f"{error.message} {error.body or ''}".strip()
        if error.code in cluster_tokens.MISSING_CODES:
            code = cluster_tokens.USER_TOKEN_MISSING
            message = cluster_tokens.user_token_message(login, self.cluster.name, self.cluster.id)
        elif code == EventCode.RUNNER_SUBMIT_PERMISSION_DENIED and \
                AuthType(self.cluster.api_auth_type) is AuthType.JWT:
            message = cluster_tokens.user_token_refused_message(
                "the campaign owner", self.cluster.name, self.cluster.id, message)
        now = self.clock.now()
        campaign_id = items[0].campaign_id
        log.warning("%s: OAR refused submission %d of campaign %d: %s", self.name,
                    submission_id, campaign_id, error)
        with self.engine.begin() as conn:
            first: int | None = None
            for item in items:
                if not job_store.mark_job(conn, JobChange(job_id=item.job_id, state=JobState.EVENT),
                                          expected=(JobState.LAUNCHING,), now=now):
                    continue
                event_id = event_store.record_event(
                    conn, class_=EventClass.JOB, code=code, job_id=item.job_id,
                    campaign_id=campaign_id, cluster_id=self.cluster.id, now=now,
                    message=message, checked=True)
                first = first or event_id
            if first is not None:
                open_campaign_blacklist(conn, failure_id=first, now=now)
            submission_store.mark_submission(conn, submission_id,
                                             expected=(submission_store.INTENT,),
                                             state=submission_store.FAILED, now=now,
                                             message=str(error))

    # --- reconciliation --------------------------------------------------------------------

    def reconcile(self, pending: Sequence[submission_store.SubmissionRecord] | None = None) -> int:
        """Settle submissions whose fate on OAR is unknown (`pending`, when the caller has read
        them already); returns how many were settled."""
        if pending is None:
            now = self.clock.now()
            with self.engine.begin() as conn:
                pending = submission_store.list_submissions_to_reconcile(
                    conn, cluster_id=self.cluster.id, intent_before=now - self.lease)
        settled = 0
        for submission in pending:
            self.keep_lease()
            with self.engine.begin() as conn:
                context = submission_store.get_launch_context(
                    conn, campaign_id=submission.campaign_id, cluster_id=self.cluster.id)
            name = submission_store.oar_job_name(campaign_id=submission.campaign_id,
                                                 key=submission.key)
            try:
                found = self.oar.find_jobs_by_name(name, user=context.cluster_login)
            except OarError as error:
                log.warning("%s: cannot reconcile submission %s yet: %s", self.name,
                            submission.key, error)
                return settled
            self._settle(submission, found)
            settled += 1
        return settled

    def _settle(self, submission: submission_store.SubmissionRecord,
                found: Sequence[OarJob]) -> None:
        now = self.clock.now()
        with self.engine.begin() as conn:
            adopted = 0
            if found:
                remote_ids = remote_ids_by_index(found, submission.nb_jobs)
                mine = job_store.list_jobs_of_submission(conn, submission.id)
                if len(found) == 1 and any(job.tag == batches.BATCH_TAG for job in mine):
                    remote_ids = {int(job.array_index or 0): found[0].id for job in mine}
                adopted = job_store.record_remote_ids(
                    conn, submission_id=submission.id, remote_ids=remote_ids, now=now)
            returned = self._return_to_bag(conn, submission.id, now)
            state = submission_store.ADOPTED if found else submission_store.ABANDONED
            submission_store.mark_submission(
                conn, submission.id, expected=(submission_store.INTENT, submission_store.UNCERTAIN),
                state=state, now=now,
                message=f"reconciled: {adopted} adopted, {returned} back to the bag")
        log.info("%s: reconciled submission %s: %d job(s) adopted from OAR, %d back to the bag",
                 self.name, submission.key, adopted, returned,
                 extra={"campaign_id": submission.campaign_id, "cluster": self.cluster.name,
                        "action": "reconcile"})

    def _return_to_bag(self, conn: Connection, submission_id: int, now: datetime) -> int:
        """Behaviour 23 (adapted): jobs OAR never got go to `event` with a STUCK_LAUNCHING_JOB
        event and their tasks back to the bag with priority 20; a parameter already stuck
        MAX_STUCK_LAUNCHES times stops there with an open RUNNER_SUBMIT_ERROR instead (counted since
        its last submission error, so a parameter the user fixed and resubmitted starts afresh)."""
        returned = 0
        for job in job_store.list_jobs_of_submission(conn, submission_id):
            if job.state is not JobState.LAUNCHING:
                continue
            if not job_store.mark_job(conn, JobChange(job_id=job.id, state=JobState.EVENT),
                                      expected=(JobState.LAUNCHING,), now=now):
                continue
            stuck = (job_store.count_param_events(conn, param_id=job.param_id,
                                                  codes=(STUCK_LAUNCHING_JOB,),
                                                  since_codes=(RUNNER_SUBMIT_ERROR,))
                     if job.param_id is not None else 0)
            if stuck >= MAX_STUCK_LAUNCHES - 1:
                event_id = event_store.record_event(
                    conn, class_=EventClass.JOB, code=RUNNER_SUBMIT_ERROR, job_id=job.id,
                    campaign_id=job.campaign_id, cluster_id=job.cluster_id, now=now,
                    checked=True,
                    message=f"OAR never received this job's parameter {stuck + 1} times; "
                            "not resubmitted again (fix the cause, then resubmit)")
                open_campaign_blacklist(conn, failure_id=event_id, now=now)
                continue
            job_store.resubmit(conn, job, priority=PRIORITY_RESUBMIT)
            event_store.record_event(
                conn, class_=EventClass.JOB, code=STUCK_LAUNCHING_JOB, job_id=job.id,
                campaign_id=job.campaign_id, cluster_id=job.cluster_id, now=now,
                state=EventState.CLOSED, checked=True,
                message="OAR never received this job; its task is back in the bag")
            returned += 1
        return returned


class RunnerProcess:
    """One runner thread per enabled cluster; picks up new and re-enabled clusters, drops disabled
    ones. `run` returns when `stop` is set, and raises if a cluster thread died."""

    def __init__(self, context: DaemonContext, *, interval: timedelta | None = None,
                 discovery_interval: timedelta = timedelta(seconds=5)) -> None:
        self.context = context
        self.engine = context.engine
        self.stop = context.stop
        self.interval = interval
        self.discovery_interval = discovery_interval
        self.runners: dict[int, tuple[ClusterRunner, threading.Thread, threading.Event]] = {}
        self._awake: tuple[ClusterRunner, ...] = ()  # what a notification wakes (swapped whole)
        self.failed: list[str] = []
        self.discovery_failures = 0  # failed discoveries in a row

    def discover(self) -> None:
        with self.engine.begin() as conn:
            enabled = {cluster.id: cluster for cluster in list_clusters(conn, enabled_only=True)}
        for cluster_id, (runner, _thread, own_stop) in list(self.runners.items()):
            if cluster_id not in enabled:
                log.info("%s: cluster disabled or removed, stopping its loop", runner.name)
                own_stop.set()
                del self.runners[cluster_id]
        for cluster_id, cluster in enabled.items():
            known = self.runners.get(cluster_id)
            if known is not None and known[1].is_alive():
                continue
            own_stop = threading.Event()
            runner = ClusterRunner(dataclasses.replace(self.context, stop=own_stop),
                                   cluster=cluster, interval=self.interval, listen=False)
            thread = threading.Thread(target=self._run_one, args=(runner,), daemon=True,
                                      name=runner.name)
            self.runners[cluster_id] = (runner, thread, own_stop)
            thread.start()
            log.info("%s: loop started", runner.name)
        self._awake = tuple(runner for runner, _thread, _stop in self.runners.values())

    def _discover_once(self) -> None:
        """A discovery that fails (the database away for a moment) is a failed pass: logged,
        retried at the next discovery; DAEMON_MAX_CONSECUTIVE_FAILURES in a row stop the process
        (exit status 1), as a cluster loop's failures do. The running loops go on meanwhile."""
        try:
            self.discover()
            self.discovery_failures = 0
        except Exception as error:
            self.discovery_failures += 1
            if is_database_outage(error):
                log.error("runner: cluster discovery failed (%d in a row): database error: %s",
                          self.discovery_failures, first_line(error))
            else:
                log.exception("runner: cluster discovery failed (%d in a row)",
                              self.discovery_failures)
            if self.discovery_failures >= self.context.settings.DAEMON_MAX_CONSECUTIVE_FAILURES:
                self.failed.append("cluster discovery")
                self.stop.set()

    def wake_all(self) -> None:
        """A `cigri_runner` notification: every cluster loop starts its next pass now."""
        for runner in self._awake:
            runner.wake()

    def _run_one(self, runner: ClusterRunner) -> None:
        try:
            runner.run()
        except Exception:
            log.critical("%s: too many failed passes", runner.name)
            self.failed.append(runner.name)
            self.stop.set()

    def run(self) -> None:
        # one LISTEN connection for the whole process, not one per cluster
        start_listener(self.engine, [f"cigri_{ClusterRunner.role}"], stop=self.stop,
                       on_notify=self.wake_all, name="runner")
        try:
            while not self.stop.is_set():
                self._discover_once()
                self.stop.wait(self.discovery_interval.total_seconds())
        finally:
            for _runner, _thread, own_stop in self.runners.values():
                own_stop.set()
            for _runner, thread, _own_stop in self.runners.values():
                thread.join(timeout=30)
        if self.failed:
            raise RuntimeError(f"runner loops failed: {', '.join(self.failed)}")


def main() -> None:
    """`cigri-runner`: every enabled cluster's loop in one process."""
    import sys

    with daemon_context("runner") as context:
        try:
            RunnerProcess(context).run()
        except RuntimeError as error:
            log.critical("%s", error)
            sys.exit(1)
