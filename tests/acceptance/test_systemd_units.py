"""The units of `systemd/` are tested, not only shipped (issue 14).

1. `systemd-analyze verify --man=no` on every unit and the timer, with ExecStart pointing at the
   commands this environment installed: it needs no systemd as PID 1 (it loads the units in a
   private manager). It checks the syntax of every section and key (an unknown key or a bad value
   is only a warning, so the test requires an empty output, not just exit 0), that every ExecStart
   command exists and is executable, and that the units named by Wants=, Conflicts=, the timer's
   Unit= load. `--man=no`: Documentation= points at files of an installed package.
2. Each service started exactly as its unit does (`unit_helpers.service_for`: same command line,
   EnvironmentFile syntax, User/Group and groups, WorkingDirectory, NoNewPrivileges, a session of
   its own standing for its cgroup), healthy in `cigri status` (the API and the metrics endpoint:
   answering HTTP), then stopped with the unit's KillSignal as its KillMode sends it, within its
   TimeoutStopSec, exiting 0 and leaving no process behind. The EnvironmentFile is read from a
   temporary file instead of the unit's /etc/default/cigri, which the whole host shares;
   ProtectSystem, PrivateTmp and Restart need systemd and are not reproduced.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from cigri.emulator import run_in_thread
from cigri.storage.clusters import add_cluster
from cigri.storage.db import make_engine
from tests.acceptance.unit_helpers import (
    UNITS,
    Service,
    installed,
    processes_in_session,
    read_unit,
    service_for,
    with_installed_commands,
)
from tests.integration.notify_helpers import free_port

# service unit -> the heartbeat rows `cigri status` must show alive (the API and the metrics
# endpoint have none: they must answer HTTP instead)
DAEMONS = {
    "cigri-metascheduler.service": ["metascheduler"],
    "cigri-runner.service": ["runner:c1"],
    "cigri-updater.service": ["updater"],
    "cigri-nikita.service": ["nikita"],
    "cigri-collector.service": ["collector"],
    "cigri-notifier.service": ["notifier"],
    "cigri-automations.service": ["automations"],
    "cigri-almighty.service": ["almighty", "metascheduler", "runner:c1", "updater", "nikita",
                               "collector", "notifier", "automations"],
    "cigri-api.service": [],
    "cigri-metrics.service": [],
}


def _every_unit() -> list[Path]:
    return sorted(path for path in UNITS.iterdir()
                  if path.suffix in {".service", ".timer", ".target"})


def test_every_service_unit_is_tested() -> None:
    services = {path.name for path in _every_unit() if path.suffix == ".service"}
    assert services == set(DAEMONS) | {"cigri-maintenance.service"}


def _verify(directory: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no",
                           *(str(directory / name) for name in names)],
                          capture_output=True, text=True, timeout=120, cwd=directory)


def test_systemd_analyze_verify_is_clean_on_every_unit_and_the_timer(tmp_path: Path) -> None:
    units = _every_unit()
    assert {path.suffix for path in units} == {".service", ".timer", ".target"}
    for path in units:
        (tmp_path / path.name).write_text(with_installed_commands(path.read_text()))
    names = [path.name for path in units]
    verified = _verify(tmp_path, names)
    assert verified.returncode == 0 and not (verified.stdout + verified.stderr).strip(), \
        verified.stdout + verified.stderr

    # The check bites: an unknown key, and a command that is not installed.
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in units:
        (broken / path.name).write_text(with_installed_commands(path.read_text()))
    runner = broken / "cigri-runner.service"
    runner.write_text(runner.read_text().replace("KillSignal=", "KilSignal="))
    assert "Unknown key 'KilSignal'" in _verify(broken, ["cigri-runner.service"]).stderr
    runner.write_text(runner.read_text().replace(installed("/usr/bin/cigri-runner"),
                                                 "/usr/bin/cigri-no-such-command"))
    missing = _verify(broken, ["cigri-runner.service"])
    assert missing.returncode != 0 and "cigri-no-such-command" in missing.stderr


@pytest.fixture(scope="module")
def account() -> Iterator[str]:
    """The account the units run as, with its WorkingDirectory, made as a package's postinst
    would (root only) when the machine has none, and removed again afterwards: the real-OAR
    tier's setup (../shared/oar/setup-oar.sh) creates its own `cigri` user with a /home."""
    unit = read_unit(UNITS / "cigri-runner.service")
    user, workdir = unit.get("Service", "User"), unit.get("Service", "WorkingDirectory")
    assert user and workdir
    made_user = made_dir = False
    try:
        pwd.getpwnam(user)
    except KeyError:
        assert os.geteuid() == 0, f"create the system account {user!r} the units run as"
        subprocess.run(["useradd", "--system", "--user-group", "--home-dir", workdir,
                        "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
        made_user = True
    if not os.path.isdir(workdir):
        os.makedirs(workdir, mode=0o750)
        shutil.chown(workdir, user, user)
        made_dir = True
    try:
        yield user
    finally:
        if made_dir:
            shutil.rmtree(workdir, ignore_errors=True)
        if made_user:
            subprocess.run(["userdel", user], check=False, capture_output=True)


@pytest.fixture(scope="module")
def grant_read(account: str) -> bool:
    """True when the account cannot read this environment's Python and cigri (a Python under
    /root, mode 700, as in a development container): the services then get CAP_DAC_READ_SEARCH,
    and nothing else, to read them."""
    python = Path(installed("/usr/bin/cigri-runner")).read_text().splitlines()[0][2:].strip()
    probe = subprocess.run(["setpriv", f"--reuid={account}", f"--regid={account}",
                            "--init-groups", python, "-c", "import cigri.daemons.runner"],
                           capture_output=True, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    return probe.returncode != 0


@pytest.fixture
def environment_file(pg_url: str, tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """What /etc/default/cigri would hold: the database, short intervals, free ports; one
    emulated OAR cluster `c1` for the runner."""
    emulator = run_in_thread(clusters=1, nodes=1, cores=2, mode="simulate")
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            add_cluster(conn, name="c1", api_url=emulator.urls[0], now=datetime.now(UTC))
        ports = {"api": free_port(), "metrics": free_port()}
        path = tmp_path / "default-cigri"
        path.write_text(
            "# as /etc/default/cigri\n"
            f'CIGRI_DATABASE_URL="{pg_url}"\n'
            "CIGRI_METASCHEDULER_INTERVAL=1\nCIGRI_UPDATER_INTERVAL=1\nCIGRI_NIKITA_INTERVAL=1\n"
            "CIGRI_COLLECTOR_INTERVAL=1\nCIGRI_NOTIFIER_INTERVAL=1\n"
            "CIGRI_RUNNER_MIN_CYCLE_DURATION=1\nCIGRI_LOG_LEVEL=INFO\n"
            f"CIGRI_API_LISTEN=127.0.0.1:{ports['api']}\n"
            f"CIGRI_METRICS_LISTEN=127.0.0.1:{ports['metrics']}\n"
            "CIGRI_MAINTENANCE_ARGS='--no-usage'\n")
        os.chmod(tmp_path, 0o755)
        os.chmod(path, 0o644)
        yield path, ports
    finally:
        engine.dispose()
        emulator.stop()


def _wait(condition: Callable[[], Any], *, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what}")


def _status(env_file: Path) -> dict[str, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    env["CIGRI_DATABASE_URL"] = env_file.read_text().split('CIGRI_DATABASE_URL="')[1].split('"')[0]
    shown = subprocess.run(["cigri", "status", "--json"], env=env, capture_output=True,
                           text=True, timeout=60)
    if not shown.stdout.strip():
        return {}
    payload = json.loads(shown.stdout)
    rows = payload["daemons"] if isinstance(payload, dict) else payload
    return {row["name"]: row for row in rows}


def _healthy(service: Service, pid: int, env_file: Path, ports: dict[str, int]) -> bool:
    unit = service.unit.name
    if unit == "cigri-api.service":
        return _answers(f"http://127.0.0.1:{ports['api']}/")
    if unit == "cigri-metrics.service":
        return _answers(f"http://127.0.0.1:{ports['metrics']}/metrics", "cigri_database_up 1.0")
    rows = _status(env_file)
    names = DAEMONS[unit]
    if not all(name in rows and not rows[name]["late"] and rows[name]["passes"] >= 1
               for name in names):
        return False
    return rows[names[0]]["pid"] == pid  # this very process beats


def _answers(url: str, text: str = "") -> bool:
    try:
        answer = requests.get(url, timeout=5)
    except requests.ConnectionError:
        return False
    return answer.status_code == 200 and text in answer.text


def _owner_and_cwd(pid: int) -> tuple[int, str]:
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    return uid, os.readlink(f"/proc/{pid}/cwd")


@pytest.mark.parametrize("unit_name", sorted(DAEMONS))
def test_a_service_runs_as_its_unit_says_and_stops_cleanly(
        unit_name: str, account: str, grant_read: bool,
        environment_file: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    env_file, ports = environment_file
    service = service_for(read_unit(UNITS / unit_name), environment_file=env_file,
                          grant_read=grant_read)
    assert service.environment_file == "-/etc/default/cigri"
    log = tmp_path / "service.log"
    process = service.start(log)
    try:
        _wait(lambda: process.poll() is None and _healthy(service, process.pid, env_file, ports),
              what=f"{unit_name} healthy (log: {log.read_text()[-2000:] if log.exists() else ''})")
        assert _owner_and_cwd(process.pid) == (pwd.getpwnam(service.user).pw_uid, service.cwd)
        assert process.poll() is None
        signum = signal.Signals[service.kill_signal]
        started = time.monotonic()
        if service.kill_mode == "control-group":  # systemd signals every process of the unit
            os.killpg(process.pid, signum)
        else:  # mixed, process: the main process only
            assert service.kill_mode == "mixed"
            os.kill(process.pid, signum)
        code = process.wait(timeout=service.stop_timeout)
        assert time.monotonic() - started < service.stop_timeout
        assert code == 0, log.read_text()[-3000:]
        _wait(lambda: not processes_in_session(process.pid), what="no process left", timeout=5)
        assert "Traceback" not in log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in processes_in_session(process.pid):
            os.kill(pid, signal.SIGKILL)


def test_the_maintenance_oneshot_runs_as_its_unit_says(
        account: str, grant_read: bool, environment_file: tuple[Path, dict[str, int]],
        tmp_path: Path) -> None:
    env_file, _ports = environment_file
    unit = read_unit(UNITS / "cigri-maintenance.service")
    assert unit.get("Service", "Type") == "oneshot"
    service = service_for(unit, environment_file=env_file, grant_read=grant_read)
    assert service.argv[:2] == ["/bin/sh", "-c"]  # $CIGRI_MAINTENANCE_ARGS is the shell's
    log = tmp_path / "maintenance.log"
    process = service.start(log)
    try:
        assert process.wait(timeout=90) == 0, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert "Traceback" not in output, output
    timer = read_unit(UNITS / "cigri-maintenance.timer")
    assert timer.get("Timer", "Unit") == unit.name
