"""The OAR emulator in simulate mode on a manual clock: scheduling, walltime, preemption, filters,
pagination, errors, fault knobs and the state file, all through HTTP, with no sleeping."""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from cigri.emulator import Emulator, ManualClock, Workload, run_in_thread

HEADERS = {"Accept": "application/json", "X-Remote-Ident": "testuser"}
T0 = 1_800_000_000


def start(tmp_path: Path, at: float = T0, **options: Any) -> Emulator:
    options.setdefault("nodes", 2)
    options.setdefault("cores", 2)
    return run_in_thread(allow_root_jobs=True,
                         mode="simulate", clock=ManualClock(at), workdir=str(tmp_path), **options)


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Emulator]:
    with start(tmp_path) as emulator:
        yield emulator


def submit(url: str, body: dict[str, Any], user: str = "testuser") -> list[int]:
    response = requests.post(f"{url}jobs", json=body, headers={**HEADERS, "X-Remote-Ident": user}, timeout=5)
    assert response.status_code == 201, response.text
    return [
        int(line.split("=")[1])
        for line in response.json()["cmd_output"].splitlines()
        if line.startswith("OAR_JOB_ID=")
    ]


def job(url: str, job_id: int) -> dict[str, Any]:
    response = requests.get(f"{url}jobs/{job_id}", headers=HEADERS, timeout=5)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def states(url: str, ids: list[int]) -> list[str]:
    return [job(url, i)["state"] for i in ids]


def events(url: str, job_id: int) -> list[str]:
    return [e["type"] for e in job(url, job_id)["events"]]


def test_fifo_schedules_in_order_with_emulated_times(emu: Emulator) -> None:
    url, control = emu.urls[0], emu.cluster(0)
    ids = submit(
        url, {"resource": "/core=1,walltime=1:0:0", "command": "sleep 100", "param_file": "1\n2\n3\n4\n5\n6"}
    )
    assert states(url, ids) == ["Running"] * 4 + ["Waiting"] * 2
    first, fifth = job(url, ids[0]), job(url, ids[4])
    assert (first["start_time"], first["stop_time"], first["exit_code"], first["walltime"]) == (
        T0,
        0,
        None,
        3600,
    )
    assert (fifth["start_time"], fifth["walltime"], fifth["scheduled_start"]) == (0, None, None)
    control.advance(100)
    assert states(url, ids) == ["Terminated"] * 4 + ["Running"] * 2
    done = job(url, ids[0])
    assert (done["stop_time"], done["exit_code"], done["submission_time"]) == (T0 + 100, 0, T0)
    assert job(url, ids[4])["start_time"] == T0 + 100
    control.advance(100)
    assert control.completions() == {(ids[0], i): 1 for i in range(1, 7)}
    assert [j["state"] for j in control.jobs()] == ["Terminated"] * 6
    assert control.runs_by_command()[("testuser", None, "sleep 100 3")] == 1


def test_exit_status_is_the_raw_wait_status(tmp_path: Path) -> None:
    workload = Workload(duration="fixed:10", failure_rate=1.0, failure_status=1)
    with start(tmp_path, workload=workload, simulate_outputs=True) as emulator:
        url = emulator.urls[0]
        ids = submit(url, {"command": "./task; exit 66"}) + submit(url, {"command": "./task"})
        emulator.cluster(0).advance(10)
        assert [job(url, i)["exit_code"] for i in ids] == [66 << 8, 1 << 8]
        assert states(url, ids) == ["Terminated", "Terminated"]
        stderr = requests.get(f"{url}media/~/OAR.{ids[0]}.stderr?tail=1", headers=HEADERS, timeout=5)
        assert stderr.text == "simulated failure: exit status 66\n"


def test_walltime_kill(emu: Emulator) -> None:
    url = emu.urls[0]
    (job_id,) = submit(url, {"resource": "/core=1,walltime=00:00:30", "command": "sleep 100"})
    emu.cluster(0).advance(30)
    killed = job(url, job_id)
    assert killed["state"] == "Error"
    assert killed["exit_code"] is None
    assert killed["stop_time"] == T0 + 30
    assert events(url, job_id) == ["FRAG_JOB_REQUEST", "WALLTIME", "SEND_KILL_JOB", "SWITCH_INTO_ERROR_STATE"]


def test_normal_user_kills_besteffort_jobs(emu: Emulator) -> None:
    url, control = emu.urls[0], emu.cluster(0)
    ids = submit(url, {"resource": "/core=1", "command": "sleep 1000", "type": "besteffort", "array": "4"})
    assert job(url, ids[0])["queue"] == "besteffort"
    assert job(url, ids[0])["types"] == ["besteffort"]
    assert states(url, ids) == ["Running"] * 4
    control.normal_user(cores=2, duration=50)
    assert states(url, ids) == ["Running", "Running", "Error", "Error"]  # the youngest go first
    assert events(url, ids[3]) == [
        "BESTEFFORT_KILL",
        "FRAG_JOB_REQUEST",
        "SEND_KILL_JOB",
        "SWITCH_INTO_ERROR_STATE",
    ]
    normal = [j for j in control.jobs() if j["owner"] == "normaluser"]
    assert [j["state"] for j in normal] == ["Running"]
    control.advance(50)
    assert [j["state"] for j in control.jobs() if j["owner"] == "normaluser"] == ["Terminated"]
    assert states(url, ids) == ["Running", "Running", "Error", "Error"]


def test_normal_job_waits_for_killed_besteffort_then_runs(emu: Emulator) -> None:
    url = emu.urls[0]
    (best,) = submit(url, {"resource": "/core=4", "command": "sleep 1000", "type": "besteffort"})
    (normal,) = submit(url, {"resource": "/nodes=2/core=2", "command": "sleep 10"})
    assert states(url, [best, normal]) == ["Error", "Running"]
    assert "BESTEFFORT_KILL" in events(url, best)
    detail = requests.get(f"{url}jobs/{normal}/details", headers=HEADERS, timeout=5).json()
    assert sorted(r["id"] for r in detail["resources"]) == [1, 2, 3, 4]
    assert sorted(n["network_address"] for n in detail["nodes"]) == ["node1", "node2"]


def test_deletions(emu: Emulator) -> None:
    url = emu.urls[0]
    running, waiting = submit(url, {"resource": "/core=4", "command": "sleep 100", "array": "2"})
    response = requests.delete(f"{url}jobs/{running}", headers=HEADERS, timeout=5)
    assert response.status_code == 202
    assert response.json()["id"] == str(running)
    assert "REGISTERED" in response.json()["oardel_output"]
    assert events(url, running) == ["FRAG_JOB_REQUEST", "SEND_KILL_JOB", "SWITCH_INTO_ERROR_STATE"]
    assert job(url, waiting)["state"] == "Running"  # the freed cores went to the next job
    again = requests.delete(f"{url}jobs/{running}", headers=HEADERS, timeout=5)
    assert again.status_code == 400
    assert again.json()["title"] == "Oardel error"
    assert "This job was already killed" in again.json()["message"]
    other = requests.delete(f"{url}jobs/{waiting}", headers={**HEADERS, "X-Remote-Ident": "cigri"}, timeout=5)
    assert other.status_code == 400
    assert "You are not the right user" in other.json()["message"]
    (queued,) = submit(url, {"resource": "/core=4", "command": "sleep 100"})
    array = requests.post(f"{url}jobs/array/{queued}/deletions/new", json={}, headers=HEADERS, timeout=5)
    assert array.status_code == 202
    gone = job(url, queued)
    assert (gone["state"], gone["start_time"], gone["stop_time"], gone["walltime"]) == ("Error", 0, 0, None)
    assert gone["message"] == "Job killed by Leon directly"
    assert events(url, queued) == ["FRAG_JOB_REQUEST"]


def test_collection_filters_and_pagination(emu: Emulator) -> None:
    url = emu.urls[0]
    ids = submit(url, {"resource": "/core=1", "command": "sleep 10", "array": "7"})
    other = submit(url, {"resource": "/core=1", "command": "sleep 10"}, user="cigri")
    emu.cluster(0).advance(10)  # 4 done, 4 running now
    current = requests.get(f"{url}jobs", headers=HEADERS, timeout=5).json()
    assert [j["id"] for j in current["items"]] == ids[4:] + other
    assert set(current["items"][0]) == {
        "id",
        "name",
        "owner",
        "queue",
        "state",
        "submission",
        "api_timestamp",
        "links",
    }
    done = requests.get(f"{url}jobs?state=Terminated", headers=HEADERS, timeout=5).json()
    assert [j["id"] for j in done["items"]] == ids[:4]
    by_ids = requests.get(f"{url}jobs/details?ids={ids[0]}:{ids[5]}:99999", headers=HEADERS, timeout=5).json()
    assert [j["id"] for j in by_ids["items"]] == [ids[0], ids[5]]
    assert by_ids["total"] == 2
    assert by_ids["items"][0]["array_index"] is None and by_ids["items"][0]["resubmit_job_id"] is None
    recent = requests.get(f"{url}jobs?from={T0 + 11}", headers=HEADERS, timeout=5).json()
    assert [j["id"] for j in recent["items"]] == ids[4:] + other  # the 4 done at T0+10 are left out
    window = requests.get(f"{url}jobs?from={T0}&state=Terminated", headers=HEADERS, timeout=5).json()
    assert [j["id"] for j in window["items"]] == ids[:4]
    by_user = requests.get(f"{url}jobs?user=cigri", headers=HEADERS, timeout=5).json()
    assert [j["id"] for j in by_user["items"]] == other
    page = requests.get(f"{url}jobs?array={ids[0]}&limit=3&offset=3", headers=HEADERS, timeout=5).json()
    assert (page["total"], page["offset"], [j["id"] for j in page["items"]]) == (7, 3, ids[3:6])
    links = {link["rel"]: link["href"] for link in page["links"]}
    assert links == {
        "self": f"/oarapi/jobs?array={ids[0]}&limit=3&offset=3",
        "next": f"/oarapi/jobs?array={ids[0]}&limit=3&offset=6",
        "previous": f"/oarapi/jobs?array={ids[0]}&limit=3&offset=0",
    }
    origin = url.split("/oarapi/")[0]
    seen: list[int] = []
    href: str | None = f"/oarapi/jobs/details?array={ids[0]}&limit=2"
    while href:
        body = requests.get(origin + href, headers=HEADERS, timeout=5).json()
        seen.extend(j["id"] for j in body["items"])
        href = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    assert seen == ids
    empty = requests.get(f"{url}jobs?array=424242", headers=HEADERS, timeout=5).json()
    assert empty == {"items": [], "total": 0, "offset": 0, "links": []}
    oar3 = requests.get(
        f"{url}jobs?details=1&job_ids={ids[0]}&job_ids={ids[1]}", headers=HEADERS, timeout=5
    ).json()
    assert [j["id"] for j in oar3["items"]] == ids[:2]
    assert "resources" in oar3["items"][0]


def test_submission_errors_as_oar_259(emu: Emulator) -> None:
    url = emu.urls[0]

    def post(body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
        response = requests.post(
            f"{url}jobs",
            data=body if isinstance(body, str) else json.dumps(body),
            headers={**HEADERS, "Content-Type": "application/json", **headers},
            timeout=5,
        )
        return response.status_code, response.json()

    assert post({"resource": "/core=99", "command": "true"})[0] == 400
    assert "not enough resources" in post({"resource": "/core=99", "command": "true"})[1]["message"]
    assert post({"resource": "core=x", "command": "true"})[0] == 500
    assert "Cannot recognize" in post({"resource": "/core=1,walltime=1h", "command": "true"})[1]["message"]
    assert post({"resource": "/foo=1", "command": "true"})[1]["title"] == "Bad query"
    status, body = post({"command": "true", "type": "idempotent,besteffort"})
    assert (status, "[ADMISSION RULE]" in body["message"]) == (500, True)
    assert post({"command": "true", "walltime": "1:00:00"})[0] == 500
    assert post({"resource": "/core=1"}) == (
        400,
        {
            "code": 400,
            "title": "Missing Required Field",
            "message": "A job must have a script, a command (script_path) or must be a reservation!",
        },
    )
    assert post("{not json")[1]["title"] == "JSON data not understood"
    assert post({"command": "true", "stdout": "out;rm -rf x"})[0] == 500
    assert post({"command": "true", "param_file": "# only a comment\n\n"})[0] == 400
    assert post({"command": "true"}, **{"X-Remote-Ident": "oar"})[0] == 500
    unauth = requests.post(
        f"{url}jobs", json={"command": "true"}, headers={"Accept": "application/json"}, timeout=5
    )
    assert (unauth.status_code, unauth.json()["title"]) == (401, "Permission denied")
    ok = requests.post(
        f"{url}jobs",
        json={"command": "true", "resources": "core=1", "directory": "/nonexistent"},
        headers=HEADERS,
        timeout=5,
    )
    assert ok.status_code == 201  # 2.5.9 checks the directory on the node, not at submission


def test_oar3_payload_shapes_are_accepted(emu: Emulator) -> None:
    url = emu.urls[0]
    ids = submit(
        url, {"resource": ["/core=2,walltime=0:10:0"], "command": "sleep 5", "types": ["besteffort"]}
    )
    created = job(url, ids[0])
    assert (created["walltime"], created["types"], created["queue"]) == (600, ["besteffort"], "besteffort")


def test_routes_identity_and_negotiation(emu: Emulator) -> None:
    url = emu.urls[0]
    assert requests.get(f"{url}jobs/", headers=HEADERS, timeout=5).json() == {
        "code": 404,
        "title": "Not found",
        "message": "No way to handle your request /jobs/",
    }
    assert requests.get(url, headers={"Accept": "*/*"}, timeout=5).status_code == 406
    assert requests.get(f"{url}.json", timeout=5).status_code == 200
    assert requests.get(f"{url}jobs/1", headers={"Accept": "application/json"}, timeout=5).status_code == 401
    assert requests.get(f"{url}jobs/77", headers=HEADERS, timeout=5).json()["title"] == "Job not found"
    whoami = requests.get(
        f"{url}whoami", headers={"Accept": "application/json", "X-Remote-Ident": "jean-pierre"}, timeout=5
    ).json()
    assert whoami["authenticated_user"] == "jean-pierre"
    # the underscore spelling that CiGri sends by default
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port)
    connection.request(
        "POST",
        f"{parts.path}jobs",
        body=json.dumps({"command": "sleep 1"}),
        headers={"Accept": "application/json", "Content-Type": "application/json", "X_REMOTE_IDENT": "cigri"},
    )
    answer = connection.getresponse()
    assert answer.status == 201
    created = json.loads(answer.read())
    assert job(url, created["id"])["owner"] == "cigri"
    resources = requests.get(f"{url}resources/full", headers=HEADERS, timeout=5).json()
    assert [r["id"] for r in resources["items"]] == [1, 2, 3, 4]
    assert {r["network_address"] for r in resources["items"]} == {"node1", "node2"}
    emu.cluster(0).set_stress(0.42)
    assert requests.get(f"{url}stress_factor", headers=HEADERS, timeout=5).json()["GLOBAL_STRESS"] == "0.42"


def test_fault_knobs(emu: Emulator) -> None:
    url, control = emu.urls[0], emu.cluster(0)
    control.fail_next(502, 2)
    assert [requests.get(url, headers=HEADERS, timeout=5).status_code for _ in range(3)] == [502, 502, 200]
    control.fail_next(kind="truncated")
    with pytest.raises(ValueError):
        requests.get(url, headers=HEADERS, timeout=5).json()
    control.fail_next(kind="nonjson")
    answer = requests.get(url, headers=HEADERS, timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
    control.set_error_rate(1.0)
    assert requests.get(url, headers=HEADERS, timeout=5).status_code == 500
    control.set_error_rate(0.0)
    control.outage(0.5)
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=HEADERS, timeout=5)
    assert control.server.wait_up(5.0)
    assert requests.get(url, headers=HEADERS, timeout=5).status_code == 200
    control.outage(0.3, start_in=0.2)  # an outage window later
    assert requests.get(url, headers=HEADERS, timeout=5).status_code == 200
    deadline = time.monotonic() + 5
    while control.server.up and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not control.server.up
    assert control.server.wait_up(5.0)
    admin = url.replace("/oarapi/", "/_emulator/")
    assert requests.post(f"{admin}fail_next", json={"status": 503}, timeout=5).status_code == 200
    assert requests.get(url, headers=HEADERS, timeout=5).status_code == 503
    assert requests.get(f"{admin}status", timeout=5).json()["free_cores"] == 4
    assert (
        requests.post(f"{admin}faults", json={"latency": 0.0, "error_rate": 0.0}, timeout=5).status_code
        == 200
    )
    assert (
        requests.post(f"{admin}normal_user", json={"cores": 3, "duration": 60}, timeout=5).status_code == 200
    )
    assert requests.post(f"{admin}node_state", json={"node": "node2", "state": "Absent"}, timeout=5).ok
    assert [(j["owner"], j["state"]) for j in requests.get(f"{admin}jobs", timeout=5).json()] == [
        ("normaluser", "Running")
    ]
    assert requests.get(f"{admin}status", timeout=5).json()["free_cores"] == 0
    assert requests.post(f"{admin}nope", json={}, timeout=5).status_code == 404


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = str(tmp_path / "state.json")
    with start(tmp_path, state_file=state) as emulator:
        url = emulator.urls[0]
        first = submit(url, {"resource": "/core=2", "command": "sleep 100", "param_file": "a\nb\nc"})
        emulator.cluster(0).advance(100)
    with start(tmp_path, at=T0 + 100, state_file=state) as emulator:
        url = emulator.urls[0]
        assert states(url, first) == ["Terminated", "Terminated", "Running"]
        (later,) = submit(url, {"command": "true"})
        assert later == first[-1] + 1
        emulator.cluster(0).advance(100)
        assert states(url, first) == ["Terminated"] * 3
        assert emulator.cluster(0).completions()[(first[0], 3)] == 1


def test_basic_and_bearer_identities_and_known_users(tmp_path: Path) -> None:
    with start(tmp_path, users=["testuser"]) as emulator:
        url = emulator.urls[0]
        basic = requests.get(
            f"{url}jobs/1", auth=("testuser", "testuser"), headers={"Accept": "application/json"}, timeout=5
        )
        assert basic.json()["title"] == "Job not found"  # authenticated, so not 401
        wrong = requests.get(
            f"{url}jobs/1", auth=("testuser", "x"), headers={"Accept": "application/json"}, timeout=5
        )
        assert (wrong.status_code, wrong.headers["Content-Type"].split(";")[0]) == (401, "text/html")
        claims = base64.urlsafe_b64encode(json.dumps({"user": "testuser"}).encode()).decode().rstrip("=")
        bearer = requests.post(
            f"{url}jobs",
            json={"command": "true"},
            headers={"Accept": "application/json", "Authorization": f"Bearer e30.{claims}.sig"},
            timeout=5,
        )
        assert bearer.status_code == 201
        stranger = requests.post(
            f"{url}jobs",
            json={"command": "true"},
            headers={**HEADERS, "X-Remote-Ident": "stranger"},
            timeout=5,
        )
        assert (stranger.status_code, stranger.json()["title"]) == (401, "Permission denied")


def test_idempotent_jobs_are_resubmitted_by_oar(emu: Emulator) -> None:
    url, control = emu.urls[0], emu.cluster(0)
    (best,) = submit(
        url, {"resource": "/core=4", "command": "sleep 1000", "type": ["besteffort", "idempotent"]}
    )
    control.normal_user(cores=4, duration=30)
    killed = job(url, best)
    assert [e["type"] for e in killed["events"]][-1] == "RESUBMIT_JOB_AUTOMATICALLY"
    new_id = int(killed["events"][-1]["description"].split("new id = ")[1].rstrip(")"))
    again = job(url, new_id)
    assert (again["state"], again["resubmit_job_id"], again["command"]) == ("Waiting", best, "sleep 1000")
    control.advance(30)
    assert job(url, new_id)["state"] == "Running"
    (retry,) = submit(url, {"resource": "/core=1", "command": "sleep 61; exit 99", "type": "idempotent"})
    control.advance(61)
    done = job(url, retry)
    assert (done["state"], done["exit_code"]) == ("Terminated", 99 << 8)
    assert "RESUBMIT_JOB_AUTOMATICALLY" in [e["type"] for e in done["events"]]


def test_a_node_taken_out_gets_no_new_jobs(emu: Emulator) -> None:
    url, control = emu.urls[0], emu.cluster(0)
    control.set_node_state("node1", "Dead")
    ids = submit(url, {"resource": "/core=1", "command": "sleep 100", "array": "4"})
    assert states(url, ids) == ["Running", "Running", "Waiting", "Waiting"]
    assert {r for i in ids[:2] for r in emu.cluster(0).cluster.jobs[i].resources} == {3, 4}
    full = requests.get(f"{url}resources/full", headers=HEADERS, timeout=5).json()["items"]
    assert [(r["network_address"], r["state"]) for r in full][:2] == [("node1", "Dead"), ("node1", "Dead")]
    control.set_node_state("node1", "Alive")
    assert states(url, ids) == ["Running"] * 4


def test_launch_delay_shows_launching_first(tmp_path: Path) -> None:
    with start(tmp_path, launch_delay=2) as emulator:
        url, control = emulator.urls[0], emulator.cluster(0)
        (job_id,) = submit(url, {"resource": "/core=1", "command": "sleep 10"})
        launching = job(url, job_id)
        assert (launching["state"], launching["start_time"], launching["scheduled_start"]) == (
            "Launching",
            0,
            T0,
        )
        control.advance(2)
        assert (job(url, job_id)["state"], job(url, job_id)["start_time"]) == ("Running", T0 + 2)
        control.advance(10)
        assert (job(url, job_id)["state"], job(url, job_id)["stop_time"]) == ("Terminated", T0 + 12)


def test_hold_and_resume(emu: Emulator) -> None:
    url = emu.urls[0]
    (held,) = submit(url, {"resource": "/core=1", "command": "sleep 10", "hold": "1"})
    assert job(url, held)["state"] == "Hold"
    resumed = requests.post(f"{url}jobs/{held}/resumptions/new", json={}, headers=HEADERS, timeout=5)
    assert resumed.status_code == 202
    assert job(url, held)["state"] == "Running"
    again = requests.post(f"{url}jobs/{held}/holds/new", json={}, headers=HEADERS, timeout=5)
    assert again.status_code == 400  # only a Waiting job can be held


def test_command_gets_oarsubs_shell_evaluation(emu: Emulator) -> None:
    url = emu.urls[0]
    (plain,) = submit(url, {"command": "sh -c 'echo result-$0 > $0.out' $HOME ${USER} $UNSET $1"})
    assert job(url, plain)["command"] == (
        f"sh -c 'echo result-bash > bash.out' {emu.cluster(0).cluster.home_of('testuser')} testuser  "
    )
    (escaped,) = submit(url, {"command": r"echo \$0 \$OAR_JOB_ID \\ \" $(hostname)"})
    assert job(url, escaped)["command"] == 'echo $0 $OAR_JOB_ID \\ " $(hostname)'
