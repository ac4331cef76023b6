"""The emulator's trust model (docs/emulator.md, "Trust model"): a job's `$HOME` is its login's one
emulated home; started as root, a login's jobs and `/media` requests act as the Unix user of
that name (never as root unless `allow_root_jobs`), unknown logins are refused; `secret` keeps
the clusters to whoever knows it."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cigri.emulator import Emulator, run_in_thread

LOGIN = "testuser"


def headers(login: str) -> dict[str, str]:
    return {"Accept": "application/json", "X-Remote-Ident": login}


def wait_final(url: str, job_id: int, login: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = requests.get(f"{url}jobs/{job_id}", headers=headers(login),
                                           timeout=5).json()
        if job["state"] in ("Terminated", "Error") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def submit(url: str, login: str, **body: Any) -> requests.Response:
    return requests.post(f"{url}jobs", headers=headers(login), json=body, timeout=10)


def test_a_jobs_home_is_the_one_its_home_expanded_to_at_submission(tmp_path: Path) -> None:
    """The documented prologue pattern: a job creates `~/out/7` (`\\$HOME` at run time), the next
    runs in `$HOME/out/7` (expanded at submission) and `/media/~/` reads what it wrote."""
    with run_in_thread(allow_root_jobs=True, workdir=str(tmp_path), kill_grace=0.3) as grid:
        url = grid.urls[0]
        home = tmp_path / "home" / LOGIN
        prologue = submit(url, LOGIN, command=r"mkdir -p \$HOME/out/7 && echo \$HOME > \$HOME/h")
        assert prologue.status_code == 201, prologue.text
        assert wait_final(url, prologue.json()["id"], LOGIN)["state"] == "Terminated"
        assert (home / "out" / "7").is_dir()
        assert (home / "h").read_text() == f"{home}\n"
        task = submit(url, LOGIN, command=r"echo \$USER > result.txt", directory="$HOME/out/7")
        job = wait_final(url, task.json()["id"], LOGIN)
        assert job["state"] == "Terminated", job["events"]
        media = requests.get(f"{url}media/~/out/7/result.txt", headers=headers(LOGIN), timeout=5)
        assert media.status_code == 200 and media.text == f"{LOGIN}\n"


def test_a_secret_keeps_the_clusters_to_whoever_knows_it(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(16)
    with run_in_thread(allow_root_jobs=True, workdir=str(tmp_path), secret=secret,
                       single_port=0) as grid:
        url = grid.urls[0]
        assert requests.get(f"{url}jobs", headers=headers(LOGIN), timeout=5).status_code == 401
        assert requests.get(f"{url}jobs", headers=headers(LOGIN), auth=("cigri", "nope"),
                            timeout=5).status_code == 401
        assert submit(url, LOGIN, command="true").status_code == 401
        root = url.split("/c1/")[0]
        assert requests.post(f"{root}/c1/_emulator/outage", json={"seconds": 5},
                             timeout=5).status_code == 401
        known = requests.get(f"{url}jobs", headers=headers(LOGIN), auth=("cigri", secret),
                             timeout=5)
        assert known.status_code == 200
        created = requests.post(f"{url}jobs", headers=headers(LOGIN), auth=("cigri", secret),
                                json={"command": "true"}, timeout=5)
        assert created.status_code == 201
        assert grid.cluster(0).jobs()[0]["owner"] == LOGIN  # the identity header still names the user


# ---- started as root -------------------------------------------------------------------------

pytestmark_root = pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root (CI runs as root)")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A root-owned directory every user may enter (pytest's tmp_path is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="cigri-emu-trust-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def unix_user(shared_dir: Path) -> Iterator[pwd.struct_passwd]:
    """A throwaway Unix user (no login shell, no group of its own) with its home in
    `shared_dir`, removed afterwards."""
    name = f"cgemu{secrets.token_hex(4)}"
    home = shared_dir / name
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell",
                    "/usr/sbin/nologin", "--no-user-group", "--gid", "nogroup", name],
                   check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        home.mkdir()
        os.chown(home, entry.pw_uid, entry.pw_gid)
        yield entry
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def root_grid(tmp_path: Path) -> Iterator[Emulator]:
    """An emulator started as root without `allow_root_jobs` (the default)."""
    workdir = tmp_path / "emu"
    with run_in_thread(workdir=str(workdir), kill_grace=0.3) as grid:
        yield grid


@pytestmark_root
def test_started_as_root_a_job_runs_as_its_logins_unix_user(
        root_grid: Emulator, unix_user: pwd.struct_passwd) -> None:
    url = root_grid.urls[0]
    login = unix_user.pw_name
    created = submit(url, login, command=r"id -u > uid.txt; echo \$HOME > home.txt; cat /etc/shadow")
    assert created.status_code == 201, created.text
    job = wait_final(url, created.json()["id"], login)
    assert job["state"] == "Terminated" and job["exit_code"] != 0  # shadow not readable
    home = Path(unix_user.pw_dir)
    assert (home / "uid.txt").read_text() == f"{unix_user.pw_uid}\n"
    assert (home / "home.txt").read_text() == f"{home}\n"
    assert (home / job["stdout_file"]).stat().st_uid == unix_user.pw_uid  # output files opened as the user
    assert "Permission denied" in (home / job["stderr_file"]).read_text()


@pytestmark_root
def test_started_as_root_media_reads_and_deletes_only_what_the_user_may(
        root_grid: Emulator, unix_user: pwd.struct_passwd, shared_dir: Path) -> None:
    url = root_grid.urls[0]
    login = unix_user.pw_name
    shadow = requests.get(f"{url}media/etc/shadow", headers=headers(login), timeout=10)
    assert shadow.status_code == 403, shadow.text[:200]
    private = shared_dir / "private.txt"
    private.write_text("root only\n")
    private.chmod(0o600)
    assert requests.get(f"{url}media{private}", headers=headers(login), timeout=10).status_code == 403
    assert requests.delete(f"{url}media{private}", headers=headers(login),
                           timeout=10).status_code == 403
    assert private.read_text() == "root only\n"
    public = shared_dir / "public.txt"
    public.write_text("anyone\n")
    public.chmod(0o644)
    assert requests.get(f"{url}media{public}", headers=headers(login), timeout=10).text == "anyone\n"
    assert requests.delete(f"{url}media{public}", headers=headers(login),
                           timeout=10).status_code == 403  # shared_dir is root's
    assert public.exists()
    mine = Path(unix_user.pw_dir) / "mine.txt"
    mine.write_text("mine\n")
    os.chown(mine, unix_user.pw_uid, unix_user.pw_gid)
    assert requests.get(f"{url}media/~/mine.txt", headers=headers(login), timeout=10).text == "mine\n"
    listing = requests.get(f"{url}media/ls/~/", headers=headers(login), timeout=10).json()
    assert [item["name"] for item in listing["items"]] == ["mine.txt"]
    assert requests.delete(f"{url}media/~/mine.txt", headers=headers(login),
                           timeout=10).status_code == 204
    assert not mine.exists()


@pytestmark_root
def test_started_as_root_an_unknown_login_is_refused(root_grid: Emulator) -> None:
    url = root_grid.urls[0]
    login = "nosuchunixuser"
    assert not any(p.pw_name == login for p in pwd.getpwall())
    refused = submit(url, login, command="touch /tmp/should-not-exist")
    assert refused.status_code == 401
    assert "Cannot get information regarding the target user" in refused.json()["message"]
    media = requests.get(f"{url}media/etc/shadow", headers=headers(login), timeout=10)
    assert media.status_code == 401
    assert root_grid.cluster(0).jobs() == []


@pytestmark_root
def test_started_as_root_root_and_oar_are_refused(root_grid: Emulator) -> None:
    url = root_grid.urls[0]
    for login in ("root", "oar"):
        assert submit(url, login, command="true").status_code in (401, 500)
    assert requests.get(f"{url}media/etc/shadow", headers=headers("root"),
                        timeout=10).status_code == 401


@pytestmark_root
def test_allow_root_jobs_is_the_explicit_way_to_run_jobs_as_root(tmp_path: Path) -> None:
    with run_in_thread(allow_root_jobs=True, workdir=str(tmp_path), kill_grace=0.3) as grid:
        url = grid.urls[0]
        created = submit(url, LOGIN, command=r"id -u > uid.txt")
        job = wait_final(url, created.json()["id"], LOGIN)
        assert job["state"] == "Terminated"
        assert (tmp_path / "home" / LOGIN / "uid.txt").read_text() == "0\n"


@pytestmark_root
def test_the_command_started_as_root_refuses_unknown_logins(tmp_path: Path) -> None:
    """`cigri-oar-emulator` without `--allow-root-jobs`: no job of a made-up login runs as root."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from cigri.emulator.cli import main; main()", "--port", "0",
         "--workdir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        login = "nosuchunixuser"
        assert not any(p.pw_name == login for p in pwd.getpwall())
        assert submit(url, login, command="true").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytestmark_root
def test_started_as_root_a_job_whose_user_is_gone_never_runs(
        root_grid: Emulator, unix_user: pwd.struct_passwd) -> None:
    url = root_grid.urls[0]
    login = unix_user.pw_name
    home = Path(unix_user.pw_dir)
    blocker = submit(url, login, resource="/nodes=4", command="sleep 60").json()["id"]
    waiting = submit(url, login, resource="/nodes=4", command="id -u > late.txt").json()["id"]
    assert wait_final(url, waiting, login, timeout=0.5)["state"] == "Waiting"
    subprocess.run(["userdel", "--force", login], check=True, capture_output=True)
    assert requests.delete(f"{url}jobs/{blocker}", headers=headers("oar"), timeout=5).status_code == 202
    job = root_grid.cluster(0).cluster.jobs[waiting]
    deadline = time.monotonic() + 20
    while job.state not in ("Terminated", "Error") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state == "Error"
    assert not (home / "late.txt").exists()
