"""Nikita's deletes against the real OAR 2.5.9 clusters: a cancelled campaign's array goes with
one array delete, a single-job cancel deletes one job, and the jobs end in `Error` on OAR."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select

from cigri.config import build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.nikita import Nikita
from cigri.domain.clock import SystemClock
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi, OarError, SubmitRequest
from cigri.domain.states import JobState
from cigri.oar.client import client_for_cluster
from cigri.storage.actions import cancel_campaign, cancel_job
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import bag_of_tasks, events, jobs, submissions

USER = "testuser"
HOME = "/home/testuser"
DEADLINE_SECONDS = 120.0


def _urls() -> list[str]:
    urls = [u.strip() for u in os.environ.get("CIGRI_TEST_OAR_URLS", "").split(",") if u.strip()]
    if not urls:
        pytest.fail("CIGRI_TEST_OAR_URLS is not set: the real OAR clusters are needed here")
    return urls


@pytest.mark.real_oar
@pytest.mark.timeout(300)
def test_nikita_deletes_arrays_and_single_jobs_on_real_oar(pg_engine: Engine) -> None:
    url = _urls()[0]
    clock = SystemClock()
    run = uuid.uuid4().hex[:8]
    with pg_engine.begin() as conn:
        cluster = add_cluster(conn, name="real1", api_url=url, now=clock.now())
        props = {"exec_file": "sleep", "type": "best-effort", "resources": "/resource_id=1",
                 "walltime": "00:10:00"}
        cancelled = create_campaign(conn, grid_user=USER, name="cancel", jobs_type="normal",
                                    jdl={}, properties={cluster.id: props},
                                    params=[f"a{i} 300" for i in range(3)], now=clock.now())
        kept = create_campaign(conn, grid_user=USER, name="keep", jobs_type="normal", jdl={},
                               properties={cluster.id: props},
                               params=[f"b{i} 300" for i in range(2)], now=clock.now())
    clients: list[OarApi] = []

    def factory(c: Cluster) -> OarApi:
        clients.append(client_for_cluster(c, timeout_seconds=30.0))
        return clients[-1]

    oar = factory(cluster)
    array = oar.submit(SubmitRequest(command="sleep", resources="/resource_id=1",
                                     walltime="00:10:00", params=["300"] * 3,
                                     name=f"cigri.nikita.{run}", directory=HOME,
                                     types=["besteffort"]), user=USER)
    pair = oar.submit(SubmitRequest(command="sleep", resources="/resource_id=1",
                                    walltime="00:10:00", params=["300"] * 2,
                                    name=f"cigri.nikita.{run}.b", directory=HOME,
                                    types=["besteffort"]), user=USER)
    remote = list(array.job_ids) + list(pair.job_ids)
    try:
        with pg_engine.begin() as conn:
            job_ids: dict[int, list[int]] = {}
            for campaign, answer in ((cancelled, array), (kept, pair)):
                submission = conn.execute(insert(submissions).values(
                    key=f"{run}{campaign}", cluster_id=cluster.id, campaign_id=campaign,
                    state="submitted", nb_jobs=len(answer.job_ids),
                    remote_array_id=answer.array_id, created_at=clock.now())
                    .returning(submissions.c.id)).scalar_one()
                params = conn.execute(select(bag_of_tasks.c.param_id).where(
                    bag_of_tasks.c.campaign_id == campaign).order_by(bag_of_tasks.c.id)
                ).scalars().all()
                job_ids[campaign] = [conn.execute(insert(jobs).values(
                    campaign_id=campaign, param_id=param, cluster_id=cluster.id,
                    state=JobState.SUBMITTED.value, remote_id=remote_id,
                    submission_id=submission, submission_time=clock.now())
                    .returning(jobs.c.id)).scalar_one()
                    for param, remote_id in zip(params, answer.job_ids, strict=True)]
            conn.execute(bag_of_tasks.delete())
            cancel_campaign(conn, cancelled, now=clock.now())
            cancel_job(conn, job_ids[kept][0], now=clock.now())
        nikita = Nikita(DaemonContext(settings=build_settings({}), engine=pg_engine, clock=clock,
                                      stop=threading.Event(), oar_factory=factory),
                        interval=timedelta(0))
        nikita.run(loops=1)
        # One array delete for the cancelled campaign, one job delete for the single cancel.
        assert sum(c.request_count for c in clients[1:]) == 2  # type: ignore[attr-defined]
        deadline = time.monotonic() + DEADLINE_SECONDS
        states: dict[int, str] = {}
        while time.monotonic() < deadline:
            states = {j.id: j.state.value for j in oar.get_jobs(remote)}
            if all(states[r] == "Error" for r in remote[:4]):
                break
            time.sleep(2)
        assert [states[r] for r in remote[:4]] == ["Error"] * 4, states
        assert states[remote[4]] != "Error"
        with pg_engine.begin() as conn:
            open_frags = conn.execute(select(events.c.id).where(
                events.c.code == "USER_FRAG", events.c.state == "open")).all()
            survivor = conn.execute(select(jobs.c.state).where(
                jobs.c.id == job_ids[kept][1])).scalar_one()
        assert open_frags == [] and survivor == JobState.SUBMITTED
    finally:
        for remote_id in remote:  # leave nothing running on the shared clusters
            with contextlib.suppress(OarError):
                oar.delete_job(remote_id, user=USER)
