"""Replays the requests of `oar/collect_samples.py` against the emulator and compares each answer
with the one a real OAR 2.5.9 gave (`reference/oar-samples/`): same HTTP status, same media type,
same JSON keys, same value types. Ids, times and texts differ by nature; shapes must not."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cigri.emulator import Emulator, run_in_thread

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "oar-samples"
if not SAMPLES.is_dir():
    SAMPLES = Path("/work/shared/reference/oar-samples")
REAL_HOME = "/home/testuser"
# fields the real OAR gives as "value or null" depending on the job (name given or not) or on
# timing (the gantt row of a killed job is gone or not yet): null matches either way
NULLABLE = frozenset({"name", "scheduled_start"})


class Replay:
    """collect_samples.py's scenario, recording every answer of the emulator by sample name."""

    def __init__(self, emulator: Emulator) -> None:
        self.base = emulator.urls[0].rstrip("/")
        self.home = emulator.cluster(0).cluster.home_of("testuser") or ""
        self.answers: dict[str, tuple[int, Any]] = {}
        self.types: dict[str, str] = {}
        self.counter = 0

    def call(
        self,
        name: str,
        method: str,
        path: str,
        body: Any = None,
        user: str | None = "testuser",
        save: bool = True,
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if user:
            headers["X-Remote-Ident"] = user
        if body is not None:
            body = json.loads(json.dumps(body).replace(REAL_HOME, self.home))
        path = path.replace(REAL_HOME, self.home)
        response = requests.request(method, self.base + path, headers=headers, json=body, timeout=10)
        try:
            parsed: Any = response.json()
        except ValueError:
            parsed = response.text
        if save:
            self.counter += 1
            self.answers[f"{self.counter:02d}-{name}"] = (response.status_code, parsed)
            self.types[f"{self.counter:02d}-{name}"] = response.headers.get("Content-Type", "")
        return response.status_code, parsed

    def state(self, job_id: int) -> str:
        return str(self.call("", "GET", f"/jobs/{job_id}.json", save=False)[1]["state"])

    def wait(
        self, job_id: int, states: tuple[str, ...] = ("Terminated", "Error"), timeout: float = 20
    ) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.state(job_id)) not in states and time.monotonic() < deadline:
            time.sleep(0.05)
        return state


def ids_of(answer: dict[str, Any]) -> list[int]:
    return [int(x) for x in re.findall(r"OAR_JOB_ID=(\d+)", answer.get("cmd_output", ""))] or [answer["id"]]


def run_scenario(r: Replay) -> None:
    home = REAL_HOME
    r.call("root", "GET", "/.json", user=None)
    r.call("version", "GET", "/version.json", user=None)
    r.call("whoami", "GET", "/whoami.json")
    r.call("resources", "GET", "/resources.json")
    r.call("resources-details", "GET", "/resources/details.json")
    r.call("resources-node1", "GET", "/resources/nodes/node1.json")
    _, j = r.call(
        "post-job-simple",
        "POST",
        "/jobs.json",
        {
            "resource": "/nodes=1/core=1,walltime=00:02:00",
            "command": "echo hello from $(hostname); sleep 1; echo done",
            "directory": home,
            "name": "simple",
            "project": "cigri-test",
            "stdout": "simple.%jobid%.out",
            "stderr": "simple.%jobid%.err",
        },
    )
    jid = j["id"]
    r.wait(jid, ("Running",))
    r.call("get-job-running", "GET", f"/jobs/{jid}.json")
    r.call("get-jobs-current", "GET", "/jobs.json")
    r.call("get-jobs-details-current", "GET", "/jobs/details.json")
    r.wait(jid)
    r.call("get-job-terminated", "GET", f"/jobs/{jid}.json")
    r.call("get-job-details", "GET", f"/jobs/{jid}/details.json")
    r.call("get-job-resources", "GET", f"/jobs/{jid}/resources.json")
    r.call("get-job-nodes", "GET", f"/jobs/{jid}/nodes.json")
    r.call("media-stdout", "GET", f"/media/~/simple.{jid}.out")
    r.call("media-stdout-abs-tail", "GET", f"/media{home}/simple.{jid}.out?tail=1")
    r.call("media-ls-home", "GET", "/media/ls/~/")
    r.call("media-missing", "GET", "/media/~/nope.txt")
    # the array must still be Waiting when it is listed, as it was on the real cluster: fill it first
    _, blocker = r.call("", "POST", "/jobs.json", {"resource": "/core=8", "command": "sleep 2"}, save=False)
    r.wait(blocker["id"], ("Running",))
    _, a = r.call(
        "post-job-array-paramfile",
        "POST",
        "/jobs.json",
        {
            "resource": "/core=1,walltime=00:02:00",
            "command": "echo param",
            "param_file": "a1 x\na2 y\na3 z\n",
            "directory": home,
            "name": "arr",
            "stdout": "arr.%jobid%.out",
            "stderr": "arr.%jobid%.err",
        },
    )
    arr_ids = ids_of(a)
    array_id = r.call("", "GET", f"/jobs/{arr_ids[0]}.json", save=False)[1]["array_id"]
    r.call("get-job-array-element", "GET", f"/jobs/{arr_ids[1]}.json")
    r.call("get-jobs-array-filter", "GET", f"/jobs.json?array={array_id}")
    r.call("get-jobs-details-array", "GET", f"/jobs/details.json?array={array_id}")
    for i in arr_ids:
        r.wait(i)
    r.call("get-jobs-array-terminated", "GET", f"/jobs.json?array={array_id}&state=Terminated,Error")
    r.call("get-jobs-ids-filter", "GET", "/jobs.json?ids=" + ":".join(str(i) for i in arr_ids))
    r.call("media-array-stdout", "GET", f"/media/~/arr.{arr_ids[1]}.out")
    _, a2 = r.call(
        "post-job-array-n",
        "POST",
        "/jobs.json",
        {"resource": "/core=1,walltime=00:01:00", "command": "true", "array": "4", "directory": home},
    )
    for i in ids_of(a2):
        r.wait(i)
    _, be = r.call(
        "post-job-besteffort",
        "POST",
        "/jobs.json",
        {
            "resource": "/core=8,walltime=00:10:00",
            "command": "sleep 300",
            "type": "besteffort",
            "directory": home,
            "name": "be",
        },
    )
    beid = be["id"]
    r.wait(beid, ("Running",))
    r.call("get-job-besteffort-running", "GET", f"/jobs/{beid}.json")
    _, nj = r.call(
        "post-job-normal-preempts",
        "POST",
        "/jobs.json",
        {
            "resource": "/core=8,walltime=00:02:00",
            "command": "sleep 1",
            "directory": home,
            "name": "preemptor",
        },
    )
    r.wait(beid)
    r.wait(nj["id"])
    r.call("get-job-besteffort-killed", "GET", f"/jobs/{beid}.json")
    r.call("get-job-besteffort-killed-details", "GET", f"/jobs/{beid}/details.json")
    r.call(
        "get-jobs-besteffort-state-filter", "GET", f"/jobs.json?state=Error,Terminated&ids={beid}:{nj['id']}"
    )
    _, d1 = r.call(
        "post-job-to-delete-1",
        "POST",
        "/jobs.json",
        {"resource": "/core=1,walltime=00:05:00", "command": "sleep 300", "directory": home},
    )
    r.wait(d1["id"], ("Running",))
    r.call("post-deletions-new", "POST", f"/jobs/{d1['id']}/deletions/new.json", {})
    r.wait(d1["id"])
    r.call("get-job-deleted-1", "GET", f"/jobs/{d1['id']}.json")
    _, d2 = r.call(
        "post-job-to-delete-2",
        "POST",
        "/jobs.json",
        {"resource": "/core=1,walltime=00:05:00", "command": "sleep 300", "directory": home},
    )
    r.wait(d2["id"], ("Running",))
    r.call("delete-job", "DELETE", f"/jobs/{d2['id']}.json")
    r.wait(d2["id"])
    r.call("get-job-deleted-2", "GET", f"/jobs/{d2['id']}.json")
    _, a3 = r.call(
        "post-job-array-to-delete",
        "POST",
        "/jobs.json",
        {"resource": "/core=1,walltime=00:05:00", "command": "sleep 300", "array": "3", "directory": home},
    )
    arr3 = r.call("", "GET", f"/jobs/{a3['id']}.json", save=False)[1]["array_id"]
    r.call("post-array-deletions-new", "POST", f"/jobs/array/{arr3}/deletions/new.json", {})
    for i in ids_of(a3):
        r.wait(i)
    r.call("get-jobs-array-deleted", "GET", f"/jobs.json?array={arr3}&state=Error,Terminated")
    r.call(
        "post-job-unauthenticated",
        "POST",
        "/jobs.json",
        {"resource": "/core=1", "command": "true"},
        user=None,
    )
    r.call(
        "post-job-bad-resource",
        "POST",
        "/jobs.json",
        {"resource": "/core=99,walltime=00:01:00", "command": "true"},
    )
    r.call("get-job-unknown", "GET", "/jobs/999999.json")
    r.call("get-jobs-state-filter", "GET", "/jobs.json?state=Terminated,Error&limit=5")
    r.call("get-jobs-user-filter", "GET", "/jobs.json?state=Terminated&user=testuser&limit=3&offset=2")


def shape_differences(ours: Any, real: Any, where: str = "$") -> list[str]:
    """Where `ours` differs from `real` in keys or value types (lists: each item vs the real ones)."""
    if isinstance(real, bool) or isinstance(ours, bool):
        return (
            [] if type(ours) is type(real) else [f"{where}: {type(ours).__name__} != {type(real).__name__}"]
        )
    if isinstance(real, dict):
        if not isinstance(ours, dict):
            return [f"{where}: {type(ours).__name__} != object"]
        problems = []
        if set(ours) != set(real):
            problems.append(
                f"{where}: keys +{sorted(set(ours) - set(real))} -{sorted(set(real) - set(ours))}"
            )
        for key in set(ours) & set(real):
            if key in NULLABLE and (ours[key] is None or real[key] is None):
                continue
            problems.extend(shape_differences(ours[key], real[key], f"{where}.{key}"))
        return problems
    if isinstance(real, list):
        if not isinstance(ours, list):
            return [f"{where}: {type(ours).__name__} != array"]
        problems = []
        if real and ours:
            for index, item in enumerate(ours):
                problems.extend(shape_differences(item, real[min(index, len(real) - 1)], f"{where}[{index}]"))
        return problems
    if type(ours) is not type(real):
        return [f"{where}: {type(ours).__name__} ({ours!r}) != {type(real).__name__} ({real!r})"]
    return []


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    with run_in_thread(allow_root_jobs=True,
        clusters=1, nodes=4, cores=2, workdir=str(tmp_path_factory.mktemp("replay"))
    ) as emulator:
        replay = Replay(emulator)
        run_scenario(replay)
        yield replay


SAMPLE_FILES = sorted(SAMPLES.glob("*.json"))


def test_the_scenario_covers_every_recorded_sample(replayed: Replay) -> None:
    assert sorted(replayed.answers) == [p.stem for p in SAMPLE_FILES]


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=[p.stem for p in SAMPLE_FILES])
def test_answer_has_the_shape_of_the_real_oar(sample: Path, replayed: Replay) -> None:
    recorded = json.loads(sample.read_text())["response"]
    status, ours = replayed.answers[sample.stem]
    assert status == recorded["status"]
    real = recorded["json"] if recorded.get("json") is not None else recorded.get("text")
    assert shape_differences(ours, real) == []
    media_type = recorded["headers"].get("Content-Type", "").split(";")[0]
    assert replayed.types[sample.stem].split(";")[0] == media_type
