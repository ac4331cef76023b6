"""`cigri jdl check` as a user runs it: a subprocess, exit codes, JSON on stdout, errors on stderr."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from cigri.cli.admin import cli
from cigri.storage.db import make_engine
from cigri.storage.tables import clusters

DATA = Path(__file__).parent.parent / "data" / "jdl"
# The `cigri` console script, run with the interpreter under test.
CIGRI = [sys.executable, "-c", "from cigri.cli.admin import main; main()"]
INVALID = json.loads((DATA / "invalid" / "expected.json").read_text())


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """An empty configuration whose database does not exist: no cluster check by default."""
    path = tmp_path / "cigri.conf"
    path.write_text(f'DATABASE_URL = "sqlite:///{tmp_path / "absent.db"}"\n'
                    'DEFAULT_JOB_WALLTIME = "00:42:00"\n')
    return path


def _check(conf: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CIGRI_CONF": str(conf)}
    return subprocess.run([*CIGRI, "jdl", "check", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


@pytest.mark.parametrize(("filename", "tasks"), [
    pytest.param("povray_demo.json", 3, id="documentation-example"),
    pytest.param("readme_example.json", 3, id="readme-example"),
    pytest.param("minimal.json", 10, id="minimal"),
])
def test_documented_examples_print_the_expanded_jdl(
        conf: Path, tmp_path: Path, filename: str, tasks: int) -> None:
    (tmp_path / "params.txt").write_text("scene1 -w 800\nscene2 -w 1024\n\n")
    result = _check(conf, str(DATA / filename), "--params", str(tmp_path / "params.txt"))
    assert result.returncode == 0, result.stderr
    expanded = json.loads(result.stdout)
    assert expanded["nb_jobs"] == tasks == len(expanded["params"])
    first = next(iter(expanded["clusters"].values()))
    assert first["exec_file"].startswith("$HOME") or first["exec_file"] == "e"
    assert f"{tasks} task(s)" in result.stderr
    assert "cluster names not checked" in result.stderr


def test_configured_defaults_are_applied(conf: Path) -> None:
    result = _check(conf, str(DATA / "minimal.json"))
    assert json.loads(result.stdout)["clusters"]["dahu"]["walltime"] == "00:42:00"


@pytest.mark.parametrize("filename", [
    pytest.param(name, id=name.removesuffix(".json")) for name in INVALID])
def test_malformed_jdl_exits_non_zero_naming_the_problem(conf: Path, filename: str) -> None:
    # In process (same command, same exit path) to keep the suite fast; the subprocess tests
    # below cover the console script itself, failures included.
    case = INVALID[filename]
    args = ["--clusters", case["clusters"]] if "clusters" in case else []
    result = CliRunner().invoke(cli, ["jdl", "check", str(DATA / "invalid" / filename), *args],
                                env={"CIGRI_CONF": str(conf)})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert case["message"] in result.stderr


@pytest.mark.parametrize("filename", [
    pytest.param("missing_exec_file.json", id="missing-exec-file"),
    pytest.param("nb_jobs_not_integer.json", id="nb-jobs-not-integer"),
])
def test_console_script_exits_non_zero_with_errors_on_stderr(conf: Path, filename: str) -> None:
    result = _check(conf, str(DATA / "invalid" / filename))
    assert (result.returncode, result.stdout) == (1, "")
    assert INVALID[filename]["message"] in result.stderr


def test_param_file_is_read_relative_to_the_user(conf: Path, tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("a 1\nb 2\na 3\n")
    jdl = tmp_path / "c.json"
    jdl.write_text(json.dumps({"name": "c", "exec_file": "e", "param_file": "p.txt",
                               "clusters": {"dahu": {}}}))
    result = _check(conf, str(jdl), cwd=tmp_path)
    assert result.returncode == 1
    assert "duplicate task name 'a': used by parameter lines 1, 3" in result.stderr


def test_clusters_come_from_the_database_when_it_is_reachable(
        tmp_path: Path, sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(insert(clusters).values(name="dahu", api_url="http://dahu/oarapi/"))
    engine.dispose()
    conf = tmp_path / "db.conf"
    conf.write_text(f'DATABASE_URL = "{sqlite_url}"\n')
    jdl = tmp_path / "c.json"
    jdl.write_text(json.dumps({"name": "c", "exec_file": "e", "nb_jobs": 1,
                               "clusters": {"dahu": {}, "luke": {}}}))
    result = _check(conf, str(jdl))
    assert result.returncode == 1
    assert "clusters.luke: unknown cluster 'luke'; known clusters: dahu" in result.stderr
    assert "clusters.dahu" not in result.stderr


def test_unreachable_database_means_no_cluster_check(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = tmp_path / "pg.conf"
    conf.write_text(f'DATABASE_URL = "postgresql://nobody@127.0.0.1:{port}/none"\n')
    result = _check(conf, str(DATA / "minimal.json"))
    assert result.returncode == 0, result.stderr
    assert "cluster names not checked: database unreachable" in result.stderr


def test_jdl_from_stdin(conf: Path) -> None:
    result = subprocess.run(
        [*CIGRI, "jdl", "check", "-", "--clusters", "dahu"],
        input=(DATA / "minimal.json").read_text(), capture_output=True, text=True, timeout=60,
        env={**os.environ, "CIGRI_CONF": str(conf)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] == [str(i) for i in range(10)]


def test_parameters_from_stdin_are_checked_then_printed(conf: Path) -> None:
    result = CliRunner().invoke(
        cli, ["jdl", "check", str(DATA / "povray_demo.json"), "--params", "-",
              "--clusters", "luke,ceciccluster"],
        input="s1 -w 1\ns2 -w 2\n", env={"CIGRI_CONF": str(conf)})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["params"] == ["s1 -w 1", "s2 -w 2"]


def test_jdl_and_parameters_cannot_both_come_from_stdin(conf: Path) -> None:
    result = CliRunner().invoke(cli, ["jdl", "check", "-", "--params", "-"], input="{}",
                                env={"CIGRI_CONF": str(conf)})
    assert result.exit_code == 1
    assert "only one of FILE and --params can be '-'" in result.stderr


def test_check_says_what_each_cluster_will_run_now_and_next(
        tmp_path: Path, sqlite_url: str) -> None:
    """Timed types follow the cluster's own night window (from the database); the wall clock
    decides which of the two sentences appears, so both are allowed."""
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(insert(clusters).values(name="dahu", api_url="http://dahu/oarapi/",
                                             night_window="19:00-06:30",
                                             time_zone="Europe/Paris"))
        conn.execute(insert(clusters).values(name="luke", api_url="http://luke/oarapi/"))
    engine.dispose()
    conf = tmp_path / "db.conf"
    conf.write_text(f'DATABASE_URL = "{sqlite_url}"\n')
    jdl = tmp_path / "c.json"
    jdl.write_text(json.dumps({"name": "c", "exec_file": "e", "nb_jobs": 1, "clusters": {
        "dahu": {"type": "semi-best-effort"}, "luke": {"type": "nightly"}}}))
    result = _check(conf, str(jdl))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    dahu = next(line for line in lines if line.startswith("on dahu"))
    assert re.fullmatch(
        r"on dahu \(semi-best-effort\): (best-effort jobs now; normal jobs from \w{3} 19:00|"
        r"normal jobs now; best-effort jobs from \w{3} 06:30) Europe/Paris", dahu), dahu
    luke = next(line for line in lines if line.startswith("on luke"))  # default window, UTC
    assert re.fullmatch(
        r"on luke \(nightly\): (waiting for the night \(nothing submitted by day\); normal jobs "
        r"from \w{3} 20:00 UTC|normal jobs now; nothing new from \w{3} 07:00 UTC "
        r"\(jobs started keep running\))", luke), luke
