"""`OarClient`: cigri's only way to talk to an OAR cluster (the `OarApi` seam of
`cigri.domain.oar`), for the `oar2_5` and `oar3` REST flavours.

One client per cluster, one `requests.Session` per client. Every call has a timeout; collections
are followed to their end; bulk job status goes by chunks of ids (one request per chunk); array
submissions return every OAR id in array order; GETs are retried on transient failures, POSTs
never. Results are domain objects. `client.request_count` counts the HTTP requests sent.
`client_for_cluster` builds a client from a `clusters` row (or its fields) for the daemons.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from cigri.domain.event_codes import EventCode
from cigri.domain.oar import (
    OarJob,
    OarNotFound,
    OarResource,
    OarState,
    OarUnavailable,
    Submission,
    SubmitRequest,
    split_media_path,
)
from cigri.domain.states import AuthType, ClusterAPI
from cigri.oar.flavours import Flavour, Route, flavour_for
from cigri.oar.http import DEFAULT_IDENTITY_HEADER, DEFAULT_RETRY, OarAuth, OarHttp, RetryPolicy
from cigri.oar.parsing import (
    array_id_from_cmd_output,
    as_int,
    collection_items,
    job_ids_from_cmd_output,
    next_link,
    parse_job,
    parse_resource,
    parse_stress_factor,
)

log = logging.getLogger(__name__)

ALL_OAR_STATES: tuple[str, ...] = tuple(s.value for s in OarState if s is not OarState.UNKNOWN)
# states in which a job holds its resources (grid usage; v3 §3.3.4 counted Running only)
BUSY_OAR_STATES: tuple[str, ...] = (OarState.LAUNCHING.value, OarState.RUNNING.value,
                                    OarState.FINISHING.value)


class OarClient:
    """The OAR REST API of one cluster.

    `user` arguments are cluster logins (already mapped); `admin_user` is the identity of bulk
    status queries (v3 used the mapped login of `oar`). `chunk_size` ids go in one bulk status
    request; `page_limit` is the `limit` of every collection request (must be > 0).
    """

    def __init__(self, base_url: str, *, flavour: str | ClusterAPI = ClusterAPI.OAR2_5,
                 auth: OarAuth | None = None, timeout_seconds: float = 30.0,
                 chunk_size: int = 100, page_limit: int = 100,
                 retry: RetryPolicy = DEFAULT_RETRY, admin_user: str | None = "oar",
                 sleep: Callable[[float], None] = time.sleep, cluster: str = "") -> None:
        if chunk_size <= 0 or page_limit <= 0:
            raise ValueError("chunk_size and page_limit must be positive")
        self.flavour: Flavour = flavour_for(flavour)
        self.chunk_size = chunk_size
        self.page_limit = page_limit
        self.admin_user = admin_user
        self.http = OarHttp(base_url, auth=auth or OarAuth(), timeout_seconds=timeout_seconds,
                            retry=retry, sleep=sleep, cluster=cluster)

    @property
    def base_url(self) -> str:
        return self.http.base_url

    @property
    def request_count(self) -> int:
        """HTTP requests sent by this client so far (retries included)."""
        return self.http.request_count

    @property
    def retry_count(self) -> int:
        """How many of those requests were retries of a failed GET."""
        return self.http.retry_count

    def close(self) -> None:
        self.http.close()

    def __repr__(self) -> str:
        return f"OarClient({self.base_url!r}, flavour={self.flavour.name.value})"

    # --- reads -----------------------------------------------------------------------------

    def probe(self) -> None:
        """GET the API root; raise OarUnavailable if it does not answer with JSON."""
        answer = self.http.get("", user=None, code=EventCode.GET_ROOT)
        if not isinstance(answer.json(), Mapping):
            raise OarUnavailable("API root answer is not a JSON object", status=answer.status,
                                 code=EventCode.GET_ROOT)

    def get_job(self, job_id: int, *, user: str | None = None) -> OarJob:
        route = self.flavour.job(job_id)
        answer = self.http.get(route.path, user=user, params=route.params, code=EventCode.GET_JOB)
        return self._parsed(parse_job, answer.json(), EventCode.GET_JOB)

    def get_jobs(self, job_ids: Sequence[int]) -> list[OarJob]:
        """Jobs of `job_ids` in any state, one request per chunk of ids (unknown ids left out)."""
        wanted = list(dict.fromkeys(int(job_id) for job_id in job_ids))
        found: list[OarJob] = []
        for start in range(0, len(wanted), self.chunk_size):
            route = self.flavour.jobs_by_ids(wanted[start:start + self.chunk_size])
            found.extend(self._parsed(parse_job, item, EventCode.FILL_JOBS_CACHE)
                         for item in self._collection(route, user=self.admin_user,
                                                      code=EventCode.FILL_JOBS_CACHE))
        return found

    def get_array_jobs(self, array_id: int) -> list[OarJob]:
        """Every job of an array, whatever its state, ordered by id."""
        route = self.flavour.jobs_of_array(array_id)
        jobs = [self._parsed(parse_job, item, EventCode.GET_JOBS)
                for item in self._collection(route, user=None, code=EventCode.GET_JOBS)]
        return sorted(jobs, key=lambda job: job.id)

    def get_running_jobs(self) -> list[OarJob]:
        """Every user's jobs that hold resources (Launching, Running, Finishing), with their
        `resource_ids`, ordered by id: one listing, followed page after page, as `admin_user`."""
        route = self.flavour.jobs_in_states(BUSY_OAR_STATES)
        jobs = [self._parsed(parse_job, item, EventCode.GET_JOBS)
                for item in self._collection(route, user=self.admin_user, code=EventCode.GET_JOBS)]
        return sorted(jobs, key=lambda job: job.id)

    def find_jobs_by_name(self, name: str, *, user: str,
                          since: datetime | None = None) -> list[OarJob]:
        """`user`'s jobs named `name`, in any state (crash reconciliation of a submission key).

        Lists the user's jobs with OAR's `user` filter (a light listing: id, name, state) and an
        explicit list of every state, so finished jobs are included; `since` (the time the
        submission was claimed, say) bounds the listing to jobs active after it. Matching jobs
        are then fetched in full by chunks of ids.
        """
        since_epoch = None if since is None else int(since.timestamp())
        route = self.flavour.jobs_of_user(user, ALL_OAR_STATES, since_epoch)
        ids = [as_int(item.get("id")) for item in self._collection(route, user=user, code=EventCode.GET_JOBS)
               if isinstance(item, Mapping) and item.get("name") == name]
        jobs = self.get_jobs([job_id for job_id in ids if job_id is not None])
        return sorted(jobs, key=lambda job: job.id)

    def read_file(self, path: str, *, user: str, tail: int | None = None) -> bytes:
        """The bytes of a file of the cluster, read as `user`; the last `tail` lines if given."""
        route = self.flavour.media(path, tail)
        return self.http.get(route.path, user=user, params=route.params, code=EventCode.GET_MEDIA,
                             raw=True).content

    def file_sizes(self, directory: str, *, user: str) -> dict[str, int]:
        """Name -> size in bytes of the regular files of `directory`, read as `user` from its `ls`
        (`media/ls/<dir>/`, all pages); empty when the directory does not exist. Directories
        and symbolic links (whose target `ls` does not describe) are left out. A refused listing
        (403) raises `OarRejected`."""
        route = self.flavour.media_ls(directory or "/")
        sizes: dict[str, int] = {}
        try:
            for item in self._collection(route, user=user, code=EventCode.GET_MEDIA):
                if isinstance(item, Mapping) and item.get("type") == "f":
                    size = self._parsed(as_int, item.get("size"), EventCode.GET_MEDIA)
                    if size is not None:
                        sizes[str(item.get("name"))] = size
        except OarNotFound:
            return {}
        return sizes

    def stat_file(self, path: str, *, user: str) -> int | None:
        """The size in bytes of the regular file `path`, read as `user` from the `ls` of its
        directory (`file_sizes`); None when there is no regular file there (the directory or the
        name is missing, or it is a directory or a symbolic link)."""
        directory, name = split_media_path(path)
        if not name:
            return None
        return self.file_sizes(directory, user=user).get(name)

    def get_resources(self) -> list[OarResource]:
        route = self.flavour.resources()
        return [self._parsed(parse_resource, item, EventCode.GET_RESOURCES)
                for item in self._collection(route, user=None, code=EventCode.GET_RESOURCES)]

    def get_stress_factor(self) -> float:
        route = self.flavour.stress_factor()
        answer = self.http.get(route.path, user=None, params=route.params, code=EventCode.GET_STRESS_FACTOR)
        return self._parsed(parse_stress_factor, answer.json(), EventCode.GET_STRESS_FACTOR)

    # --- writes ----------------------------------------------------------------------------

    def submit(self, request: SubmitRequest, *, user: str) -> Submission:
        """Submit one job or one array job; every OAR id comes back, in array order."""
        body = self.flavour.payload(request)
        answer = self.http.post(self.flavour.submit().path, user=user, body=body, code=EventCode.SUBMIT_JOB)
        try:
            raw = answer.json()
            first_id = as_int(raw["id"])
        except (ValueError, KeyError, TypeError) as exc:
            # the job may well exist: the caller must reconcile by name, not resubmit blindly
            raise OarUnavailable(f"submission answer without a job id: {exc}", status=answer.status,
                                 body=answer.content[:500].decode("utf-8", "replace"),
                                 code=EventCode.SUBMIT_JOB) from exc
        if first_id is None:
            raise OarUnavailable("submission answer with a null id", status=answer.status,
                                 code=EventCode.SUBMIT_JOB)
        expected = max(1, len(request.params))
        ids = job_ids_from_cmd_output(str(raw.get("cmd_output") or ""))
        array_id = array_id_from_cmd_output(str(raw.get("cmd_output") or "")) or first_id
        if len(ids) != expected or (ids and ids[0] != first_id):
            # OAR 3 prints no ids; any surprise: ask OAR for the array, in array_index order
            ids = self._array_ids_in_order(first_id, expected)
        log.debug("submitted %d job(s) as %s on %s", len(ids), user, self.base_url)
        return Submission(array_id=array_id, job_ids=tuple(ids))

    def delete_job(self, job_id: int, *, user: str) -> None:
        route = self.flavour.job(job_id)
        self.http.delete(route.path, user=user, params=route.params, code=EventCode.DELETE_JOB)

    def delete_file(self, path: str, *, user: str) -> None:
        """Remove the file `path` of the cluster as `user` (`DELETE media/<path>`, OAR 3:
        `DELETE media?path_filename=`); `OarNotFound` when it does not exist."""
        route = self.flavour.media(path, None)
        self.http.delete(route.path, user=user, params=route.params, code=EventCode.DELETE_MEDIA)

    def delete_array(self, array_id: int, *, user: str) -> None:
        method, route = self.flavour.delete_array(array_id)
        if method == "DELETE":
            self.http.delete(route.path, user=user, params=route.params, code=EventCode.DELETE_JOB)
        else:
            self.http.post(route.path, user=user, body={}, code=EventCode.DELETE_JOB)

    # --- helpers ---------------------------------------------------------------------------

    def _array_ids_in_order(self, array_id: int, expected: int) -> list[int]:
        jobs = self.get_array_jobs(array_id)
        if not jobs:
            jobs = self.get_jobs([array_id])
        if len(jobs) != expected:
            raise OarUnavailable(f"array {array_id}: OAR lists {len(jobs)} jobs, {expected} submitted",
                                 code=EventCode.SUBMIT_JOB)
        if all(job.array_index is not None for job in jobs):
            jobs = sorted(jobs, key=lambda job: job.array_index or 0)
        return [job.id for job in jobs]  # else by id: OAR numbers an array's jobs in order

    def _collection(self, route: Route, *, user: str | None, code: EventCode) -> Iterator[Any]:
        """Every item of a collection, page after page (OAR 2.5 `next` links, OAR 3 offsets)."""
        params: list[tuple[str, str]] = [*route.params, ("limit", str(self.page_limit))]
        answer = self.http.get(route.path, user=user, params=params, code=code)
        offset = 0
        pages = 0
        while True:
            raw = answer.json()
            items = self._parsed(collection_items, raw, code)
            yield from items
            pages += 1
            if pages > 1_000_000:  # a server that never stops paging is broken
                raise OarUnavailable("collection never ends", code=code)
            if self.flavour.follows_links:
                href = next_link(raw)
                if href is None:
                    return
                answer = self.http.get(href, user=user, code=code)
            else:
                total = as_int(raw.get("total")) or 0
                offset = (as_int(raw.get("offset")) or offset) + self.page_limit
                if offset >= total or not items:
                    return
                answer = self.http.get(route.path, user=user,
                                       params=[*params, ("offset", str(offset))], code=code)

    @staticmethod
    def _parsed(parse: Callable[[Any], Any], raw: Any, code: EventCode) -> Any:
        try:
            return parse(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise OarUnavailable(f"unexpected OAR answer: {exc}", code=code) from exc


def client_for_cluster(cluster: Any, *, timeout_seconds: float = 30.0,
                       cert_file: str | None = None, key_file: str | None = None,
                       ca_file: str | None = None, verify_ssl: bool = True,
                       tokens: Mapping[str, str] | None = None, admin_user: str | None = "oar",
                       retry: RetryPolicy = DEFAULT_RETRY,
                       sleep: Callable[[float], None] = time.sleep) -> OarClient:
    """An `OarClient` for a cluster: a `Cluster`, a `clusters` row, or a mapping of its fields
    (`api_url`, `batch`, `api_auth_type`, `api_auth_header`, `api_username`, `api_password`,
    `api_chunk_size`, `api_limit`, `api_timeout_seconds`).

    `timeout_seconds` (REST_QUERIES_TIMEOUT) applies unless the cluster sets its own; the client
    certificate (`cert_file` + `key_file`) is used for `cert` clusters; `tokens` maps cluster
    logins to JWTs for `jwt` clusters (OAR 3 only); it is kept, not copied, so a mapping that
    reloads itself (see `cigri.app.build_oar_factory`) sees tokens registered later.
    """
    fields = _fields(cluster)
    flavour = flavour_for(fields.get("batch") or ClusterAPI.OAR2_5)
    auth_type = AuthType(fields.get("api_auth_type") or AuthType.HEADER)
    header = fields.get("api_auth_header") or DEFAULT_IDENTITY_HEADER
    verify: bool | str = ca_file if (verify_ssl and ca_file) else verify_ssl
    cert: str | tuple[str, str] | None = None
    basic: tuple[str, str] | None = None
    if auth_type is AuthType.CERT:
        if not (cert_file and key_file):
            raise ValueError(f"cluster {fields.get('name')}: cert auth needs a certificate and a key")
        cert = (cert_file, key_file)
    elif auth_type is AuthType.PASSWORD:
        if not fields.get("api_username"):
            raise ValueError(f"cluster {fields.get('name')}: password auth needs api_username")
        basic = (str(fields["api_username"]), str(fields.get("api_password") or ""))
    elif auth_type is AuthType.JWT and flavour.name is not ClusterAPI.OAR3:
        raise ValueError(f"cluster {fields.get('name')}: jwt auth is for oar3 clusters only")
    auth = OarAuth(identity_header=str(header), tokens=tokens if tokens is not None else {},
                   cert=cert, basic=basic,
                   verify=verify, jwt=auth_type is AuthType.JWT)
    timeout = fields.get("api_timeout_seconds") or timeout_seconds
    return OarClient(str(fields["api_url"]), flavour=flavour.name, auth=auth,
                     timeout_seconds=float(timeout),
                     chunk_size=int(fields.get("api_chunk_size") or 100),
                     page_limit=int(fields.get("api_limit") or 100),
                     retry=retry, admin_user=admin_user, sleep=sleep,
                     cluster=str(fields.get("name") or ""))


def _fields(cluster: Any) -> Mapping[str, Any]:
    if isinstance(cluster, Mapping):
        return cluster
    mapping = getattr(cluster, "_mapping", None)  # a SQLAlchemy Row
    if isinstance(mapping, Mapping):
        return mapping
    return vars(cluster) if hasattr(cluster, "__dict__") else {
        name: getattr(cluster, name) for name in getattr(cluster, "__dataclass_fields__", {})}


__all__ = ["OarAuth", "OarClient", "RetryPolicy", "client_for_cluster"]
