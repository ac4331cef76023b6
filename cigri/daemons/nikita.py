"""Nikita (`cigri-nikita`): kills on OAR what must die, and expires what waited too long.

Owns: campaign cancellations (every remote job of the campaign deleted, each distinct OAR job once;
the campaign's `USER_FRAG` closed when nothing is left alive), single-job cancellations (class-`job`
`USER_FRAG`), jobs `remote_waiting` longer than `REMOTE_WAITING_TIMEOUT` (`REMOTE_WAITING_FRAG`,
deleted so that the updater resubmits them elsewhere), stale queue rows (`QUEUED_FOR_TOO_LONG`),
running jobs past walltime + 30 min (`CIGRI_WALLTIME`, any walltime length; a temporal-grouping
batch as a whole, against its scaled walltime), and the hourly cleanup
of `tasks_affinity`. Does not own resubmission (the updater sees the killed job fail and decides).

Every OAR delete happens outside a transaction: decide and mark (commit), delete, then record the
outcome. A failed delete leaves a `NIKITA_KILL_PROBLEM` notify event and is retried next pass.

Settings: `NIKITA_INTERVAL`, `REMOTE_WAITING_TIMEOUT`, `DEFAULT_JOB_WALLTIME`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from cigri.config import Settings
from cigri.daemons.base import DaemonContext, OarDaemon
from cigri.daemons.base import main as run_daemon
from cigri.domain.clusters import Cluster
from cigri.domain.event_codes import EventCode
from cigri.domain.events import USER_FRAG, NewEvent
from cigri.domain.kills import (
    ON_CLUSTER_STATES,
    WALLTIME_GRACE,
    KillTarget,
    RemoteKill,
    has_waited_too_long,
    is_overdue,
    plan_remote_kills,
)
from cigri.domain.oar import OarError, OarRejected
from cigri.domain.states import EventClass, EventState, JobState
from cigri.storage import events as event_store
from cigri.storage import kills, queue
from cigri.storage.clusters import list_clusters
from cigri.storage.heartbeats import notify_daemons

log = logging.getLogger(__name__)

AFFINITY_CLEANUP_PERIOD = timedelta(hours=1)
BATCH = 1000


class Nikita(OarDaemon):
    """Kills, expires and cleans up; see the module docstring."""

    role = "nikita"

    def __init__(self, context: DaemonContext, *, interval: timedelta | None = None,
                 lease: timedelta | None = None, owner: str | None = None) -> None:
        super().__init__(context, interval=interval, lease=lease, owner=owner)
        # read (once per pass) when a kill names a cluster not seen yet in this pass
        self._clusters: dict[int, Cluster] = {}

    @classmethod
    def default_interval(cls, settings: Settings) -> timedelta:
        return settings.nikita_interval

    @property
    def waiting_timeout(self) -> timedelta:
        return self.settings.remote_waiting_timeout

    def run_once(self) -> bool:
        """One pass; False (idle) when it found nothing to cancel, kill or expire: a user's
        cancellation wakes nikita at once (NOTIFY), and the time limits it enforces are minutes
        long, so a stretched wait costs them nothing that matters."""
        self._clusters.clear()  # the rows are re-read once per pass: an edited cluster applies
        self._clean_affinity()
        cancelled = self._cancel_campaigns()
        pending = self._kill_pending()
        self._close_finished_cancellations(cancelled)
        found = [self._kill_overdue(), self._kill_long_waiting(), self._expire_queue()]
        return bool(cancelled or pending or any(found))

    # --- OAR -----------------------------------------------------------------------------

    def _cluster(self, cluster_id: int) -> Cluster | None:
        if cluster_id not in self._clusters:
            with self.engine.begin() as conn:
                for cluster in list_clusters(conn):
                    self._clusters.setdefault(cluster.id, cluster)
        return self._clusters.get(cluster_id)

    def _delete(self, kill: RemoteKill, *, code: str) -> bool:
        """Delete one remote job; True once OAR confirmed (or it was already dead)."""
        self.keep_lease()  # between kills: a long pass keeps its lease, or stops if it lost it
        cluster = self._cluster(kill.cluster_id)
        if cluster is None:
            return True  # the cluster is gone: nothing left to kill there
        oar = self.oar(cluster)
        try:
            if kill.is_array:
                try:
                    oar.delete_array(kill.remote_id, user=kill.login)
                except OarRejected:
                    # An array OAR will not delete whole (some elements long gone): one by one.
                    return all(self._delete_each(kill, code=code))
            else:
                oar.delete_job(kill.remote_id, user=kill.login)
        except OarRejected as error:
            if "already killed" in (error.body or "") + str(error):
                return True
            self._kill_problem(kill, cluster, error, code)
            return False
        except OarError as error:
            self._kill_problem(kill, cluster, error, code)
            return False
        log.info("deleted OAR %s %d on %s (%s)", "array" if kill.is_array else "job",
                 kill.remote_id, cluster.name, code,
                 extra={"cluster": cluster.name, "action": "kill"})
        return True

    def _delete_each(self, kill: RemoteKill, *, code: str) -> list[bool]:
        with self.engine.begin() as conn:
            targets = kills.list_kill_targets(conn, job_ids=list(kill.job_ids),
                                              states=list(JobState))
        return [self._delete(single, code=code) for single in plan_remote_kills(targets)]

    def _kill_problem(self, kill: RemoteKill, cluster: Cluster, error: OarError,
                      code: str) -> None:
        log.warning("cannot delete OAR job %d on %s: %s", kill.remote_id, cluster.name, error)
        with self.engine.begin() as conn:
            event_store.record_event(
                conn, class_=EventClass.NOTIFY, code=EventCode.NIKITA_KILL_PROBLEM,
                cluster_id=cluster.id, job_id=kill.job_ids[0], state=EventState.CLOSED, now=self.clock.now(),
                message=f"Could not delete OAR job {kill.remote_id} on {cluster.name} "
                        f"({code}): {error}")

    # --- steps -----------------------------------------------------------------------------

    def _clean_affinity(self) -> None:
        now = self.clock.now()
        with self.engine.begin() as conn:
            last = event_store.last_event_date(conn, code=EventCode.NIKITA_CLEAN_AFFINITY)
            if last is not None and now - last < AFFINITY_CLEANUP_PERIOD:
                return
            removed = queue.delete_finished_affinities(conn)
            event_store.record_event(conn, class_=EventClass.LOG,
                                     code=EventCode.NIKITA_CLEAN_AFFINITY, state=EventState.CLOSED,
                                     now=now,
                                     message=f"{removed} affinity rows of finished campaigns")

    def _cancel_campaigns(self) -> list[int]:
        """Mark every job of each cancelled campaign for killing; return the campaigns."""
        with self.engine.begin() as conn:
            requests = event_store.list_open_events(conn, class_=EventClass.CAMPAIGN,
                                                    code=USER_FRAG)
        campaign_ids = sorted({e.campaign_id for e in requests if e.campaign_id is not None})
        for campaign_id in campaign_ids:
            now = self.clock.now()
            with self.engine.begin() as conn:
                pending = {e.id for e in event_store.list_open_events(
                    conn, class_=EventClass.JOB, code=USER_FRAG, campaign_id=campaign_id)}
                event_store.close_job_events(conn, campaign_id=campaign_id, now=now,
                                             except_ids=sorted(pending))
                queue.delete_campaign_bag(conn, campaign_id)
                targets = kills.list_kill_targets(conn, campaign_id=campaign_id, limit=BATCH * 100)
                kills.delete_unlaunched_jobs(
                    conn, [t.job_id for t in targets if t.state is JobState.TO_LAUNCH])
                marked = kills.mark_jobs_killed(
                    conn, [t for t in targets if t.state in ON_CLUSTER_STATES], code=USER_FRAG,
                    now=now)
            if marked:
                log.info("campaign %d cancelled: %d jobs to kill", campaign_id, len(marked),
                         extra={"campaign_id": campaign_id, "action": "cancel"})
        return campaign_ids

    def _kill_pending(self) -> bool:
        """Settle every open class-`job` USER_FRAG: delete its remote job, then close it."""
        with self.engine.begin() as conn:
            pending = kills.list_pending_kills(conn, limit=BATCH)
            if not pending:
                return False
            blacklisted = event_store.list_blacklisted_clusters(conn)
        if self._settle_single_cancels(pending):
            with self.engine.begin() as conn:
                pending = kills.list_pending_kills(conn, limit=BATCH)
        to_delete: list[tuple[int, KillTarget]] = []
        nothing_to_do: list[int] = []
        for event_id, target in pending:
            if target.state is JobState.EVENT and target.remote_id is not None:
                if target.cluster_id not in blacklisted:  # retried once the cluster is back
                    to_delete.append((event_id, target))
            elif target.state in {JobState.TERMINATED, JobState.EVENT}:
                nothing_to_do.append(event_id)
        events_by_job: dict[int, list[int]] = {}
        for event_id, target in to_delete:
            events_by_job.setdefault(target.job_id, []).append(event_id)
        with self.engine.begin() as conn:
            whole = kills.list_cancelled_campaigns(
                conn, sorted({t.campaign_id for _, t in to_delete}))
        done = list(nothing_to_do)
        for kill in plan_remote_kills((t for _, t in to_delete), whole_campaigns=whole):
            if self.stop.is_set():
                break
            if self._delete(kill, code=USER_FRAG):
                done += [e for job in kill.job_ids for e in events_by_job[job]]
        if done:
            with self.engine.begin() as conn:
                event_store.close_events(conn, done, now=self.clock.now())
        return True

    def _settle_single_cancels(self, pending: Sequence[tuple[int, KillTarget]]) -> bool:
        """A job cancelled alone is still in its OAR state: mark it `event` (or drop it if it
        never left cigri) so that the updater stops following it. True if anything changed."""
        on_cluster = [t for _, t in pending if t.state in ON_CLUSTER_STATES]
        unlaunched = [t.job_id for _, t in pending if t.state is JobState.TO_LAUNCH]
        if not on_cluster and not unlaunched:
            return False
        now = self.clock.now()
        with self.engine.begin() as conn:
            for state in {t.state for t in on_cluster}:
                kills.mark_jobs_event(conn, [t.job_id for t in on_cluster if t.state is state],
                                      expected=state, now=now)
            kills.delete_unlaunched_jobs(conn, unlaunched)
        return True

    def _close_finished_cancellations(self, campaign_ids: Sequence[int]) -> None:
        for campaign_id in campaign_ids:
            with self.engine.begin() as conn:
                if kills.count_unsettled_jobs(conn, campaign_id) > 0:
                    continue  # a job is still launching, or a kill failed: next pass
                for event in event_store.list_open_events(conn, class_=EventClass.CAMPAIGN,
                                                          code=USER_FRAG, campaign_id=campaign_id):
                    event_store.close_event(conn, event.id, now=self.clock.now())
            log.info("campaign %d: cancellation complete", campaign_id,
                     extra={"campaign_id": campaign_id, "action": "cancel"})

    def _kill_overdue(self) -> bool:
        now = self.clock.now()
        with self.engine.begin() as conn:
            candidates = [t for t in kills.list_running_unkilled_jobs(
                conn, started_before=now - WALLTIME_GRACE, limit=BATCH)
                if is_overdue(t, now, self.settings.DEFAULT_JOB_WALLTIME)]
            if not candidates:
                return False  # the blacklists only matter for jobs to kill
            blacklisted = event_store.list_blacklisted_clusters(conn)
            banned = event_store.list_blacklisted_couples(conn)
        overdue = [t for t in candidates
                   if t.cluster_id not in blacklisted
                   and (t.campaign_id, t.cluster_id) not in banned]
        self._kill_and_record(overdue, EventCode.CIGRI_WALLTIME, event=lambda t: NewEvent(
            class_=EventClass.NOTIFY, code=EventCode.CIGRI_WALLTIME, job_id=t.job_id,
            campaign_id=t.campaign_id, cluster_id=t.cluster_id, state=EventState.CLOSED,
            message=f"Cigri sent kill signal to job {t.job_id} (OAR {t.remote_id}): "
                    "walltime exceeded by 30 min, OAR doesn't seem to care"))
        return True

    def _kill_long_waiting(self) -> bool:
        now = self.clock.now()
        with self.engine.begin() as conn:
            waiting = [t for t in kills.list_long_waiting_jobs(
                conn, submitted_before=now - self.waiting_timeout, limit=BATCH)
                if has_waited_too_long(t, now, self.waiting_timeout)]
            if not waiting:
                return False
            blacklisted = event_store.list_blacklisted_clusters(conn)
        waiting = [t for t in waiting if t.cluster_id not in blacklisted]
        self._kill_and_record(waiting, EventCode.REMOTE_WAITING_FRAG, event=lambda t: NewEvent(
            class_=EventClass.JOB, code=EventCode.REMOTE_WAITING_FRAG, job_id=t.job_id,
            campaign_id=t.campaign_id, cluster_id=t.cluster_id, state=EventState.CLOSED,
            checked=True, message="Killed because it was remote_waiting for too long. "
                                  "Job will be resubmitted."),
            is_penalised=lambda t: t.tag is None)
        return True

    def _kill_and_record(self, candidates: Sequence[KillTarget], code: EventCode, *,
                         event: Callable[[KillTarget], NewEvent],
                         is_penalised: Callable[[KillTarget], bool] = lambda _t: True) -> None:
        """Delete the candidates' OAR jobs; for each one deleted, its `event` and, when
        `is_penalised`, an affinity penalty on that cluster for its parameter."""
        for kill in plan_remote_kills(candidates):
            if self.stop.is_set() or not self._delete(kill, code=code):
                continue
            targets = [t for t in candidates if t.job_id in kill.job_ids]
            with self.engine.begin() as conn:
                event_store.record_events(conn, [event(t) for t in targets], now=self.clock.now())
                queue.decrease_affinity(conn, [(t.param_id, kill.cluster_id) for t in targets
                                               if t.param_id is not None and is_penalised(t)])

    def _expire_queue(self) -> bool:
        now = self.clock.now()
        threshold = now - self.waiting_timeout
        found = False
        while not self.stop.is_set():
            with self.engine.begin() as conn:
                stale = queue.list_stale_queue_entries(conn, queued_before=threshold, limit=BATCH)
                if not stale:
                    return found
                found = True
                removed = queue.delete_queue_entries(conn, [s.queue_id for s in stale],
                                                     queued_before=threshold)
                queue.decrease_affinity(conn, [(s.param_id, s.cluster_id) for s in stale])
                notify_daemons(conn, "metascheduler")  # the tasks are free to go elsewhere
                event_store.record_event(
                    conn, class_=EventClass.LOG, code=EventCode.QUEUED_FOR_TOO_LONG,
                    state=EventState.CLOSED, now=now,
                    message=f"{removed} tasks were queued for too long and were removed")
            log.info("removed %d stale queue rows", removed, extra={"action": "expire_queue"})
            if len(stale) < BATCH:
                return True
        return found


def main() -> None:
    run_daemon(Nikita, name="nikita")


if __name__ == "__main__":
    main()
