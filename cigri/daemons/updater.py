"""The updater: follows every cigri job on OAR, analyses failures, resubmits, finishes campaigns,
and looks after cluster health (v3 runner polling §3.1.4, Colombo §3.5, updator §3.3).

Owns, each pass: bulk polling of the jobs of every enabled, non-blacklisted cluster (pages of
`api_chunk_size` ids, one OAR request per page), the OAR → cigri state mapping, failure analysis
(`cigri.domain.failures`) with resubmission as a new task of the same parameter, `EXIT_ERROR` events
with the stderr tail, campaign×cluster blacklists, the retry budget (`TOO_MANY_RESUBMIT`), autofix of
transient cluster errors and blacklist lifting, cluster stress (`UNDER_STRESS`), and campaign
completion (`FINISHED_CAMPAIGN`, `completion_time`). Does not submit (runner) nor kill (nikita).

No transaction spans an OAR call: reads from OAR happen first, then each job's change is written in
a short, state-guarded transaction, so a job moved meanwhile by nikita or a user is left alone.

OAR 3 (jwt) clusters: a missing or refused cluster-admin token is an open ADMIN_TOKEN_MISSING /
ADMIN_TOKEN_REJECTED cluster event with a whole-cluster blacklist, closed as soon as a bulk call
with the token works again; campaigns stopped for a missing user token (RUNNER_SUBMIT_TOKEN_NOT_FOUND)
resume once the user has one (`cigri.storage.cluster_tokens`, docs/oar.md).

Settings: UPDATER_INTERVAL, STDERR_TAIL, AUTOFIX_DELAY, STRESS_FACTOR, DEFAULT_MAX_RESUBMISSIONS,
REST_QUERIES_TIMEOUT, EPILOGUE_BLACKLIST_TIMEOUT.

Temporal-grouping batches (jobs tagged `batch` sharing one OAR job): while the OAR job is not
final they follow it like ordinary jobs (no file read); once it is final, each sub-job's state file
is read once (`cigri.domain.batches`): `RET=0` terminates it, another `RET` goes through the
failure analysis as that exit status, and a sub-job with no `RET` (the batch was killed before it
finished) takes the OAR job's own failure (a best-effort kill resubmits it for free). None is ever
left in `batch_waiting` (v3 lost those). A running sub-job carries its batch's OAR start time
until its state file gives its own (nikita checks a batch as a whole, against its scaled walltime).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection

from cigri.config import Settings
from cigri.daemons.base import DaemonContext, OarDaemon
from cigri.daemons.base import main as daemon_main
from cigri.domain import batches, colombo, failures
from cigri.domain.campaigns import EPILOGUE_SKIPPED, epilogue_skip_message
from cigri.domain.clusters import Cluster
from cigri.domain.event_codes import EventCode
from cigri.domain.events import BLACKLIST
from cigri.domain.jobs import Job, JobChange, UpdateKind, plan_job_update
from cigri.domain.oar import OarApi, OarError, OarJob, OarNotFound
from cigri.domain.states import AuthType, EventClass, EventState, JobState
from cigri.domain.telemetry import JOBS_RESUBMITTED, RECORDER
from cigri.storage import cluster_tokens as token_store
from cigri.storage import events as event_store
from cigri.storage import failures as failure_store
from cigri.storage import jobs as job_store
from cigri.storage.clusters import list_clusters
from cigri.storage.heartbeats import notify_daemons
from cigri.storage.incidents import open_campaign_blacklist, record_cluster_error, record_stress
from cigri.storage.submissions import get_launch_context

log = logging.getLogger(__name__)

FINISHED_CAMPAIGN: Final = EventCode.FINISHED_CAMPAIGN
LOST_JOB: Final = EventCode.RUNNER_GET_JOB_UNKNOWN_ERROR
_POLLED: Final = (JobState.SUBMITTED, JobState.REMOTE_WAITING, JobState.RUNNING)
# v3 read the stress factor once per almighty cycle (10 s); polling faster than that must not
# multiply the requests spent on it.
STRESS_REFRESH: Final = timedelta(seconds=10)
# Open events that give autofix or blacklist lifting something to do.
_WATCHED_CODES: Final = sorted(colombo.AUTOFIX_CODES | {BLACKLIST})


def _is_ours(oar_job: OarJob, job: Job) -> bool:
    """The OAR job carries the name cigri gave it (`cigri.<campaign id>[.<key>]`), if any."""
    name = oar_job.name
    if not name:
        return True
    prefix = f"cigri.{job.campaign_id}"
    return name == prefix or name.startswith(prefix + ".")


class Updater(OarDaemon):
    """One updater for the whole grid."""

    role = "updater"

    def __init__(self, context: DaemonContext, *, interval: timedelta | None = None,
                 lease: timedelta | None = None, owner: str | None = None) -> None:
        super().__init__(context, interval=interval, lease=lease, owner=owner)
        self._stress_read_at: datetime | None = None
        self._waiting_seen = False  # a job just submitted had not started: poll again soon
        # (cluster id, OAR batch id) -> its sub-jobs' states, read once per pass
        self._batch_states: dict[tuple[int, int], dict[int, batches.SubJobState]] = {}
        # (campaign id, cluster id) -> the owner's login there, read once per pass
        self._logins: dict[tuple[int, int], str] = {}

    @classmethod
    def default_interval(cls, settings: Settings) -> timedelta:
        return settings.updater_interval

    def next_interval(self) -> timedelta:
        """UPDATER_WAITING_INTERVAL after a pass that saw jobs just submitted and not started yet
        (so their start is seen, and the runner woken, sooner), else UPDATER_INTERVAL."""
        if self._waiting_seen:
            return min(self.interval, self.settings.updater_waiting_interval)
        return self.interval

    def wake(self) -> None:
        """A notification (the runner recorded a submission) ends an idle stretch only: a busy
        updater keeps its cadence (UPDATER_INTERVAL, UPDATER_WAITING_INTERVAL), so a stream of
        submissions does not turn into a stream of polls."""
        if self.idle:
            super().wake()

    def run_once(self) -> bool:
        """One pass; False (idle) when no job is on a cluster and no cluster incident is open."""
        self._waiting_seen = False
        self._batch_states.clear()
        self._logins.clear()
        with self.engine.begin() as conn:
            everywhere = list_clusters(conn)
            to_probe = self._admin_tokens_in(conn, everywhere)
            blacklisted = event_store.list_blacklisted_clusters(conn)
            busy = job_store.clusters_with_jobs_to_poll(conn)
        if to_probe and self.probe_admin_tokens(to_probe):
            with self.engine.begin() as conn:  # a token works again: its blacklist is gone
                blacklisted = event_store.list_blacklisted_clusters(conn)
        for cluster in everywhere:  # a disabled cluster's jobs are still followed to their end
            if cluster.id not in blacklisted and cluster.id in busy:
                self.poll_cluster(cluster)
        clusters = [cluster for cluster in everywhere if cluster.enabled]
        with self.engine.begin() as conn:  # most passes have no cluster error nor blacklist
            watched = event_store.list_open_events(conn, code=_WATCHED_CODES, limit=1)
        if watched:  # a token problem always comes with an open blacklist
            self.settle_tokens(everywhere)
            self.autofix(clusters)
            self.lift_blacklists()
        now = self.clock.now()
        if self._stress_read_at is None or now - self._stress_read_at >= STRESS_REFRESH:
            self._stress_read_at = now
            self.refresh_stress([c for c in clusters if c.id not in blacklisted])
        self.finish_campaigns()
        return bool(busy or watched or to_probe)

    # --- polling ---------------------------------------------------------------------------

    def poll_cluster(self, cluster: Cluster) -> int:
        """Read the state of every job of the cluster from OAR, one request per chunk of ids."""
        chunk = max(1, cluster.api_chunk_size)
        after = 0
        seen = 0
        oar = self.oar(cluster)
        while not self.stop.is_set():
            self.keep_lease()  # a long poll keeps its lease, or stops here if it lost it
            with self.engine.begin() as conn:
                page = job_store.list_jobs_to_poll(conn, cluster_id=cluster.id, after_id=after,
                                                   limit=chunk)
            if not page:
                break
            after = page[-1].id
            remote_ids = sorted({job.remote_id for job in page if job.remote_id is not None})
            try:
                answers = {oar_job.id: oar_job for oar_job in oar.get_jobs(remote_ids)}
            except OarError as error:
                log.warning("updater: polling %s failed: %s", cluster.name, error)
                now = self.clock.now()
                with self.engine.begin() as conn:
                    if not token_store.record_admin_token_refusal(conn, cluster, error, now=now):
                        record_cluster_error(conn, cluster_id=cluster.id, error=error, now=now)
                return seen
            self._apply(cluster, oar, page, answers)
            seen += len(page)
            if len(page) < chunk:
                break
        return seen

    def _apply(self, cluster: Cluster, oar: OarApi, page: Sequence[Job],
               answers: dict[int, OarJob]) -> None:
        failed: list[tuple[Job, OarJob]] = []
        ended_batches: list[tuple[Job, OarJob]] = []
        changes: list[JobChange] = []
        for job in page:
            oar_job = answers.get(job.remote_id or -1)
            if oar_job is not None and not _is_ours(oar_job, job):
                oar_job = None  # the id is someone else's now (an OAR reset reuses ids)
            if oar_job is None:
                oar_job = self._unlisted(cluster, oar, job)
                if oar_job is None:
                    continue
            if job.tag == batches.BATCH_TAG and oar_job.is_final:
                ended_batches.append((job, oar_job))
                continue
            update = plan_job_update(job, oar_job)
            if update.kind is UpdateKind.FAILED:
                failed.append((job, oar_job))
            elif (change := update.change(job.id)) is not None:
                changes.append(change)
        # a job that started or ended changes what the runner should submit: wake it now
        # rather than at its next interval (with the change, so only if it commits)
        moved = [c for c in changes if c.state is not JobState.REMOTE_WAITING]
        if changes:
            with self.engine.begin() as conn:
                job_store.mark_jobs(conn, changes, expected=_POLLED, now=self.clock.now())
                if moved:
                    notify_daemons(conn, "runner")
        for job, oar_job in failed:
            self.keep_lease()
            self.handle_failure(cluster, oar, job, oar_job)
        terminated: list[JobChange] = []
        for job, oar_job in ended_batches:
            self.finish_sub_job(cluster, oar, job, oar_job, terminated=terminated)
        if terminated:  # the page's successful sub-jobs in one statement
            with self.engine.begin() as conn:
                job_store.mark_jobs(conn, terminated, expected=_POLLED, now=self.clock.now())
        if (failed or ended_batches) and not moved:
            with self.engine.begin() as conn:  # cores freed by failed jobs or ended batches
                notify_daemons(conn, "runner")
        # jobs submitted since the last pass and still not started: look again soon, they
        # may start on free cores at any moment (the jobs cigri keeps waiting on purpose, in
        # `remote_waiting`, are OAR's to start: polling them faster would only cost requests)
        started = {c.job_id for c in moved} | {job.id for job, _oar in failed}
        self._waiting_seen = self._waiting_seen or any(
            job.state is JobState.SUBMITTED and job.id not in started for job in page)

    def _login(self, job: Job, cluster: Cluster) -> str:
        """The login of the job's campaign owner on the cluster (read once per pass)."""
        key = (job.campaign_id, cluster.id)
        login = self._logins.get(key)
        if login is None:
            with self.engine.begin() as conn:
                login = get_launch_context(conn, campaign_id=job.campaign_id,
                                           cluster_id=cluster.id).cluster_login
            self._logins[key] = login
        return login

    def finish_sub_job(self, cluster: Cluster, oar: OarApi, job: Job, batch: OarJob, *,
                       terminated: list[JobChange] | None = None) -> None:
        """A sub-job of a batch whose OAR job is final: its state file decides (read as the
        campaign owner); an unreadable file (OAR unavailable) is retried next pass. A sub-job
        that succeeded is recorded at once, or added to `terminated` for the caller to record."""
        states = self._batch_states.get((cluster.id, batch.id))
        if states is None:
            login = self._login(job, cluster)
            name = batches.state_file(batch.name or f"oar-{batch.id}")
            path = batch.path_of(name)
            try:
                states = batches.parse_states(
                    oar.read_file(path, user=login).decode("utf-8", "replace"))
            except OarNotFound:
                states = {}  # no task of the batch started
            except OarError as error:
                log.info("updater: cannot read %s on %s yet: %s", path, cluster.name, error)
                return
            self._batch_states[(cluster.id, batch.id)] = states
        state = states.get(job.id, batches.SubJobState())
        if not state.finished:
            self.handle_failure(cluster, oar, job, batch)  # killed with the batch
            return
        record = batches.sub_job_record(batch, job_id=job.id, state=state)
        if record.exit_code:
            if record.start_time is not None:
                with self.engine.begin() as conn:
                    job_store.update_job_start(conn, job.id, expected=_POLLED,
                                               start_time=record.start_time)
            self.handle_failure(cluster, oar, job, record)
            return
        change = JobChange(job_id=job.id, state=JobState.TERMINATED,
                           start_time=record.start_time, stop_time=record.stop_time,
                           return_code=0)
        if terminated is not None:
            terminated.append(change)
            return
        with self.engine.begin() as conn:
            job_store.mark_jobs(conn, [change], expected=_POLLED, now=self.clock.now())

    def _unlisted(self, cluster: Cluster, oar: OarApi, job: Job) -> OarJob | None:
        """A job the bulk answer left out: ask for it alone; if OAR does not know it (or it has
        no remote id), it is lost: job event RUNNER_GET_JOB_UNKNOWN_ERROR and campaign blacklist,
        never an automatic resubmission (it may still be running somewhere)."""
        if job.remote_id is not None:
            try:
                found = oar.get_job(job.remote_id, user=self._login(job, cluster))
                if _is_ours(found, job):
                    return found
            except OarNotFound:
                pass
            except OarError as error:
                log.info("updater: cannot read OAR job %s of job %d: %s", job.remote_id, job.id,
                         error)
                return None
        now = self.clock.now()
        with self.engine.begin() as conn:
            if job_store.mark_job(conn, JobChange(job_id=job.id, state=JobState.EVENT),
                                  expected=_POLLED, now=now):
                event_id = failure_store.record_job_event(
                    conn, job, LOST_JOB,
                    f"OAR does not know job {job.remote_id} on {cluster.name}; resubmit this "
                    "job if you care", now=now)
                open_campaign_blacklist(conn, failure_id=event_id, now=now)
        return None

    # --- failures --------------------------------------------------------------------------

    def handle_failure(self, cluster: Cluster, oar: OarApi, job: Job, oar_job: OarJob) -> None:
        """Apply the failure analysis of one job (behaviours 16-19, retry budget)."""
        outcome = failures.analyze_failure(oar_job, tag=job.tag)
        message = outcome.message
        if outcome.needs_stderr:
            message += self._stderr_tail(cluster, oar, job, oar_job)
        now = self.clock.now()
        with self.engine.begin() as conn:
            if outcome.new_remote_id is not None:
                # fixed from v3: keep following the job OAR resubmitted by itself
                follow = JobChange(job_id=job.id, state=JobState.REMOTE_WAITING,
                                   remote_id=outcome.new_remote_id)
                if job_store.mark_job(conn, follow, expected=_POLLED, now=now):
                    failure_store.record_job_event(conn, job, outcome.event_code, message,
                                                   now=now, state=EventState.CLOSED)
                return
            failed = JobChange(job_id=job.id, state=JobState.EVENT, stop_time=oar_job.stop_time,
                               return_code=oar_job.exit_code)
            if not job_store.mark_job(conn, failed, expected=_POLLED, now=now):
                return  # nikita or a user got there first
            used, budget = failure_store.resubmission_budget(
                conn, job, outcome, default=self.settings.DEFAULT_MAX_RESUBMISSIONS)
            plan = failures.plan_failure(outcome, oar_job, message=message, budget_used=used,
                                         max_resubmissions=budget)
            if failure_store.apply_failure_plan(conn, job, plan, now=now):
                # published with the pass's heartbeat
                RECORDER.inc(JOBS_RESUBMITTED, {"cluster": cluster.name, "cause": plan.cause})
        if plan.resubmit:
            return
        log.info("updater: job %d (OAR %s) failed: %s", job.id, oar_job.id, outcome.event_code,
                 extra={"campaign_id": job.campaign_id, "cluster": cluster.name,
                        "action": "failure"})

    def _stderr_tail(self, cluster: Cluster, oar: OarApi, job: Job, oar_job: OarJob) -> str:
        path = failures.stderr_path(oar_job)
        if path is None:
            return ""
        try:
            tail = oar.read_file(path, user=self._login(job, cluster),
                                 tail=self.settings.STDERR_TAIL)
        except OarError as error:
            log.info("updater: cannot read %s on %s: %s", path, cluster.name, error)
            return ""
        text = tail.decode("utf-8", "replace").rstrip("\n")
        return f"\nLast {self.settings.STDERR_TAIL} lines of {path}:\n{text}"

    # --- OAR 3 tokens ------------------------------------------------------------------------

    def _admin_tokens_in(self, conn: Connection, clusters: Sequence[Cluster]) -> list[Cluster]:
        """JWT clusters, in the pass's first transaction: a missing cluster-admin token opens
        ADMIN_TOKEN_MISSING (and blacklists the cluster) before any job needs it. Returns the
        clusters whose open ADMIN_TOKEN_* event may be over (they have a token now): for
        `probe_admin_tokens`. No statement on a grid without jwt clusters."""
        jwt = [c for c in clusters if AuthType(c.api_auth_type) is AuthType.JWT]
        if not jwt:
            return []
        with_token = token_store.clusters_with_admin_token(conn)
        current = token_store.open_admin_token_events(conn)
        for cluster in jwt:
            if cluster.enabled and cluster.id not in with_token and cluster.id not in current:
                token_store.record_missing_admin_token(conn, cluster, now=self.clock.now())
        return [c for c in jwt if c.id in current and c.id in with_token]

    def probe_admin_tokens(self, clusters: Sequence[Cluster]) -> int:
        """One bulk call with the admin token of each cluster; where it works, its ADMIN_TOKEN_*
        event and blacklist are closed (the token was set or replaced: no restart), where it is
        refused the event says so. Returns how many clusters work again."""
        fixed = 0
        for cluster in clusters:
            try:
                self.oar(cluster).get_running_jobs()
            except OarError as error:
                with self.engine.begin() as conn:
                    token_store.record_admin_token_refusal(conn, cluster, error,
                                                           now=self.clock.now())
                continue
            with self.engine.begin() as conn:
                fixed += token_store.close_admin_token_events(conn, cluster_id=cluster.id,
                                                              now=self.clock.now()) > 0
            log.info("updater: the admin token of %s works again", cluster.name,
                     extra={"cluster": cluster.name, "action": "admin_token"})
        return fixed

    def settle_tokens(self, clusters: Sequence[Cluster]) -> None:
        """Resume the campaigns stopped for a missing user token that the user has now; close the
        ADMIN_TOKEN_* events of clusters that no longer authenticate with JWT (an admin changed
        `api_auth_type`: no token is needed there any more)."""
        jwt = {c.id for c in clusters if AuthType(c.api_auth_type) is AuthType.JWT}
        now = self.clock.now()
        with self.engine.begin() as conn:
            token_store.resume_user_token_events(conn, now=now)
            for cluster_id in token_store.open_admin_token_events(conn):
                if cluster_id not in jwt:
                    token_store.close_admin_token_events(conn, cluster_id=cluster_id, now=now)

    # --- cluster health --------------------------------------------------------------------

    def autofix(self, clusters: Sequence[Cluster]) -> int:
        """Behaviour 20: transient cluster errors older than AUTOFIX_DELAY are closed once the
        API root answers again."""
        now = self.clock.now()
        delay = self.settings.autofix_delay
        by_id = {cluster.id: cluster for cluster in clusters}
        with self.engine.begin() as conn:
            candidates = [event for event in colombo.select_autofix(
                event_store.list_open_events(conn, class_=EventClass.CLUSTER,
                                             code=sorted(colombo.AUTOFIX_CODES)),
                now=now, delay=delay) if event.cluster_id in by_id]
            event_store.mark_checked(conn, [event.id for event in candidates], now=now)
        fixed = 0
        probed: dict[int, bool] = {}
        for event in candidates:
            cluster_id = int(event.cluster_id or 0)
            if cluster_id not in probed:
                try:
                    self.oar(by_id[cluster_id]).probe()
                    probed[cluster_id] = True
                except OarError:
                    probed[cluster_id] = False
            if probed[cluster_id]:
                with self.engine.begin() as conn:
                    fixed += event_store.close_event(conn, event.id, now=self.clock.now())
        return fixed

    def lift_blacklists(self) -> int:
        """Close every open BLACKLIST whose cause (parent event) is closed and, for a campaign
        blacklist, whose campaign has no other blacklisting job event open on that cluster
        (`colombo.select_blacklists_to_lift`)."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            blacklists = event_store.list_open_events(conn, code=BLACKLIST)
            parents = {b.parent for b in blacklists if b.parent is not None}
            open_parents = {p for p in parents if event_store.get_event(conn, p).is_open}
            pairs = {(b.campaign_id, b.cluster_id) for b in blacklists
                     if b.campaign_id is not None and b.cluster_id is not None}
            open_causes = job_store.list_open_failure_pairs(
                conn, pairs, ignored_codes=colombo.NON_BLACKLISTING_JOB_CODES)
            to_lift = colombo.select_blacklists_to_lift(blacklists, open_event_ids=open_parents,
                                                        open_causes=open_causes)
            return event_store.close_events(conn, to_lift, now=now)

    def refresh_stress(self, clusters: Sequence[Cluster]) -> None:
        """Behaviour 27: store GLOBAL_STRESS; one UNDER_STRESS event while it is at or above
        STRESS_FACTOR."""
        threshold = self.settings.STRESS_FACTOR
        for cluster in clusters:
            try:
                stress = self.oar(cluster).get_stress_factor()
            except OarError as error:
                log.debug("updater: no stress factor from %s: %s", cluster.name, error)
                stress = 0.0
            with self.engine.begin() as conn:
                record_stress(conn, cluster, stress, threshold=threshold, now=self.clock.now())

    # --- campaigns -------------------------------------------------------------------------

    def finish_campaigns(self) -> list[int]:
        """Behaviour 26: campaigns with nothing left become `terminated` (FINISHED_CAMPAIGN), with
        an EPILOGUE_SKIPPED notification per cluster where their epilogue could not run."""
        finished: list[int] = []
        wait = self.settings.epilogue_blacklist_timeout
        with self.engine.begin() as conn:
            candidates = job_store.list_finished_campaigns(conn, now=self.clock.now(),
                                                           epilogue_wait=wait)
        for campaign_id in candidates:
            now = self.clock.now()
            with self.engine.begin() as conn:
                done = job_store.mark_campaign_terminated(conn, campaign_id, now=now,
                                                          epilogue_wait=wait)
                if done is not None:
                    for site in done.skipped_epilogues:
                        event_store.record_event(
                            conn, class_=EventClass.NOTIFY, code=EPILOGUE_SKIPPED,
                            campaign_id=campaign_id, cluster_id=site.cluster_id,
                            state=EventState.CLOSED, now=now, message=epilogue_skip_message(site))
                    event_store.record_event(
                        conn, class_=EventClass.NOTIFY, code=FINISHED_CAMPAIGN,
                        campaign_id=campaign_id, state=EventState.CLOSED, now=now,
                        message=f"Campaign {campaign_id} is finished")
                    finished.append(campaign_id)
                    log.info("updater: campaign %d finished", campaign_id,
                             extra={"campaign_id": campaign_id, "action": "finish"})
        return finished


def main() -> None:
    """`cigri-updater`."""
    daemon_main(Updater, name="updater")
