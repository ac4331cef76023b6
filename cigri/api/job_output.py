"""A job's stdout or stderr, read through the OAR client as `gridstat -O` does: one home for
`GET /jobs/<id>/stdout|stderr` and the dashboard's output page.

Two steps so no transaction is held across the HTTP call to OAR: `output_source` reads, in the
caller's transaction, where the job ran and as whom; `read_output` then asks OAR where the file
is (the job says; a temporal-grouping sub-job wrote its own file in the batch's directory) and
reads its tail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection

from cigri.api.access import oar_for
from cigri.api.shapes import ApiError
from cigri.domain import batches
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi
from cigri.storage.clusters import get_cluster
from cigri.storage.users import get_cluster_login

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True, kw_only=True)
class OutputSource:
    """Where a job's output lives: its cluster, the login it ran as, its OAR id."""

    job_id: int
    cluster: Cluster
    user: str
    remote_id: int
    tag: str | None


def output_source(conn: Connection, job: Mapping[str, Any]) -> OutputSource:
    """`job` is `queries.get_job`'s row of a job the caller may see (checked before)."""
    if job["remote_id"] is None or job["cluster_id"] is None:
        raise ApiError(404, "Not found", f"Job {job['id']} has not been submitted to a cluster")
    cluster = get_cluster(conn, job["cluster_id"])
    login = get_cluster_login(conn, grid_login=job["grid_user"], cluster_id=job["cluster_id"])
    return OutputSource(job_id=int(job["id"]), cluster=cluster,
                        user=login if login is not None else str(job["grid_user"]),
                        remote_id=int(job["remote_id"]), tag=job.get("tag"))


def client(source: OutputSource) -> OarApi:
    """The cluster's OAR client: asked for once the reading transaction has ended (the factory
    may read the database itself, and SQLite allows one writer)."""
    return oar_for(source.cluster)


def read_output(source: OutputSource, which: Stream, *, tail: int) -> str:
    """The last `tail` lines of the job's stdout or stderr (OarError when the cluster fails);
    call it outside any transaction."""
    oar = client(source)
    details = oar.get_job(source.remote_id, user=source.user)
    path = details.stdout_file if which == "stdout" else details.stderr_file
    if batches.is_sub_job(source.tag):
        path = (batches.stdout_file(source.job_id) if which == "stdout"
                else batches.stderr_file(source.job_id))
    if not path:
        raise ApiError(404, "Not found", f"Job {source.job_id} has no {which} file on its cluster")
    data = oar.read_file(details.path_of(path), user=source.user, tail=tail)
    return data.decode("utf-8", errors="replace")
