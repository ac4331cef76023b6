"""`cigri sandbox`, as a newcomer uses it: started in the background, a campaign of one's own
submitted with the installed `gridsub` (a prologue creating `~/out/{CAMPAIGN_ID}`, tasks writing
there), followed with `gridstat` to the end, a task's stdout read with `gridstat -j ID -O`, then
stopped with nothing left running; a second start finds the campaign again."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = os.geteuid() == 0  # CI runs as root: the sandbox then needs --allow-root-jobs


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed next to {sys.executable}"
    return str(path)


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    env.update(COLUMNS="200", CIGRI_CLIENT_CONF=str(tmp_path / "nothing.conf"))
    return env


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def start(directory: Path, env: dict[str, str]) -> str:
    done = run(tool("cigri"), "sandbox", "--detach", "--dir", str(directory),
               *(["--allow-root-jobs"] if ROOT else []), env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, what identifies it: cmdline, environment and working directory)."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            text = " ".join([(entry / "cmdline").read_bytes().decode(errors="replace"),
                             (entry / "environ").read_bytes().decode(errors="replace"),
                             os.readlink(entry / "cwd")])
        except (OSError, IndexError, ValueError):
            continue
        found[int(entry.name)] = (ppid, text)
    return found


def descendants(pid: int) -> set[int]:
    table = processes()
    family, grew = {pid}, True
    while grew:
        more = {p for p, (ppid, _) in table.items() if ppid in family} - family
        family |= more
        grew = bool(more)
    return family


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


JDL = {
    "name": "my-first",
    "nb_jobs": 5,
    "prologue": ["set -e", "mkdir -p ~/out/{CAMPAIGN_ID}"],
    "exec_file": "{TASK}",
    "walltime": "00:05:00",
    "clusters": {"c1": {}, "c2": {}, "c3": {}},
}

TASK = """#!/bin/sh
echo "task $1 says hello"
echo "result of $1" > "$HOME/out/$CIGRI_CAMPAIGN_ID/task-$1.txt"
"""


@pytest.mark.timeout(300)
def test_a_sandbox_runs_ones_own_campaign_and_leaves_nothing_behind(tmp_path: Path) -> None:
    directory = tmp_path / "sb"
    env = clean_env(tmp_path)
    if ROOT:  # as root, only an explicit flag lets jobs run as root
        refused = run(tool("cigri"), "sandbox", "--dir", str(directory), env=env)
        assert refused.returncode == 1 and "--allow-root-jobs" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    out = start(directory, env)
    conf = re.search(r"export CIGRI_CLIENT_CONF=(\S+)", out)
    assert conf is not None, out
    assert re.search(r"export CIGRI_API_SOCKET=\S+", out)
    assert re.search(r"http://127\.0\.0\.1:\d+/", out)
    dashboard = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/ui/)", out)
    assert dashboard is not None, out
    sample = re.search(r"sample JDL: (\S+)", out)
    assert sample is not None and json.loads(Path(sample.group(1)).read_text())["clusters"]
    home = Path(re.search(r"\{HOME\}\): (\S+)", out).group(1))  # type: ignore[union-attr]
    env["CIGRI_CLIENT_CONF"] = conf.group(1)
    state = json.loads((directory / "sandbox.json").read_text())
    try:
        status = run(tool("cigri"), "sandbox", "status", "--dir", str(directory), env=env)
        assert status.returncode == 0 and f"pid {state['pid']}" in status.stdout
        login = urllib.request.urlopen(dashboard.group(1) + "login", timeout=30)
        assert login.status == 200 and b"API token" in login.read()

        task = tmp_path / "task.sh"
        task.write_text(TASK)
        task.chmod(0o755)
        jdl = tmp_path / "mine.jdl"
        jdl.write_text(json.dumps({**JDL, "exec_file": str(task)}))
        submitted = run(tool("gridsub"), "-f", str(jdl), env=env)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        campaign_id = int(re.search(r"CAMPAIGN_ID=(\d+)", submitted.stdout).group(1))  # type: ignore[union-attr]

        deadline = time.monotonic() + 120
        while True:
            shown = run(tool("gridstat"), "-c", str(campaign_id), env=env)
            assert shown.returncode == 0, shown.stderr
            if re.search(r"State: terminated", shown.stdout):
                break
            assert time.monotonic() < deadline, shown.stdout
            time.sleep(1)
        assert "5/5" in shown.stdout
        family = descendants(state["pid"])
        assert len(family) >= 3  # the sandbox, the API, almighty (and its daemons)

        full = run(tool("gridstat"), "-c", str(campaign_id), "-f", env=env).stdout
        job_ids = [int(i) for i in re.findall(r"^\s+\d+: (\d+),", full, re.MULTILINE)]
        assert len(job_ids) == 5, full
        stdout = run(tool("gridstat"), "-j", str(job_ids[0]), "-O", env=env)
        assert stdout.returncode == 0, stdout.stderr
        assert re.fullmatch(r"task \d says hello\n?", stdout.stdout), stdout.stdout
        written = sorted(p.name for p in (home / "out" / str(campaign_id)).iterdir())
        assert written == [f"task-{i}.txt" for i in range(5)]
    finally:
        stopped = run(tool("cigri"), "sandbox", "stop", "--dir", str(directory), env=env,
                      timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not [pid for pid in family if alive(pid)]
    left = [pid for pid, (_, text) in processes().items() if str(directory) in text and alive(pid)]
    assert left == [], left
    assert run(tool("cigri"), "sandbox", "status", "--dir", str(directory),
               env=env).returncode == 3

    # a second start reuses the database: the campaign is still there
    start(directory, env)
    try:
        listed = run(tool("gridstat"), "-a", env=env)
        assert re.search(rf"^{campaign_id}\s+my-first\s", listed.stdout, re.MULTILINE), listed.stdout
    finally:
        run(tool("cigri"), "sandbox", "stop", "--dir", str(directory), env=env, timeout=120)


@pytest.mark.timeout(180)
def test_a_sandbox_in_the_foreground_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    import signal

    directory = tmp_path / "fg"
    process = subprocess.Popen(
        [tool("cigri"), "sandbox", "--dir", str(directory), *(["--allow-root-jobs"] if ROOT else [])],
        env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        seen = ""
        for line in process.stdout:
            seen += line
            if line.startswith("stop it with Ctrl-C"):
                break
        assert "export CIGRI_CLIENT_CONF=" in seen, seen
        family = descendants(process.pid)
        assert len(family) >= 3, seen  # the sandbox, the API, almighty (and its daemons)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, seen + rest
    assert "Traceback" not in rest and "sandbox stopped" in rest
    assert not [pid for pid in family if alive(pid)]
    assert not (directory / "sandbox.json").exists()
