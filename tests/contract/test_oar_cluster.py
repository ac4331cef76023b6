"""Contract: the cluster-level calls (probe, resources, stress factor) and best-effort preemption."""

from __future__ import annotations

import time

import pytest

from cigri.domain.oar import OarState, SubmitRequest
from cigri.oar.client import OarClient

from .conftest import USER, Target, wait_for


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


def test_besteffort_job_is_killed_by_a_normal_job(oar: OarClient, target: Target) -> None:
    """A best-effort job holding every core is preempted by a normal job: BESTEFFORT_KILL, Error.

    On a shared real cluster other users' jobs may hold cores: the best-effort job is then given
    a few chances to start, and the test fails with a clear message if the cluster never frees.
    """
    besteffort = None
    for _attempt in range(3):
        besteffort = oar.submit(SubmitRequest(
            command="sleep 120", resources=f"/core={target.cores}", walltime="00:05:00",
            types=("besteffort",), directory=target.home, name="ct-besteffort",
            stdout=target.out("be"), stderr=target.out("be-err")), user=USER).job_ids[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = oar.get_job(besteffort, user=USER)
            if job.state is OarState.RUNNING or job.is_final:
                break
            time.sleep(0.4)
        if job.state is OarState.RUNNING:
            break
        oar.delete_job(besteffort, user=USER)
        besteffort = None
    if besteffort is None:
        pytest.fail(f"{target.url}: a best-effort job on all {target.cores} cores never started "
                    "(other users hold cores); rerun when the cluster is idle")
    assert "besteffort" in oar.get_job(besteffort, user=USER).types
    normal = oar.submit(SubmitRequest(
        command="true", resources="/core=1", walltime="00:01:00", directory=target.home,
        name="ct-preemptor", stdout=target.out("pre"), stderr=target.out("pre-err")),
        user=USER).job_ids[0]
    jobs = wait_for(oar, [besteffort, normal])
    killed = oar.get_job(besteffort, user=USER)
    assert killed.state is OarState.ERROR
    assert "BESTEFFORT_KILL" in killed.event_types
    assert "FRAG_JOB_REQUEST" in killed.event_types
    assert jobs[normal].state is OarState.TERMINATED
