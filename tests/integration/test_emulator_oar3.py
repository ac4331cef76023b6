"""The emulator answering in OAR 3 shapes (`api="oar3"`), driven by cigri's own OAR client in its
`oar3` flavour with JWT identities: submission answers 200 with one id, collections have no links,
errors are `{"detail": ...}`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cigri.domain.oar import OarRejected, OarState, SubmitRequest
from cigri.emulator import Emulator, ManualClock, run_in_thread
from cigri.oar.client import OarClient
from cigri.oar.http import OarAuth, RetryPolicy

T0 = 1_800_000_000


def token(user: str) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"user": user}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{claims}.signature"


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Emulator]:
    with run_in_thread(allow_root_jobs=True,
                       mode="simulate", clock=ManualClock(T0), workdir=str(tmp_path), api="oar3") as emulator:
        yield emulator


def test_the_oar3_client_runs_an_array_on_the_oar3_emulator(emu: Emulator) -> None:
    client = OarClient(
        emu.urls[0],
        flavour="oar3",
        auth=OarAuth(jwt=True, tokens={"alice": token("alice"), "oar": token("oar")}),
        page_limit=2,
        retry=RetryPolicy(attempts=2, backoff_seconds=0.01),
    )
    submission = client.submit(
        SubmitRequest(
            command="sleep 30",
            resources="/core=1",
            walltime="00:10:00",
            params=("a", "b", "c"),
            types=("besteffort",),
        ),
        user="alice",
    )
    assert submission.job_ids == (1, 2, 3)
    assert [job.state for job in client.get_array_jobs(submission.array_id)] == [OarState.RUNNING] * 3
    emu.cluster(0).advance(30)
    jobs = client.get_jobs(list(submission.job_ids))
    assert [(j.state, j.exit_code, j.owner) for j in jobs] == [(OarState.TERMINATED, 0, "alice")] * 3
    client.delete_job(1, user="alice")  # OAR 3 answers 200 even when oardel fails
    with pytest.raises(OarRejected):
        client.get_job(99, user="alice")


def test_oar3_shapes(emu: Emulator) -> None:
    url = emu.urls[0]
    headers = {"Authorization": f"Bearer {token('alice')}"}
    created = requests.post(
        f"{url}jobs", json={"command": "sleep 5", "resource": ["/core=1"]}, headers=headers, timeout=5
    )
    assert (created.status_code, created.json()) == (200, {"id": 1})
    listing = requests.get(f"{url}jobs?details=1&job_ids=1", headers=headers, timeout=5).json()
    assert set(listing) == {"items", "total", "offset"}
    assert (listing["items"][0]["user"], listing["items"][0]["array_index"]) == ("alice", 1)
    missing = requests.get(f"{url}jobs/77", headers=headers, timeout=5)
    assert (missing.status_code, missing.json()) == (404, {"detail": "Job not found"})
    deleted = requests.delete(f"{url}jobs/1", headers=headers, timeout=5).json()
    assert (deleted["id"], deleted["exit_status"]) == (1, 0)
    again = requests.delete(f"{url}jobs/1", headers=headers, timeout=5)
    assert (again.status_code, again.json()["exit_status"]) == (200, 1)
