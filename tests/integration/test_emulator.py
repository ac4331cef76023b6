"""The OAR emulator in execute mode, driven over HTTP like cigri drives OAR."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cigri.emulator import Emulator, run_in_thread

HEADERS = {"Accept": "application/json", "X-Remote-Ident": "testuser"}


@pytest.fixture
def emulator(tmp_path: Any) -> Iterator[Emulator]:
    with run_in_thread(allow_root_jobs=True,
                       clusters=1, nodes=2, cores=2, workdir=str(tmp_path), kill_grace=0.3) as handle:
        yield handle


def wait_state(url: str, job_id: int, states: tuple[str, ...], timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = requests.get(f"{url}jobs/{job_id}", headers=HEADERS, timeout=5).json()
        if job["state"] in states or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_array_submission_runs_to_terminated_with_output_and_env(emulator: Emulator) -> None:
    url = emulator.urls[0]
    response = requests.post(
        f"{url}jobs",
        headers=HEADERS,
        json={
            "resource": "/core=1,walltime=00:01:00",
            "command": r'echo "\$OAR_ARRAY_ID \$OAR_ARRAY_INDEX \$OAR_JOB_ID"; echo err >&2; exit 3;',
            "param_file": "a1 x\n# comment\n\na2 y\n",
            "name": "arr",
        },
        timeout=5,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == 1
    assert response.headers["Location"] == "/oarapi/jobs/1"
    assert body["cmd_output"].endswith("OAR_JOB_ID=1\nOAR_JOB_ID=2\nOAR_ARRAY_ID=1\n")
    job = wait_state(url, 2, ("Terminated", "Error"))
    assert job["state"] == "Terminated"
    assert job["exit_code"] == 3 << 8
    assert job["array_index"] == 2
    assert [e["type"] for e in job["events"]] == ["SWITCH_INTO_TERMINATE_STATE"]
    stdout = requests.get(
        f"{url}media{job['launching_directory']}/{job['stdout_file']}", headers=HEADERS, timeout=5
    )
    assert stdout.status_code == 200
    assert stdout.text == "1 2 2\n"
    tail = requests.get(f"{url}media/~/OAR.arr.2.stderr?tail=1", headers=HEADERS, timeout=5)
    assert tail.text == "err\n"
    listing = requests.get(f"{url}jobs/details?array=1", headers=HEADERS, timeout=5).json()
    assert next(item["command"] for item in listing["items"]).endswith("a1 x")
    assert listing["total"] == 2


def test_besteffort_job_is_killed_by_a_normal_job(emulator: Emulator) -> None:
    url = emulator.urls[0]
    best = requests.post(
        f"{url}jobs",
        headers=HEADERS,
        json={"resource": "/core=4", "command": "sleep 60", "type": "besteffort"},
        timeout=5,
    ).json()
    assert wait_state(url, best["id"], ("Running",))["state"] == "Running"
    normal = requests.post(
        f"{url}jobs", headers=HEADERS, json={"resource": "/core=2", "command": "true"}, timeout=5
    ).json()
    killed = wait_state(url, best["id"], ("Error", "Terminated"))
    assert killed["state"] == "Error"
    assert [e["type"] for e in killed["events"]][:2] == ["BESTEFFORT_KILL", "FRAG_JOB_REQUEST"]
    assert killed["exit_code"] is None
    assert wait_state(url, normal["id"], ("Terminated",))["state"] == "Terminated"


def test_delete_running_job(emulator: Emulator) -> None:
    url = emulator.urls[0]
    job = requests.post(f"{url}jobs", headers=HEADERS, json={"command": "sleep 60"}, timeout=5).json()
    wait_state(url, job["id"], ("Running",))
    deleted = requests.delete(f"{url}jobs/{job['id']}", headers=HEADERS, timeout=5)
    assert deleted.status_code == 202
    assert deleted.json()["id"] == str(job["id"])
    final = wait_state(url, job["id"], ("Error",))
    assert [e["type"] for e in final["events"]] == [
        "FRAG_JOB_REQUEST",
        "SEND_KILL_JOB",
        "SWITCH_INTO_ERROR_STATE",
    ]
    again = requests.delete(f"{url}jobs/{job['id']}", headers=HEADERS, timeout=5)
    assert again.status_code == 400
    assert "This job was already killed" in again.json()["message"]


def test_job_environment_and_files(emulator: Emulator, tmp_path: Any) -> None:
    url = emulator.urls[0]
    workdir = tmp_path / "campaign"
    workdir.mkdir()
    script = (
        r'echo "\$OAR_JOB_NAME \$OAR_USER \$OAR_WORKDIR \$(pwd)"; cat \$OAR_NODEFILE; '
        r"test -s \$OAR_RESOURCE_PROPERTIES_FILE && echo props"
    )
    job_id = requests.post(
        f"{url}jobs",
        headers=HEADERS,
        json={
            "resource": "/nodes=1/core=2",
            "command": script,
            "directory": str(workdir),
            "name": "env",
            "stdout": "out.%jobid%.txt",
            "stderr": "err.%jobid%.txt",
        },
        timeout=5,
    ).json()["id"]
    done = wait_state(url, job_id, ("Terminated", "Error"))
    assert (done["state"], done["stdout_file"]) == ("Terminated", f"out.{job_id}.txt")
    output = (workdir / f"out.{job_id}.txt").read_text().splitlines()
    assert output == [f"env testuser {workdir} {workdir}", "node1", "node1", "props"]
    media = requests.delete(f"{url}media{workdir}/out.{job_id}.txt", headers=HEADERS, timeout=5)
    assert media.status_code == 204
    assert (
        requests.delete(f"{url}media{workdir}/out.{job_id}.txt", headers=HEADERS, timeout=5).status_code
        == 404
    )
    listing = requests.get(f"{url}media/ls{workdir}/", headers=HEADERS, timeout=5).json()
    assert [item["name"] for item in listing["items"]] == [f"err.{job_id}.txt"]


def test_walltime_and_missing_directory_in_execute_mode(emulator: Emulator, tmp_path: Any) -> None:
    url = emulator.urls[0]
    stubborn = requests.post(
        f"{url}jobs",
        headers=HEADERS,
        json={"resource": "/core=1,walltime=0:0:1", "command": "trap '' TERM; sleep 30"},
        timeout=5,
    ).json()["id"]
    lost = requests.post(
        f"{url}jobs",
        headers=HEADERS,
        json={"command": "true", "directory": str(tmp_path / "nowhere")},
        timeout=5,
    ).json()["id"]
    killed = wait_state(url, stubborn, ("Error", "Terminated"))
    assert [e["type"] for e in killed["events"]] == [
        "FRAG_JOB_REQUEST",
        "WALLTIME",
        "SEND_KILL_JOB",
        "SWITCH_INTO_ERROR_STATE",
    ]
    assert killed["state"] == "Error"
    failed = wait_state(url, lost, ("Error", "Terminated"))
    assert [e["type"] for e in failed["events"]] == ["SWITCH_INTO_ERROR_STATE", "WORKING_DIRECTORY"]


def test_a_shell_killed_by_a_signal_reports_the_signal_like_oar(emulator: Emulator) -> None:
    url = emulator.urls[0]
    job_id = requests.post(
        f"{url}jobs", headers=HEADERS, json={"command": r"kill -TERM \$\$"}, timeout=5
    ).json()["id"]
    done = wait_state(url, job_id, ("Terminated", "Error"))
    assert (done["state"], done["exit_code"]) == ("Terminated", 15)


def test_dollar_dollar_is_a_dead_pid_so_jobs_cannot_signal_the_emulator(emulator: Emulator) -> None:
    url = emulator.urls[0]
    job_id = requests.post(f"{url}jobs", headers=HEADERS, json={"command": "kill -9 $$"}, timeout=5).json()[
        "id"
    ]
    done = wait_state(url, job_id, ("Terminated", "Error"))
    assert (done["state"], done["exit_code"]) == ("Terminated", 256)  # kill failed: exit 1, as on OAR
