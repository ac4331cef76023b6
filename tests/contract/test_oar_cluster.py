"""Contract: the cluster-level calls (probe, resources, stress factor) and best-effort preemption."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from cigri.domain.oar import OarState, SubmitRequest
from cigri.oar.client import OarClient

from .conftest import JOB_DEADLINE_SECONDS, REAL_HOME, REAL_URLS, USER, Target, wait_for

pytestmark = pytest.mark.timeout(400)


def test_probe_answers(oar: OarClient) -> None:
    oar.probe()
    assert oar.request_count >= 1


def test_resources_are_listed_through_every_page(target: Target) -> None:
    client = target.client(page_limit=3)
    resources = client.get_resources()
    assert len(resources) == target.cores
    assert client.request_count - client.retry_count == 3  # 3 + 3 + 2
    assert [r.id for r in resources] == sorted(r.id for r in resources)
    assert len({r.id for r in resources}) == target.cores
    assert all(r.state == "Alive" for r in resources)
    assert all(r.network_address for r in resources)
    assert len({r.network_address for r in resources}) == 4
    assert all(isinstance(r.available_upto, int) for r in resources)


def test_stress_factor_is_a_number(oar: OarClient) -> None:
    stress = oar.get_stress_factor()
    assert isinstance(stress, float) and stress >= 0.0


def _current_jobs(client: OarClient) -> list[tuple[int, str, str]]:
    """(id, owner, state) of the cluster's current jobs (OAR's default filter of `jobs`)."""
    answer = client.http.get("jobs", user=None, params=[("limit", "100")], code="GET_JOBS").json()
    return [(int(i["id"]), str(i["owner"]), str(i["state"])) for i in answer["items"]]


def test_besteffort_job_is_killed_by_a_normal_job(target: Target) -> None:
    """A best-effort job holding every core is preempted by a normal job: BESTEFFORT_KILL, Error.

    It needs every core of one cluster. On the shared real clusters other users' jobs may hold
    cores: the test then runs on an idle one of the real clusters if there is one, else waits on
    its own for the cores, and fails with a clear message if they never free up.
    """
    candidates = [target]
    if target.real:
        candidates += [Target(label=f"p{urlsplit(url).port}", url=url, user=USER, home=REAL_HOME,
                              real=True) for url in REAL_URLS if url != target.url]
    idle = [t for t in candidates if not _current_jobs(t.client())]
    chosen = idle[0] if idle else target
    oar = chosen.client()
    besteffort = oar.submit(SubmitRequest(
        command="sleep 120", resources=f"/core={chosen.cores}", walltime="00:05:00",
        types=("besteffort",), directory=chosen.home, name="ct-besteffort",
        stdout=chosen.out("be"), stderr=chosen.out("be-err")), user=USER).job_ids[0]
    deadline = time.monotonic() + JOB_DEADLINE_SECONDS
    job = oar.get_job(besteffort, user=USER)
    while job.state is not OarState.RUNNING and not job.is_final and time.monotonic() < deadline:
        time.sleep(0.4)
        job = oar.get_job(besteffort, user=USER)
    if job.state is not OarState.RUNNING:
        others = _current_jobs(oar)
        oar.delete_job(besteffort, user=USER)
        pytest.fail(f"{chosen.url}: a best-effort job on all {chosen.cores} cores is {job.state.value} "
                    f"after {JOB_DEADLINE_SECONDS:.0f}s: other jobs hold cores {others[:10]}; "
                    "rerun when a cluster is idle")
    assert "besteffort" in job.types
    normal = oar.submit(SubmitRequest(
        command="true", resources="/core=1", walltime="00:01:00", directory=chosen.home,
        name="ct-preemptor", stdout=chosen.out("pre"), stderr=chosen.out("pre-err")),
        user=USER).job_ids[0]
    jobs = wait_for(oar, [besteffort, normal])
    killed = oar.get_job(besteffort, user=USER)
    assert killed.state is OarState.ERROR
    assert "BESTEFFORT_KILL" in killed.event_types
    assert "FRAG_JOB_REQUEST" in killed.event_types
    assert jobs[normal].state is OarState.TERMINATED
