"""Crash-safe submission and reconciliation on one cluster, for its `ClusterRunner`
(`cigri.daemons.cluster_runner`).

The intent (a `submissions` row with a random key, and the jobs in `launching` with their
`array_index`) is committed before the OAR call, the OAR job name carries the key, and the OAR ids
are recorded in a new transaction. An intent left behind (runner killed) or a call that failed
without an answer is reconciled by asking OAR for jobs of that name: adopted if OAR has them,
otherwise the tasks go back to the bag. Each job's `remote_id` is the OAR job of its own array
index (a temporal-grouping batch: its one OAR job). What is asked of OAR is built by
`cigri.domain.launch_requests`.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol

from sqlalchemy import Connection, Engine

from cigri.config import Settings
from cigri.domain import batches, cluster_tokens
from cigri.domain.clock import Clock
from cigri.domain.clusters import Cluster
from cigri.domain.event_codes import EventCode
from cigri.domain.jobs import EPILOGUE, PROLOGUE, JobChange, LaunchContext, LaunchItem
from cigri.domain.launch_requests import build_request, remote_ids_by_index
from cigri.domain.night import JobMode
from cigri.domain.oar import OarApi, OarError, OarJob, OarRejected, Submission
from cigri.domain.states import PRIORITY_RESUBMIT, AuthType, EventClass, EventState, JobState
from cigri.domain.telemetry import JOBS_SUBMITTED, RECORDER
from cigri.storage import events as event_store
from cigri.storage import jobs as job_store
from cigri.storage import submissions as submission_store
from cigri.storage.heartbeats import notify_daemons
from cigri.storage.incidents import open_campaign_blacklist, record_cluster_error

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

# What a submission takes, in its intent's transaction: (conn, submission id) -> the jobs taken.
Take = Callable[[Connection, int], list[LaunchItem]]


class RunnerSite(Protocol):
    """What submission needs of the cluster's runner (`ClusterRunner`)."""

    name: str
    engine: Engine
    settings: Settings
    clock: Clock
    cluster: Cluster  # the row read this pass
    lease: timedelta

    @property
    def oar(self) -> OarApi: ...

    def keep_lease(self) -> None: ...

    def mode(self, context: LaunchContext) -> JobMode: ...


class _NothingTaken(Exception):
    """Nothing left to take: roll the intent back."""


def take_existing(site: RunnerSite, job_ids: list[int]) -> Take:
    """Take: the cluster's existing `to_launch` jobs `job_ids` (prologue, epilogue, leftovers)."""
    def take(conn: Connection, submission_id: int) -> list[LaunchItem]:
        return job_store.launch_existing_jobs(conn, job_ids, submission_id=submission_id,
                                              now=site.clock.now())
    return take


def take_queued(site: RunnerSite, campaign_id: int, rate: int) -> Take:
    """Take: up to `rate` of the campaign's tasks queued on the cluster."""
    def take(conn: Connection, submission_id: int) -> list[LaunchItem]:
        return job_store.claim_queued_tasks(conn, cluster_id=site.cluster.id,
                                            campaign_id=campaign_id, limit=rate,
                                            submission_id=submission_id,
                                            now=site.clock.now())
    return take


def submit(site: RunnerSite, campaign_id: int, take: Take, *, grouped: bool | None = None,
           on_submitted: Callable[[int, datetime], None] | None = None) -> int:
    """Record the intent (submission row + `launching` jobs), commit, call OAR, record the
    OAR ids. Returns how many jobs went to OAR. `grouped`: the tasks are one temporal-grouping
    batch (None: as the campaign's `temporal_grouping: true` says); `on_submitted`: called with
    the submission's id and intent time once OAR has its jobs."""
    key = secrets.token_hex(8)
    now = site.clock.now()
    try:
        with site.engine.begin() as conn:
            submission_id = submission_store.record_intent(
                conn, key=key, cluster_id=site.cluster.id, campaign_id=campaign_id,
                nb_jobs=0, now=now)
            items = take(conn, submission_id)
            if not items:
                raise _NothingTaken
            submission_store.set_nb_jobs(conn, submission_id, len(items))
            context = submission_store.get_launch_context(conn, campaign_id=campaign_id,
                                                          cluster_id=site.cluster.id)
            if grouped is None:
                grouped = batches.is_grouped(context)
            if grouped and not any(
                    item.tag in {PROLOGUE, EPILOGUE} for item in items):
                job_store.set_tag(conn, [item.job_id for item in items], batches.BATCH_TAG)
                items = [dataclasses.replace(item, tag=batches.BATCH_TAG) for item in items]
    except _NothingTaken:
        return 0  # rolled back: the tasks went elsewhere meanwhile
    name = submission_store.oar_job_name(campaign_id=campaign_id, key=key)
    request = build_request(context, items, name=name,
                            default_resources=site.settings.DEFAULT_JOB_RESOURCES,
                            default_walltime=site.settings.DEFAULT_JOB_WALLTIME,
                            besteffort=site.mode(context) is JobMode.BESTEFFORT)
    try:
        answer = site.oar.submit(request, user=context.cluster_login)
    except OarRejected as error:
        _record_rejection(site, submission_id, items, error, login=context.cluster_login)
        return 0
    except OarError as error:
        log.warning("%s: submission %s of campaign %d has no answer (%s); will reconcile",
                    site.name, key, campaign_id, error)
        _record_no_answer(site, submission_id, error)
        return 0
    recorded = _record_answer(site, submission_id, items, answer)
    RECORDER.inc(JOBS_SUBMITTED, {"cluster": site.cluster.name}, recorded)
    if on_submitted is not None and recorded:
        on_submitted(submission_id, now)
    log.info("%s: submitted %d job(s) of campaign %d as OAR %d", site.name, recorded,
             campaign_id, answer.array_id,
             extra={"campaign_id": campaign_id, "cluster": site.cluster.name,
                    "action": "submit"})
    return recorded


def _record_answer(site: RunnerSite, submission_id: int, items: Sequence[LaunchItem],
                   answer: Submission) -> int:
    """OAR took the submission: its jobs' OAR ids (each array index its own, a batch's jobs
    all the one); returns how many were recorded."""
    remote_ids = dict(enumerate(answer.job_ids, start=1))
    if items[0].tag == batches.BATCH_TAG:  # one OAR job runs them all
        remote_ids = {item.array_index: answer.job_ids[0] for item in items}
    with site.engine.begin() as conn:
        recorded = job_store.record_remote_ids(
            conn, submission_id=submission_id, remote_ids=remote_ids, now=site.clock.now())
        done = recorded == len(items)
        submission_store.mark_submission(
            conn, submission_id, expected=(submission_store.INTENT,),
            state=submission_store.SUBMITTED if done else submission_store.UNCERTAIN,
            now=site.clock.now(), remote_array_id=answer.array_id)
        notify_daemons(conn, "updater")  # ends an idle updater's stretched wait (no-op if busy)
    return recorded


def _record_no_answer(site: RunnerSite, submission_id: int, error: OarError) -> None:
    """No answer from OAR: the submission is uncertain, reconciled next pass."""
    with site.engine.begin() as conn:
        submission_store.mark_submission(
            conn, submission_id, expected=(submission_store.INTENT,),
            state=submission_store.UNCERTAIN, now=site.clock.now(), message=str(error))
        record_cluster_error(conn, cluster_id=site.cluster.id, error=error,
                             now=site.clock.now())


def _record_rejection(site: RunnerSite, submission_id: int, items: Sequence[LaunchItem],
                      error: OarRejected, *, login: str = "") -> None:
    """Behaviour 21: OAR refused; one RUNNER_SUBMIT_* event per job, campaign blacklisted.
    On a jwt cluster a missing or refused user token says which `gridtoken` fixes it."""
    code = _SUBMIT_ERROR_CODES.get(error.status or 0, RUNNER_SUBMIT_ERROR)
    message = f"{error.message} {error.body or ''}".strip()
    if error.code in cluster_tokens.MISSING_CODES:
        code = cluster_tokens.USER_TOKEN_MISSING
        message = cluster_tokens.user_token_message(login, site.cluster.name, site.cluster.id)
    elif code == EventCode.RUNNER_SUBMIT_PERMISSION_DENIED and \
            AuthType(site.cluster.api_auth_type) is AuthType.JWT:
        message = cluster_tokens.user_token_refused_message(
            "the campaign owner", site.cluster.name, site.cluster.id, message)
    now = site.clock.now()
    campaign_id = items[0].campaign_id
    log.warning("%s: OAR refused submission %d of campaign %d: %s", site.name,
                submission_id, campaign_id, error)
    with site.engine.begin() as conn:
        first: int | None = None
        for item in items:
            if not job_store.mark_job(conn, JobChange(job_id=item.job_id, state=JobState.EVENT),
                                      expected=(JobState.LAUNCHING,), now=now):
                continue
            event_id = event_store.record_event(
                conn, class_=EventClass.JOB, code=code, job_id=item.job_id,
                campaign_id=campaign_id, cluster_id=site.cluster.id, now=now,
                message=message, checked=True)
            first = first or event_id
        if first is not None:
            open_campaign_blacklist(conn, failure_id=first, now=now)
        submission_store.mark_submission(conn, submission_id,
                                         expected=(submission_store.INTENT,),
                                         state=submission_store.FAILED, now=now,
                                         message=str(error))


def reconcile(site: RunnerSite,
              pending: Sequence[submission_store.SubmissionRecord] | None = None) -> int:
    """Settle submissions whose fate on OAR is unknown (`pending`, when the caller has read
    them already); returns how many were settled."""
    if pending is None:
        now = site.clock.now()
        with site.engine.begin() as conn:
            pending = submission_store.list_submissions_to_reconcile(
                conn, cluster_id=site.cluster.id, intent_before=now - site.lease)
    settled = 0
    for submission in pending:
        site.keep_lease()
        with site.engine.begin() as conn:
            context = submission_store.get_launch_context(
                conn, campaign_id=submission.campaign_id, cluster_id=site.cluster.id)
        name = submission_store.oar_job_name(campaign_id=submission.campaign_id,
                                             key=submission.key)
        try:
            found = site.oar.find_jobs_by_name(name, user=context.cluster_login)
        except OarError as error:
            log.warning("%s: cannot reconcile submission %s yet: %s", site.name,
                        submission.key, error)
            return settled
        _settle(site, submission, found)
        settled += 1
    return settled


def _settle(site: RunnerSite, submission: submission_store.SubmissionRecord,
            found: Sequence[OarJob]) -> None:
    now = site.clock.now()
    with site.engine.begin() as conn:
        adopted = 0
        if found:
            remote_ids = remote_ids_by_index(found, submission.nb_jobs)
            mine = job_store.list_jobs_of_submission(conn, submission.id)
            if len(found) == 1 and any(job.tag == batches.BATCH_TAG for job in mine):
                remote_ids = {int(job.array_index or 0): found[0].id for job in mine}
            adopted = job_store.record_remote_ids(
                conn, submission_id=submission.id, remote_ids=remote_ids, now=now)
        returned = _return_to_bag(conn, submission.id, now)
        state = submission_store.ADOPTED if found else submission_store.ABANDONED
        submission_store.mark_submission(
            conn, submission.id, expected=(submission_store.INTENT, submission_store.UNCERTAIN),
            state=state, now=now,
            message=f"reconciled: {adopted} adopted, {returned} back to the bag")
    log.info("%s: reconciled submission %s: %d job(s) adopted from OAR, %d back to the bag",
             site.name, submission.key, adopted, returned,
             extra={"campaign_id": submission.campaign_id, "cluster": site.cluster.name,
                    "action": "reconcile"})


def _return_to_bag(conn: Connection, submission_id: int, now: datetime) -> int:
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
