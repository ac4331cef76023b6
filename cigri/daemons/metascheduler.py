"""The meta-scheduler (`cigri-metascheduler`): turns the bags of tasks of running campaigns into
queue rows (`jobs_to_launch`), one cluster per task, and creates prologue and epilogue jobs.

Owns `jobs_to_launch` inserts (and the withdrawal of untaken rows from a couple that takes no
work any more), the prologue/epilogue `jobs` rows (epilogues only where the campaign ran,
withdrawn where they can no longer run), the creation of missing taps, and the
NO_USABLE_CLUSTER event of a campaign whose clusters are all disabled or removed.
Does not submit anything (the runner does) nor expire queue rows (nikita does). Each pass: read a
snapshot, create due prologue/epilogue jobs, decide the couples and their limits, fetch candidate
tasks, distribute them (`cigri.domain.scheduling`), insert the queue rows — each step its own
short transaction. Only `in_treatment` campaigns are scheduled; a task is never queued twice
(`jobs_to_launch.task_id` is UNIQUE). One active instance per grid (role lease).

Settings: `METASCHEDULER_INTERVAL`, `METASCHEDULER_POLICY` (`fair_share` or `fifo`),
`STRESS_FACTOR`, `RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS` (rate of the taps it creates),
`EPILOGUE_BLACKLIST_TIMEOUT` (how long an epilogue waits for a blacklisted cluster).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection

from cigri.config import Settings
from cigri.daemons.base import Daemon, DaemonContext
from cigri.daemons.base import main as run_daemon
from cigri.domain.campaigns import NO_USABLE_CLUSTER, plan_stranded_events, stranded_message
from cigri.domain.clusters import Cluster
from cigri.domain.night import NightWindow
from cigri.domain.scheduling import (
    EPILOGUE,
    PROLOGUE,
    CoupleLimit,
    Policy,
    QueueEntry,
    Snapshot,
    TaggedJobPlan,
    TaskCandidate,
    distribute,
    list_epilogue_campaigns,
    plan_couples,
    plan_epilogues,
    plan_prologue_withdrawals,
    plan_queue_withdrawals,
    plan_tagged_jobs,
    stack_size,
)
from cigri.domain.states import EventClass
from cigri.storage import campaigns as campaign_store
from cigri.storage import epilogues as epilogue_store
from cigri.storage import events as event_store
from cigri.storage import queue
from cigri.storage.clusters import list_clusters
from cigri.storage.heartbeats import notify_daemons

log = logging.getLogger(__name__)


def night_clusters(clusters: Iterable[Cluster], settings: Settings,
                   now: datetime) -> frozenset[int]:
    """The clusters inside their night window at `now` (their own or NIGHT_WINDOW)."""
    return frozenset(c.id for c in clusters if NightWindow.for_cluster(
        c, default_window=settings.NIGHT_WINDOW, default_zone=settings.NIGHT_TIME_ZONE,
    ).is_night(now))


class MetaScheduler(Daemon):
    """Fills `jobs_to_launch` from the bags of running campaigns."""

    role = "metascheduler"

    @classmethod
    def default_interval(cls, settings: Settings) -> timedelta:
        return settings.metascheduler_interval

    @property
    def policy(self) -> Policy:
        return Policy(self.settings.METASCHEDULER_POLICY)

    def run_once(self) -> bool:
        snapshot = self._read_snapshot()
        if not snapshot.couples:
            log.debug("no running campaign")
            return False  # idle: a new or resumed campaign wakes this daemon (NOTIFY)
        if self._withdraw_blocked_queue(snapshot):
            snapshot = self._read_snapshot()  # the withdrawn tasks are candidates again
        self._create_prologues_and_epilogues(snapshot)
        # a couple whose campaign has no unqueued task left has no candidate to read
        couples = [c for c in plan_couples(snapshot)
                   if c.limit > 0 and snapshot.unscheduled_tasks.get(c.campaign_id)]
        if not couples:
            return True  # every couple is full, drained, blacklisted or waiting for its prologue
        stacks = self._read_stacks(couples)
        entries = distribute(couples, stacks, policy=self.policy,
                             first_batch_id=self._first_batch_id())
        self._queue(entries)
        return True

    def _read_snapshot(self) -> Snapshot:
        with self.engine.begin() as conn:
            self._report_stranded_campaigns(conn)  # here: an idle pass stays one transaction
            couples = queue.list_running_couples(conn)
            if not couples:
                return Snapshot(couples=couples, clusters={})  # idle: nothing else to read
            campaign_ids = sorted({c.campaign_id for c in couples})
            clusters = {c.id: c for c in list_clusters(conn)}
            return Snapshot(
                couples=couples,
                clusters=clusters,
                night_clusters=night_clusters(clusters.values(), self.settings,
                                              self.clock.now()),
                blacklisted_clusters=frozenset(event_store.list_blacklisted_clusters(conn)),
                blacklisted_couples=frozenset(event_store.list_blacklisted_couples(conn)),
                active_jobs=queue.count_active_jobs(conn),
                queued_jobs=queue.count_queued(conn),
                tap_rates=queue.ensure_taps(
                    conn, [(c.campaign_id, c.cluster_id) for c in couples],
                    initial_rate=self.settings.RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS),
                users_priority=queue.list_users_priority(conn),
                prologue_states={k: frozenset(v) for k, v in queue.list_tagged_job_states(
                    conn, campaign_ids, PROLOGUE).items()},
                unscheduled_tasks={c: 1 for c in queue.campaigns_with_unscheduled_tasks(
                    conn, campaign_ids)},
                queued_tasks=queue.count_queued_by_campaign(conn, campaign_ids),
                unfinished_jobs=queue.count_unfinished_task_jobs(conn, campaign_ids),
                stress_threshold=self.settings.STRESS_FACTOR,
                initial_tap_rate=self.settings.RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS,
            )

    def _report_stranded_campaigns(self, conn: Connection) -> None:
        """One open NO_USABLE_CLUSTER event on a campaign with tasks left whose clusters are all
        disabled or removed (the user sees it in gridevents and gridstat, the notifier tells
        them), closed once one is back or the campaign ended (`plan_stranded_events`)."""
        stranded = campaign_store.list_stranded_campaigns(conn)
        open_events: dict[int, list[int]] = {}
        for event in event_store.list_open_events(conn, code=NO_USABLE_CLUSTER):
            if event.campaign_id is not None:
                open_events.setdefault(event.campaign_id, []).append(event.id)
        to_open, to_close = plan_stranded_events(stranded, open_events)
        now = self.clock.now()
        for campaign_id in to_open:
            event_store.record_event(
                conn, class_=EventClass.CAMPAIGN, code=NO_USABLE_CLUSTER,
                campaign_id=campaign_id, now=now, checked=True,
                message=stranded_message(campaign_id, stranded[campaign_id]))
        event_store.close_events(conn, to_close, now=now)
        for campaign_id in to_open:
            log.warning("campaign %d has tasks left and no enabled cluster", campaign_id,
                        extra={"campaign_id": campaign_id, "action": NO_USABLE_CLUSTER})

    def _withdraw_blocked_queue(self, snapshot: Snapshot) -> int:
        """Tasks queued on a cluster that stopped taking the campaign's work (disabled, or the
        campaign blacklisted there) and that no runner took go back to the bag."""
        couples = plan_queue_withdrawals(snapshot)
        if not couples:
            return 0
        with self.engine.begin() as conn:
            withdrawn = queue.withdraw_queued_tasks(conn, couples)
        if withdrawn:
            log.info("withdrew %d queued tasks from couples that take no work: %s", withdrawn,
                     couples, extra={"action": "withdraw_queue"})
        return withdrawn

    def _create_prologues_and_epilogues(self, snapshot: Snapshot) -> None:
        plans = plan_tagged_jobs(snapshot)
        useless = plan_prologue_withdrawals(snapshot)
        if useless:
            with self.engine.begin() as conn:
                if epilogue_store.withdraw_untaken_jobs(conn, useless, tag=PROLOGUE):
                    log.info("withdrew prologue jobs that can no longer serve: %s", useless,
                             extra={"action": PROLOGUE})
        drained = list_epilogue_campaigns(snapshot)
        if drained:
            with self.engine.begin() as conn:
                epilogues = plan_epilogues(
                    epilogue_store.list_epilogue_sites(conn, drained), now=self.clock.now(),
                    blacklist_wait=self.settings.epilogue_blacklist_timeout)
                if epilogue_store.withdraw_untaken_jobs(conn, epilogues.withdraw, tag=EPILOGUE):
                    log.info("withdrew epilogue jobs that can no longer run: %s",
                             epilogues.withdraw, extra={"action": EPILOGUE})
            plans += epilogues.create
        self._create_tagged_jobs(plans)

    def _create_tagged_jobs(self, plans: list[TaggedJobPlan]) -> None:
        for plan in plans:
            with self.engine.begin() as conn:
                job_id = queue.create_tagged_job(conn, campaign_id=plan.campaign_id,
                                                 cluster_id=plan.cluster_id, tag=plan.tag,
                                                 now=self.clock.now())
            if job_id is not None:
                log.info("created %s job %d of campaign %d on cluster %d", plan.tag, job_id,
                         plan.campaign_id, plan.cluster_id,
                         extra={"campaign_id": plan.campaign_id, "action": plan.tag})

    def _read_stacks(self, couples: list[CoupleLimit]) -> dict[tuple[int, int],
                                                                 list[TaskCandidate]]:
        with self.engine.begin() as conn:
            return {c.key: queue.list_unscheduled_tasks(
                conn, campaign_id=c.campaign_id, cluster_id=c.cluster_id, limit=stack_size(c))
                for c in couples}

    def _first_batch_id(self) -> int:
        with self.engine.begin() as conn:
            return queue.next_batch_id(conn)

    def _queue(self, entries: list[QueueEntry]) -> None:
        if not entries:
            return
        with self.engine.begin() as conn:
            inserted = queue.queue_tasks(conn, entries, now=self.clock.now(),
                                         after_queued=self.policy is Policy.FAIR_SHARE)
            if inserted:
                notify_daemons(conn, "runner")
        log.info("queued %d tasks on %d clusters", inserted,
                 len({e.cluster_id for e in entries}), extra={"action": "queue"})


def build(context: DaemonContext) -> MetaScheduler:
    return MetaScheduler(engine=context.engine, settings=context.settings, clock=context.clock,
                         stop=context.stop)


def main() -> None:
    run_daemon(build, name="metascheduler")


if __name__ == "__main__":
    main()
