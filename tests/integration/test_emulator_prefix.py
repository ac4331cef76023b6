"""The OAR emulator serving several clusters on one port, one path prefix each (`single_port=`,
`--single-port`): cluster `c<i>` at `/c<i>/oarapi/`, driven through cigri's own `OarClient`.
Every route of the per-port mode works under the prefix, links carry it, and the clusters (jobs,
fault knobs, outages, admin endpoint) stay apart."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import requests

from cigri.domain.oar import OarJob, OarNotFound, OarState, OarUnavailable, SubmitRequest
from cigri.emulator import Emulator, ManualClock, run_in_thread
from cigri.oar.client import OarClient
from cigri.oar.http import OarAuth, RetryPolicy

USER = "testuser"
HEADERS = {"Accept": "application/json", "X-Remote-Ident": USER}
DEADLINE_SECONDS = 60.0  # generous: the CI machine is slow and shared

T = TypeVar("T")


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[Emulator]:
    with run_in_thread(allow_root_jobs=True,
                       clusters=3, nodes=2, cores=2, workdir=str(tmp_path), kill_grace=0.3,
                       single_port=0) as emulator:
        (tmp_path / "home" / USER).mkdir(parents=True, exist_ok=True)
        yield emulator


def client(url: str, **options: Any) -> OarClient:
    options.setdefault("retry", RetryPolicy(attempts=2, backoff_seconds=0.05))
    return OarClient(url, timeout_seconds=10.0, **options)


def port_root(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def wait_until(read: Callable[[], T], done: Callable[[T], bool]) -> T:
    """Poll `read` until `done` holds (or the deadline passes: the caller's assert then fails)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def final_jobs(oar: OarClient, ids: list[int]) -> list[OarJob]:
    return wait_until(lambda: oar.get_jobs(ids), lambda jobs: all(j.is_final for j in jobs))


def test_every_cluster_is_served_on_one_port_under_its_name(grid: Emulator) -> None:
    port = grid.cluster(0).server.port
    assert grid.urls == [f"http://127.0.0.1:{port}/c{i}/oarapi/" for i in (1, 2, 3)]
    root = port_root(grid.urls[0])
    listing = requests.get(f"{root}/", timeout=5).json()
    assert listing["clusters"] == [{"name": f"c{i}", "href": f"/c{i}/oarapi/"} for i in (1, 2, 3)]
    unknown = requests.get(f"{root}/c9/oarapi/jobs", headers=HEADERS, timeout=5)
    assert unknown.status_code == 404
    assert "No cluster c9" in unknown.json()["message"]
    # the per-port path alone names no cluster on a shared port
    assert requests.get(f"{root}/oarapi/", headers=HEADERS, timeout=5).status_code == 404
    outside = requests.get(f"{root}/c2/nothing", headers=HEADERS, timeout=5)
    assert outside.status_code == 404 and outside.json()["code"] == 404
    for url in grid.urls:
        client(url).probe()
    assert {r.network_address for r in client(grid.urls[1]).get_resources()} == {"c2node1", "c2node2"}
    assert {r.network_address for r in client(grid.urls[0]).get_resources()} == {"node1", "node2"}


def test_an_array_job_runs_to_terminated_and_its_stdout_is_read_through_media(grid: Emulator) -> None:
    oar = client(grid.urls[1])
    home = grid.cluster(1).cluster.home_of(USER)
    submission = oar.submit(SubmitRequest(
        command="echo param", resources="/core=1", walltime="00:05:00",
        params=("a1 x", "a2 y", "a3 z"), name="arr", directory=home, stdout="arr.%jobid%.out"),
        user=USER)
    assert submission.job_ids == (1, 2, 3)
    jobs = final_jobs(oar, list(submission.job_ids))
    assert [(j.state, j.exit_status) for j in jobs] == [(OarState.TERMINATED, 0)] * 3
    assert [j.id for j in oar.get_array_jobs(submission.array_id)] == [1, 2, 3]
    assert oar.read_file(f"{home}/arr.2.out", user=USER) == b"param a2 y\n"
    assert oar.read_file("~/arr.3.out", user=USER) == b"param a3 z\n"
    assert oar.stat_file("~/arr.1.out", user=USER) == len("param a1 x\n")
    assert oar.file_sizes("~", user=USER)["arr.1.out"] == len("param a1 x\n")
    oar.delete_file("~/arr.1.out", user=USER)
    assert oar.stat_file("~/arr.1.out", user=USER) is None
    created = requests.post(f"{grid.urls[1]}jobs", headers=HEADERS, json={"command": "true"}, timeout=5)
    assert created.headers["Location"] == "/c2/oarapi/jobs/4"
    assert created.json()["links"] == [{"rel": "self", "href": "/c2/oarapi/jobs/4"}]


def test_a_besteffort_job_is_killed_by_a_normal_job(grid: Emulator) -> None:
    oar = client(grid.urls[2])
    home = grid.cluster(2).cluster.home_of(USER)
    best = oar.submit(SubmitRequest(command="sleep 60", resources="/core=4", walltime="00:05:00",
                                    types=("besteffort",), directory=home, name="be"),
                      user=USER).job_ids[0]
    running = wait_until(lambda: oar.get_job(best, user=USER),
                         lambda job: job.state is OarState.RUNNING or job.is_final)
    assert running.state is OarState.RUNNING
    normal = oar.submit(SubmitRequest(command="true", resources="/core=2", walltime="00:01:00",
                                      directory=home, name="preemptor"), user=USER).job_ids[0]
    killed, preemptor = final_jobs(oar, [best, normal])
    assert killed.state is OarState.ERROR
    assert [e.type for e in killed.events] == [
        "BESTEFFORT_KILL", "FRAG_JOB_REQUEST", "SEND_KILL_JOB", "SWITCH_INTO_ERROR_STATE"]
    assert preemptor.state is OarState.TERMINATED


def test_pagination_links_keep_the_client_on_its_cluster(grid: Emulator) -> None:
    # the same array on c1 and c3: a `next` link without the prefix would leave c3
    for url in (grid.urls[0], grid.urls[2]):
        client(url).submit(SubmitRequest(command="true", resources="/core=1", walltime="00:05:00",
                                         params=tuple(f"p{i}" for i in range(5)), name="paged"),
                           user=USER)
    oar = client(grid.urls[2], page_limit=2)
    jobs = oar.get_array_jobs(1)
    assert [j.id for j in jobs] == [1, 2, 3, 4, 5]
    assert oar.request_count - oar.retry_count == 3  # 2 + 2 + 1, each page from c3
    page = requests.get(f"{grid.urls[2]}jobs", headers=HEADERS, timeout=5,
                        params={"array": "1", "limit": "2", "offset": "2"}).json()
    links = {link["rel"]: link["href"] for link in page["links"]}
    assert links == {"self": "/c3/oarapi/jobs?array=1&limit=2&offset=2",
                     "next": "/c3/oarapi/jobs?array=1&limit=2&offset=4",
                     "previous": "/c3/oarapi/jobs?array=1&limit=2&offset=0"}
    assert all(link["href"].startswith("/c3/oarapi/jobs/") for link in page["items"][0]["links"])
    stress = requests.get(f"{grid.urls[2]}stress_factor", headers=HEADERS, timeout=5).json()
    assert stress["links"] == [{"rel": "self", "href": "/c3/oarapi/stress_factor"}]


def test_clusters_on_one_port_are_isolated(grid: Emulator) -> None:
    c1, c2 = client(grid.urls[0]), client(grid.urls[1])
    job = c1.submit(SubmitRequest(command="sleep 30", resources="/core=1", walltime="00:05:00"),
                    user=USER).job_ids[0]
    with pytest.raises(OarNotFound):
        c2.get_job(job, user=USER)
    assert wait_until(lambda: [j.id for j in c1.get_running_jobs()], lambda ids: ids == [job]) == [job]
    assert c2.get_running_jobs() == []
    grid.cluster(1).set_stress("0.9")
    assert (c1.get_stress_factor(), c2.get_stress_factor()) == (0.0, 0.9)
    # fault knobs are per cluster
    grid.cluster(1).fail_next(503, count=1)
    assert requests.get(f"{grid.urls[0]}version", headers=HEADERS, timeout=5).status_code == 200
    assert requests.get(f"{grid.urls[1]}version", headers=HEADERS, timeout=5).status_code == 503
    # the admin endpoint, under each cluster's prefix
    root = port_root(grid.urls[0])
    answer = requests.post(f"{root}/c3/_emulator/faults", json={"error_rate": 1.0}, timeout=5)
    assert answer.status_code == 200
    assert grid.cluster(2).faults.error_rate == 1.0 and grid.cluster(0).faults.error_rate == 0.0
    assert requests.get(f"{grid.urls[2]}version", headers=HEADERS, timeout=5).status_code == 500
    status = requests.get(f"{root}/c1/_emulator/status", timeout=5).json()
    assert status["name"] == "c1" and status["active"] == 1
    assert [j["id"] for j in requests.get(f"{root}/c1/_emulator/jobs", timeout=5).json()] == [job]
    assert requests.get(f"{root}/c2/_emulator/jobs", timeout=5).json() == []


def test_an_outage_of_one_cluster_leaves_the_others_answering(grid: Emulator) -> None:
    control = grid.cluster(1)
    control.outage(DEADLINE_SECONDS)
    assert not control.server.up
    with pytest.raises(OarUnavailable):
        client(grid.urls[1]).probe()
    client(grid.urls[0]).probe()
    client(grid.urls[2]).probe()
    assert requests.get(f"{port_root(grid.urls[0])}/", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):  # not even the admin endpoint answers
        requests.get(f"{port_root(grid.urls[0])}/c2/_emulator/status", timeout=5)


def test_an_outage_window_ends_and_the_cluster_answers_again(grid: Emulator) -> None:
    control = grid.cluster(2)
    control.outage(0.3)
    assert control.server.wait_up(DEADLINE_SECONDS)
    client(grid.urls[2]).probe()


def test_oar3_shapes_under_the_prefix(tmp_path: Path) -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"user": "alice"}).encode()).decode().rstrip("=")
    token = f"eyJhbGciOiJIUzI1NiJ9.{claims}.signature"
    with run_in_thread(allow_root_jobs=True, clusters=2, mode="simulate", clock=ManualClock(1_800_000_000),
                       workdir=str(tmp_path), api="oar3", single_port=0) as emu:
        oar = OarClient(emu.urls[1], flavour="oar3", page_limit=2,
                        auth=OarAuth(jwt=True, tokens={"alice": token, "oar": token}),
                        retry=RetryPolicy(attempts=2, backoff_seconds=0.01))
        submission = oar.submit(SubmitRequest(command="sleep 30", resources="/core=1",
                                              walltime="00:10:00", params=("a", "b", "c")),
                                user="alice")
        assert submission.job_ids == (1, 2, 3)
        emu.cluster(1).advance(30)
        assert [j.state for j in oar.get_array_jobs(submission.array_id)] == [OarState.TERMINATED] * 3
        assert emu.cluster(0).jobs() == []
        raw = requests.get(f"{emu.urls[1]}jobs", params=[("details", "1"), ("job_ids", "1"),
                                                         ("job_ids", "2"), ("state", "Terminated")],
                           headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
        assert [item["id"] for item in raw["items"]] == [1, 2] and "links" not in raw
        missing = requests.get(f"{emu.urls[1]}jobs/99", headers={"Authorization": f"Bearer {token}"},
                               timeout=5)
        assert missing.status_code == 404 and "detail" in missing.json()


def test_oar3_request_shapes_answered_in_oar25_shapes_under_the_prefix(grid: Emulator) -> None:
    url = grid.urls[1]
    job = requests.post(f"{url}jobs", headers=HEADERS, timeout=5, json={
        "resource": ["/core=1"], "types": ["besteffort"], "command": "sleep 30"}).json()["id"]
    listed = requests.get(f"{url}jobs", params=[("details", "1"), ("job_ids", str(job))],
                          headers=HEADERS, timeout=5).json()
    assert [item["id"] for item in listed["items"]] == [job]
    assert listed["links"][0]["href"].startswith("/c2/oarapi/jobs?")
    deleted = requests.delete(f"{url}jobs/{job}", params={"array": "true"}, headers=HEADERS, timeout=5)
    assert deleted.status_code == 202
    home = Path(grid.cluster(1).cluster.home_of(USER) or "")
    (home / "note.txt").write_text("hello\n")
    media = requests.get(f"{url}media", params={"path_filename": f"{home}/note.txt"},
                         headers=HEADERS, timeout=5)
    assert media.status_code == 200 and media.text == "hello\n"


def test_the_command_serves_clusters_on_one_port_and_prints_their_urls(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "from cigri.emulator.cli import main; main()", "--allow-root-jobs",
         "--clusters", "2", "--nodes", "2", "--cores", "2", "--mode", "simulate",
         "--single-port", "0", "--workdir", str(tmp_path), "--users", USER],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        urls = [process.stdout.readline().strip() for _ in range(2)]
        root = port_root(urls[0])
        assert urls == [f"{root}/c1/oarapi/", f"{root}/c2/oarapi/"]
        assert urlsplit(root).port not in (None, 0)
        listing = requests.get(f"{root}/", timeout=10).json()
        assert [c["name"] for c in listing["clusters"]] == ["c1", "c2"]
        created = requests.post(f"{urls[1]}jobs", json={"command": "sleep 1"}, headers=HEADERS,
                                timeout=10)
        assert created.status_code == 201 and created.headers["Location"] == "/c2/oarapi/jobs/1"
        assert client(urls[0]).get_running_jobs() == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_command_refuses_both_port_options() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from cigri.emulator.cli import main; main()", "--allow-root-jobs",
         "--port", "7000", "--single-port", "7000"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--single-port" in done.stderr
