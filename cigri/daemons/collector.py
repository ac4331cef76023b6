"""The collector (`cigri-collector`; v3 documented it, never built it): brings the declared output
files of finished jobs home, into one result directory per campaign.

Owns, each pass:
1. **plan**: for every campaign whose JDL sets `output_gathering_method`, the terminated task jobs
   not planned yet get one `collected_files` row per declared file (`pending`, with its remote and
   local path; rules in `cigri.domain.collection`: a sub-job of a temporal-grouping batch yields
   its own `cigri_batch_std*_<job id>` where OAR's output is declared), in one transaction per
   campaign;
2. **fetch**: each pending file is read through OAR's `/media` as the campaign owner's cluster login,
   outside any transaction, and its size checked against the size OAR lists (`file_sizes`, one
   `ls` per directory and pass): a difference (a cut transfer) is read again next pass, up to
   `MAX_ATTEMPTS`, then `failed` with `OUTPUT_COLLECTION_FAILED`. It is written to
   `<local>.part`, checked by size on disk and renamed into place; then marked `collected` (with
   its size) in a new transaction. A file OAR does not have is `missing`
   and raises a `MISSING_OUTPUT_FILE` event (one message per campaign, see the notifier); a refused
   read is `failed` with `OUTPUT_COLLECTION_FAILED`; an unreachable cluster is retried next pass
   (up to `MAX_ATTEMPTS`).

Resumable: the rows are the progress. A collector killed mid-way leaves `pending` rows (fetched
again; the rename makes a half-written file impossible) and, on start, files recorded as collected
whose local copy is gone or has another size are fetched again.

Results are private to the campaign's owner, and a user destination is checked before use
(`cigri.daemons.result_files`): 0600 files in a 0700 directory, written with the owner's rights
when the collector runs as root and the owner has a Unix account; a destination that does not
resolve inside a place the owner owns, or holds another campaign's results, is refused
(`OUTPUT_DESTINATION_REFUSED`, files `failed`).

Methods `scp` and `rsync` copy over ssh from the cluster's `ssh_host` as the owner's cluster login
(options in COLLECTOR_SSH_OPTIONS); on a cluster without `ssh_host` they fall back to `/media`.
Settings: COLLECTOR_INTERVAL, COLLECTOR_DIRECTORY, COLLECTOR_ALLOW_USER_DESTINATION,
COLLECTOR_SSH_OPTIONS.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

from sqlalchemy import Connection

from cigri.accounts import UnixAccount
from cigri.config import Settings
from cigri.daemons import result_files as files
from cigri.daemons import ssh_copy
from cigri.daemons.base import DaemonContext, OarDaemon
from cigri.daemons.base import main as daemon_main
from cigri.domain import collection as rules
from cigri.domain import output_purge
from cigri.domain.clusters import Cluster
from cigri.domain.event_codes import EventCode
from cigri.domain.jobs import LaunchContext
from cigri.domain.oar import OarError, OarNotFound, OarRejected, OarUnavailable, split_media_path
from cigri.domain.states import EventClass, EventState
from cigri.storage import collected as store
from cigri.storage import output_purges as purges
from cigri.storage.clusters import get_cluster, list_clusters
from cigri.storage.events import record_event
from cigri.storage.submissions import get_launch_context

log = logging.getLogger(__name__)

JOB_BATCH: Final = 500
PURGE_BATCH: Final = 200  # OAR jobs whose output files are removed between two progress records
FILE_BATCH: Final = 100
MAX_ATTEMPTS: Final = 10


@dataclass(frozen=True)
class Place:
    """Where a campaign's results go on a cluster: its top directory and the account writing
    there (None: the collector's own user), or why they may not be written at all."""

    top: Path | None
    account: UnixAccount | None
    refused: str | None = None
    is_default: bool = False  # `<COLLECTOR_DIRECTORY>/<id>`, which the collector creates


class Collector(OarDaemon):
    """One collector for the whole grid."""

    role = "collector"

    def __init__(self, context: DaemonContext, *, interval: timedelta | None = None,
                 lease: timedelta | None = None, owner: str | None = None) -> None:
        super().__init__(context, interval=interval, lease=lease, owner=owner)
        self._verified = False
        # (cluster id, login, directory) -> sizes of its files, as OAR listed them this pass
        self._listings: dict[tuple[int, str, str], dict[str, int]] = {}
        # (campaign id, output_destination) -> its place, decided once per pass
        self._places: dict[tuple[int, str | None], Place] = {}
        self._prepared: set[Path] = set()  # default directories made private this pass
        self._refusals_reported: set[int] = set()  # campaigns told their destination is refused

    @classmethod
    def default_interval(cls, settings: Settings) -> timedelta:
        return settings.collector_interval

    def run_once(self) -> bool:
        """One pass; False (idle) when no file was planned, collected or purged."""
        if not self._verified:
            self.verify_collected()
            self._verified = True
        done = [self.plan_files(), self.fetch_pending(), self.purge_outputs()]
        return any(done)

    def _place(self, campaign_id: int, owner: str, properties: dict[str, str]) -> Place:
        """The campaign's result directory (see `cigri.daemons.result_files`), checked once per
        pass: a user destination that does not resolve inside a place the owner owns, or that
        holds another campaign's results, is refused."""
        destination = properties.get("output_destination")
        key = (campaign_id, destination)
        if key not in self._places:
            asked = rules.user_destination(
                destination, campaign_id=campaign_id,
                allow_destination=self.settings.COLLECTOR_ALLOW_USER_DESTINATION)
            account = files.account_of(owner)
            if asked is None:
                place = Place(files.default_directory(self.settings.COLLECTOR_DIRECTORY,
                                                      campaign_id), account, is_default=True)
            else:
                try:
                    place = Place(files.check_destination(
                        asked, campaign_id=campaign_id, grid_user=owner,
                        collector_directory=self.settings.COLLECTOR_DIRECTORY), account)
                except files.Refused as refusal:
                    place = Place(None, None, str(refusal))
            self._places[key] = place
        return self._places[key]

    # --- output purges (DELETE /campaigns/<id>/outputs) ---------------------------------------

    def purge_outputs(self) -> int:
        """Carry out the recorded requests to remove campaigns' output files on their clusters,
        PURGE_BATCH OAR jobs at a time (progress recorded after each, the lease kept between), as
        the owner's cluster login; one event says how each request ended. Return how many
        requests were finished."""
        with self.engine.begin() as conn:
            open_requests = purges.list_open_purges(conn)
        for request in open_requests:
            self._purge(request)
        return len(open_requests)

    def _purge(self, request: purges.OutputPurge) -> None:
        while True:
            with self.engine.begin() as conn:
                owner = store.campaign_owner(conn, request.campaign_id)
                page, after = purges.output_jobs_page(
                    conn, request.campaign_id, grid_user=owner, limit=PURGE_BATCH,
                    after=(request.last_cluster_id, request.last_remote_id))
                on_cluster = [(get_cluster(conn, f.cluster_id), f) for f in page]
            if not page:
                break
            removed = missing = 0
            errors: list[str] = []
            for cluster, found in on_cluster:  # no transaction open while OAR is called
                oar = self.oar(cluster)
                try:
                    for details in oar.get_jobs(found.remote_ids):
                        for path in output_purge.files_to_remove(
                                details, found.batch_jobs.get(details.id, ())):
                            try:
                                oar.delete_file(path, user=found.cluster_login)
                                removed += 1
                            except OarNotFound:
                                missing += 1
                except OarError as error:
                    errors.append(f"{cluster.name}: {error.message}")
            with self.engine.begin() as conn:
                request = purges.record_progress(conn, request, after=after, removed=removed,
                                                 missing=missing, errors=errors)
            self.keep_lease()
        with self.engine.begin() as conn:
            message = purges.finish_purge(conn, request, now=self.clock.now())
        log.info("collector: campaign %d: %s", request.campaign_id, message,
                 extra={"campaign_id": request.campaign_id, "action": "outputs_purged"})

    # --- plan ------------------------------------------------------------------------------

    def plan_files(self) -> int:
        """Record the files of newly finished jobs; return how many rows were added."""
        with self.engine.begin() as conn:
            campaign_ids = store.list_gathering_campaigns(conn)
        planned = 0
        self._places.clear()
        for campaign_id in campaign_ids:
            with self.engine.begin() as conn:
                jobs = store.list_uncollected_jobs(conn, campaign_id, limit=JOB_BATCH)
                if not jobs:
                    continue
                owner = store.campaign_owner(conn, campaign_id)
                contexts: dict[int, LaunchContext] = {}
                rows: list[tuple[int, int, str, str]] = []
                refused: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)
                for job in jobs:
                    if job.cluster_id not in contexts:
                        contexts[job.cluster_id] = get_launch_context(
                            conn, campaign_id=campaign_id, cluster_id=job.cluster_id)
                    properties = contexts[job.cluster_id].properties
                    if rules.gathering_method(properties) is None:
                        continue
                    place = self._place(campaign_id, owner, properties)
                    if place.top is None:
                        refused[place.refused or ""] += self._rows_for(job, properties, None)
                    else:
                        rows += self._rows_for(job, properties, place.top)
                store.record_pending_files(conn, rows)
                for message, refused_rows in refused.items():
                    store.record_pending_files(conn, refused_rows, refused=message)
                    self._report_refusal(conn, campaign_id, message)
            planned += len(rows)
        if planned:
            log.info("collector: %d files to collect", planned, extra={"action": "plan"})
        return planned

    def _report_refusal(self, conn: Connection, campaign_id: int, message: str) -> None:
        """One OUTPUT_DESTINATION_REFUSED event per campaign and collector process (its files
        are recorded `failed` with the same message)."""
        if campaign_id in self._refusals_reported:
            return
        self._refusals_reported.add(campaign_id)
        record_event(conn, class_=EventClass.NOTIFY, code=rules.OUTPUT_DESTINATION_REFUSED,
                     campaign_id=campaign_id, message=message, state=EventState.CLOSED,
                     now=self.clock.now(), checked=True)
        log.warning("collector: campaign %d: %s", campaign_id, message,
                    extra={"campaign_id": campaign_id, "action": "destination_refused"})

    def _rows_for(self, job: rules.FinishedJob, properties: dict[str, str],
                  top: Path | None) -> list[tuple[int, int, str, str]]:
        directory = top if top is not None else Path(rules.result_directory(
            collector_directory=self.settings.COLLECTOR_DIRECTORY, campaign_id=job.campaign_id,
            destination=properties.get("output_destination"),
            allow_destination=self.settings.COLLECTOR_ALLOW_USER_DESTINATION))
        rows = []
        seen: set[str] = set()
        for remote in rules.remote_paths(properties, job):
            if remote.path in seen:
                continue
            seen.add(remote.path)
            local = directory / rules.local_relative_path(remote.path, job,
                                                                 flat=remote.is_flat)
            rows.append((job.campaign_id, job.id, remote.path, str(local)))
        return rows

    # --- fetch -----------------------------------------------------------------------------

    def fetch_pending(self) -> int:
        """Fetch every pending file; return how many were collected."""
        collected = 0
        self._listings.clear()  # directory listings are kept for one pass
        with self.engine.begin() as conn:
            clusters = {c.id: c for c in list_clusters(conn)}
        logins: dict[tuple[int, int], tuple[str, str | None, Place]] = {}
        down: set[int] = set()
        self._places.clear()
        self._prepared.clear()
        while not self.stop.is_set():
            with self.engine.begin() as conn:
                batch = store.list_pending_files(conn, limit=FILE_BATCH,
                                                 max_attempts=MAX_ATTEMPTS)
                for item, cluster_id, _remote_id, owner in batch:
                    key = (item.campaign_id, cluster_id)
                    if key not in logins:
                        context = get_launch_context(conn, campaign_id=item.campaign_id,
                                                     cluster_id=cluster_id)
                        logins[key] = (context.cluster_login,
                                       rules.gathering_method(context.properties),
                                       self._place(item.campaign_id, owner, context.properties))
            progressed = 0
            for item, cluster_id, _remote_id, _owner in batch:
                if self.stop.is_set() or cluster_id in down or cluster_id not in clusters:
                    continue
                self.keep_lease()  # between files: keeps the lease, or stops if it was lost
                login, method, place = logins[(item.campaign_id, cluster_id)]
                refusal = self._refusal(item, place)
                if refusal is not None:
                    self._give_up(item, cluster_id, rules.OUTPUT_COLLECTION_FAILED,
                                  missing=False, message=refusal)
                    progressed += 1
                    continue
                assert place.top is not None
                outcome = self._fetch_one(item, clusters[cluster_id], cluster_id, login, method,
                                          place)
                if outcome == "down":
                    down.add(cluster_id)
                elif outcome != "retry":
                    progressed += 1
                collected += outcome == "collected"
            if len(batch) < FILE_BATCH or not progressed:
                break
        return collected

    def _refusal(self, item: store.CollectedFile, place: Place) -> str | None:
        """Why the file may not be written where it was planned (checked again before writing:
        the destination may have changed since), or None."""
        if place.top is None:
            return f"Output file {item.remote_path} of job {item.job_id}: {place.refused}"
        local = Path(item.local_path or "")
        if place.top not in local.parents:
            return (f"Output file {item.remote_path} of job {item.job_id}: {local} is not "
                    f"inside the campaign's result directory {place.top}")
        return None

    def _fetch_one(self, item: store.CollectedFile, cluster: Cluster, cluster_id: int,
                   login: str, method: str | None, place: Place) -> str:
        assert item.local_path is not None
        if method in rules.SSH_METHODS and cluster.ssh_host:
            return self._copy_over_ssh(item, cluster, cluster_id, login, method or "scp", place)
        try:
            data = self.oar(cluster).read_file(item.remote_path, user=login)
        except OarNotFound as error:
            self._give_up(item, cluster_id, rules.MISSING_OUTPUT_FILE, missing=True,
                          message=f"Output file {item.remote_path} of job {item.job_id} not found "
                                  f"on {cluster.name}: {error}")
            return "missing"
        except OarRejected as error:
            self._give_up(item, cluster_id, rules.OUTPUT_COLLECTION_FAILED, missing=False,
                          message=f"Output file {item.remote_path} of job {item.job_id} could "
                                  f"not be read on {cluster.name}: {error}")
            return "failed"
        except OarUnavailable as error:
            give_up = item.attempts + 1 >= MAX_ATTEMPTS
            log.info("collector: %s unreachable for %s: %s", cluster.name, item.remote_path, error)
            with self.engine.begin() as conn:
                store.mark_attempt_failed(conn, item.id, message=str(error), give_up=give_up)
            return "down"
        expected = self._remote_size(cluster, item, login, read=len(data))
        if expected is not None and expected != len(data):
            message = (f"Output file {item.remote_path} of job {item.job_id}: {len(data)} bytes "
                       f"read, {expected} listed by OAR on {cluster.name}")
            if item.attempts + 1 >= MAX_ATTEMPTS:
                self._give_up(item, cluster_id, rules.OUTPUT_COLLECTION_FAILED, missing=False,
                              message=message)
                return "failed"
            log.info("collector: %s; read again next pass", message)
            with self.engine.begin() as conn:
                store.mark_attempt_failed(conn, item.id, message=message, give_up=False)
            return "retry"
        try:
            size = self._write(Path(item.local_path), data, item=item, place=place)
        except files.Refused as refusal:
            self._refused(item, cluster_id, refusal)
            return "failed"
        with self.engine.begin() as conn:
            store.mark_collected(conn, item.id, size=size, now=self.clock.now())
        return "collected"

    def _remote_size(self, cluster: Cluster, item: store.CollectedFile, login: str, *,
                     read: int) -> int | None:
        """The size OAR lists for the file, or None when it cannot say (the directory cannot be
        listed, the file is a link, or it went away after the read).

        One `ls` per directory and pass (`file_sizes`), not one per file: a campaign's outputs
        often share a directory of thousands of files. A name the kept listing lacks, or lists
        with another size than the `read` bytes, is listed again, in case the listing predates
        the file."""
        directory, name = split_media_path(item.remote_path)
        if not name:
            return None
        key = (cluster.id, login, directory)
        try:
            sizes = self._listings.get(key)
            if sizes is not None and sizes.get(name) == read:
                return read
            sizes = self.oar(cluster).file_sizes(directory, user=login)
        except OarRejected as error:
            log.debug("collector: no size for %s: %s", item.remote_path, error)
            return None
        self._listings[key] = sizes
        return sizes.get(name)

    def _copy_over_ssh(self, item: store.CollectedFile, cluster: Cluster, cluster_id: int,
                       login: str, method: str, place: Place) -> str:
        """scp or rsync the file into `<local>.part` (into a private staging file when the
        results are written as their owner), then move it into place."""
        assert item.local_path is not None and place.top is not None and cluster.ssh_host
        local = Path(item.local_path)
        if place.account is None:
            self._prepare(place)
            partial = ssh_copy.partial_beside(local)
        else:
            partial = ssh_copy.staging_file(self.settings.COLLECTOR_DIRECTORY)
        argv = ssh_copy.copy_command(method, login=login, host=cluster.ssh_host,
                                     remote_path=item.remote_path, target=partial,
                                     ssh_options=self.settings.COLLECTOR_SSH_OPTIONS)
        done = ssh_copy.run_copy(argv)
        if done.returncode == 0 and partial.is_file():
            return self._install_copy(item, cluster_id, partial, place)
        partial.unlink(missing_ok=True)
        problem = done.stderr.strip() or f"{argv[0]} exited with {done.returncode}"
        if "No such file" in problem:
            self._give_up(item, cluster_id, rules.MISSING_OUTPUT_FILE, missing=True,
                          message=f"Output file {item.remote_path} of job {item.job_id} not found "
                                  f"on {cluster.ssh_host}: {problem}")
            return "missing"
        # 255: ssh could not connect or authenticate; anything else is retried the same way
        log.info("collector: %s of %s failed: %s", argv[0], item.remote_path, problem)
        with self.engine.begin() as conn:
            store.mark_attempt_failed(conn, item.id, message=problem,
                                      give_up=item.attempts + 1 >= MAX_ATTEMPTS)
        return "down"

    def _install_copy(self, item: store.CollectedFile, cluster_id: int, partial: Path,
                      place: Place) -> str:
        """Move a finished copy into place (written as the owner when the results are theirs)."""
        assert item.local_path is not None and place.top is not None
        size = partial.stat().st_size
        try:
            if place.account is None:
                os.chmod(partial, 0o600)
                partial.replace(item.local_path)
            else:
                self._prepare(place)
                with partial.open("rb") as staged:
                    files.write_as(place.account, Path(item.local_path),
                                   campaign_id=item.campaign_id, top=place.top, size=size,
                                   source=staged)
        except files.Refused as refusal:
            self._refused(item, cluster_id, refusal)
            return "failed"
        finally:
            partial.unlink(missing_ok=True)
        with self.engine.begin() as conn:
            store.mark_collected(conn, item.id, size=size, now=self.clock.now())
        return "collected"

    def _write(self, path: Path, data: bytes, *, item: store.CollectedFile, place: Place) -> int:
        """Write atomically (a crash never leaves a half file under the final name), privately
        (0600 in 0700 directories), as the owner when the results are theirs, and check the size
        on disk against what OAR sent."""
        assert place.top is not None
        self._prepare(place)
        if place.account is None:
            return files.write_own(path, data)
        files.write_as(place.account, path, campaign_id=item.campaign_id, top=place.top,
                       size=len(data), source=data)
        return len(data)

    def _prepare(self, place: Place) -> None:
        """The default directory `<COLLECTOR_DIRECTORY>/<id>`: created private, owned by the
        owner's account when there is one (once per pass). A user destination is created by the
        owner's own writes."""
        assert place.top is not None
        if place.top in self._prepared:
            return
        if place.is_default:
            files.prepare_default(place.top, place.account)
        self._prepared.add(place.top)

    def _refused(self, item: store.CollectedFile, cluster_id: int, refusal: files.Refused) -> None:
        self._give_up(item, cluster_id, rules.OUTPUT_COLLECTION_FAILED, missing=False,
                      message=f"Output file {item.remote_path} of job {item.job_id}: {refusal}")

    def _give_up(self, item: store.CollectedFile, cluster_id: int, code: EventCode, *, missing: bool,
                 message: str) -> None:
        now = self.clock.now()
        with self.engine.begin() as conn:
            if missing:
                store.mark_missing(conn, item.id, message=message)
            else:
                store.mark_attempt_failed(conn, item.id, message=message, give_up=True)
            record_event(conn, class_=EventClass.NOTIFY, code=code, job_id=item.job_id,
                         campaign_id=item.campaign_id, cluster_id=cluster_id, message=message,
                         state=EventState.CLOSED, now=now, checked=True)
        log.info("collector: %s", message, extra={"campaign_id": item.campaign_id,
                                                  "action": code.lower()})

    # --- resume ----------------------------------------------------------------------------

    def verify_collected(self) -> int:
        """Files recorded as collected whose local copy is gone or changed size go back to
        pending; return how many."""
        reset: list[int] = []
        with self.engine.begin() as conn:
            by_campaign: dict[int, list[store.CollectedFile]] = defaultdict(list)
            for campaign_id in store.list_gathering_campaigns(conn):
                by_campaign[campaign_id] = store.list_collected_to_verify(conn, campaign_id)
            for files in by_campaign.values():
                for item in files:
                    local = Path(item.local_path or "")
                    if not local.is_file() or local.stat().st_size != item.size:
                        reset.append(item.id)
            store.reset_to_pending(conn, reset)
        if reset:
            log.warning("collector: %d collected files were gone or changed; fetching again",
                        len(reset))
        return len(reset)


def main() -> None:
    """`cigri-collector`."""
    daemon_main(Collector, name="collector")
