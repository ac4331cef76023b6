"""Every installed console script fails with ONE readable line on stderr, a non-zero status and
never a Python traceback (issue 10, point 2); the servers answer --help with their usage and exit 0
instead of starting (point 3).

Commands and cases covered (each run as a subprocess, with no CIGRI_* variable but those listed):

- the grid tools `gridsub -f JDL`, `gridstat`, `griddel 1`, `gridevents -c 1`, `gridnotify -l`,
  `gridclean 1`, `gridclusters`, `gridtoken -l`, `gridtoken list`, `gridtoken create`:
  bad arguments (an unknown option); a missing client configuration (CIGRI_CLIENT_CONF names no
  file) with a token file that does not exist; a malformed (two-line) token file; an unreachable
  API (a closed port). Plus `gridsub -f missing.json` and `gridstat` on a Unix socket that does
  not exist.
- `cigri` and its sub-commands over the database (`status`, `config check`, `cluster list`,
  `user-mapping list`, `user-priority list`, `token list`, `maintenance --dry-run`,
  `db upgrade`): bad arguments (an unknown sub-command, a missing argument, an unknown option);
  a missing configuration (CIGRI_CONF names no file); an unreachable database (a closed port);
  a PostgreSQL database that does not exist (`db upgrade` says to `createdb` it); a database
  without cigri's schema (says `cigri db upgrade`); for `status`, `config check` and
  `cluster list`, a database at an older revision (says which, and `cigri db upgrade`).
- the servers `cigri-api`, `cigri-metascheduler`, `cigri-runner`, `cigri-updater`,
  `cigri-nikita`, `cigri-collector`, `cigri-notifier`, `cigri-almighty`: `--help` and `-h`
  (usage, exit 0, nothing started); a bad argument; a missing configuration; an unreachable
  database; a database without cigri's schema.
- `cigri-oar-emulator`: `--help` (exit 0); an unknown option; a bad option value.

An unreachable API needs no configuration file: the client's own defaults are overridden by the
environment, as a user would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from cigri.storage.migrate import upgrade

GRID_TOOLS: tuple[tuple[str, ...], ...] = (
    ("gridsub", "-f", "{jdl}"), ("gridstat",), ("griddel", "1"), ("gridevents", "-c", "1"),
    ("gridnotify", "-l"), ("gridclean", "1"), ("gridclusters",), ("gridtoken", "-l"),
    ("gridtoken", "list"), ("gridtoken", "create"))
ADMIN_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("status",), ("config", "check"), ("cluster", "list"), ("user-mapping", "list"),
    ("user-priority", "list"), ("token", "list"), ("maintenance", "--dry-run"), ("db", "upgrade"))
SERVERS = ("cigri-api", "cigri-metascheduler", "cigri-runner", "cigri-updater", "cigri-nikita",
           "cigri-collector", "cigri-notifier", "cigri-almighty")


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    says: str = ""  # expected in the error line (case-insensitive)
    status: int | None = None  # expected exit status; None: any non-zero


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(case: Case, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), CIGRI_CLIENT_CONF="/nonexistent")
    env.update(case.env)
    executable = shutil.which(case.argv[0])
    assert executable, f"{case.argv[0]} is not installed"
    return subprocess.run([executable, *case.argv[1:]], env=env, capture_output=True, text=True,
                          cwd=home, timeout=90, check=False)


def _problems(case: Case, result: subprocess.CompletedProcess[str]) -> list[str]:
    label = " ".join(case.argv) + "".join(f" [{k}={v}]" for k, v in case.env.items())
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    found = []
    if "Traceback" in result.stderr + result.stdout:
        found.append(f"{label}: printed a traceback:\n{result.stderr[-1500:]}")
    if result.returncode == 0 or (case.status is not None and result.returncode != case.status):
        found.append(f"{label}: exit status {result.returncode}")
    if len(lines) != 1:
        found.append(f"{label}: {len(lines)} lines on stderr instead of one:\n{result.stderr[:800]}")
    elif case.says.lower() not in lines[0].lower():
        found.append(f"{label}: {lines[0]!r} does not say {case.says!r}")
    return found


def _check_all(cases: Sequence[Case], home: Path) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: _run(case, home), cases))
    problems = [problem for case, result in zip(cases, results, strict=True)
                for problem in _problems(case, result)]
    assert not problems, "\n".join(problems)


def test_every_grid_tool_fails_in_one_line(tmp_path: Path) -> None:
    jdl = tmp_path / "campaign.json"
    jdl.write_text('{"name": "n", "clusters": {"c": {"exec_file": "e"}}, "nb_jobs": 1}')
    two_lines = tmp_path / "two-lines"
    two_lines.write_text("abc\ndef\n")
    closed = f"http://127.0.0.1:{_closed_port()}"
    cases = [Case(("gridsub", "-f", "missing.json"), says="missing.json")]
    for tool in GRID_TOOLS:
        argv = tuple(arg.format(jdl=jdl) for arg in tool)
        cases += [
            Case((argv[0], "--no-such-option"), says="no such option", status=2),
            Case(argv, {"CIGRI_API_URL": closed, "CIGRI_API_TOKEN_FILE": str(tmp_path / "none")},
                 says=f"token file {tmp_path / 'none'} does not exist"),
            Case(argv, {"CIGRI_API_URL": closed, "CIGRI_API_TOKEN_FILE": str(two_lines)},
                 says=f"token file {two_lines} is malformed"),
            Case(argv, {"CIGRI_API_URL": closed}, says=f"API server not reachable at {closed}"),
        ]
    cases.append(Case(("gridstat",), {"CIGRI_API_SOCKET": str(tmp_path / "no.sock")},
                      says=f"API server not reachable at {tmp_path / 'no.sock'}"))
    _check_all(cases, tmp_path)


@pytest.fixture
def schemas(tmp_path: Path) -> dict[str, str]:
    """Database URLs: none (closed port), without schema, at an older revision."""
    old = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(old, "0002")
    return {"down": f"postgresql://cigri@127.0.0.1:{_closed_port()}/cigri",
            "empty": f"sqlite:///{tmp_path / 'empty.db'}", "old": old}


def test_every_admin_command_fails_in_one_line(tmp_path: Path, schemas: dict[str, str],
                                               pg_server_url: str) -> None:
    missing_db = make_url(pg_server_url).set(database="cigri_errors_no_such_db")
    cases = [
        Case(("cigri", "no-such-command"), says="no such command", status=2),
        Case(("cigri", "cluster", "add"), says="missing argument", status=2),
        Case(("cigri", "status", "--bogus"), says="no such option", status=2),
        Case(("cigri", "db", "upgrade", "--url",
              missing_db.render_as_string(hide_password=False)),
             says=f"database cigri_errors_no_such_db does not exist on {missing_db.host}"),
    ]
    for command in ADMIN_COMMANDS:
        argv = ("cigri", *command)
        cases += [Case(argv, {"CIGRI_CONF": str(tmp_path / "none.conf")}, says="none.conf"),
                  Case(argv, {"CIGRI_DATABASE_URL": schemas["down"]}, says="not reachable")]
        if command != ("db", "upgrade"):
            cases.append(Case(argv, {"CIGRI_DATABASE_URL": schemas["empty"]},
                              says="cigri db upgrade"))
        if command in {("status",), ("config", "check"), ("cluster", "list")}:
            cases.append(Case(argv, {"CIGRI_DATABASE_URL": schemas["old"]},
                              says="at schema revision 0002"))
    _check_all(cases, tmp_path)


def test_every_server_fails_in_one_line_and_answers_help(tmp_path: Path,
                                                         schemas: dict[str, str]) -> None:
    cases = []
    for server in SERVERS:
        cases += [
            Case((server, "--serve-please"), says=f"see `{server} --help`", status=2),
            Case((server,), {"CIGRI_CONF": str(tmp_path / "none.conf")}, says="none.conf"),
            Case((server,), {"CIGRI_DATABASE_URL": schemas["down"]}, says="not reachable"),
            Case((server,), {"CIGRI_DATABASE_URL": schemas["empty"]}, says="cigri db upgrade"),
        ]
    cases += [Case(("cigri-oar-emulator", "--no-such-option"), says="no such option", status=2),
              Case(("cigri-oar-emulator", "--clusters", "many"), says="many", status=2)]
    _check_all(cases, tmp_path)
    for server in (*SERVERS, "cigri-oar-emulator"):
        for flag in ("--help", "-h") if server != "cigri-oar-emulator" else ("--help",):
            result = _run(Case((server, flag), {"CIGRI_DATABASE_URL": schemas["down"]}), tmp_path)
            assert (result.returncode, result.stderr) == (0, ""), (server, flag, result.stderr)
            assert result.stdout.startswith(f"Usage: {server}"), (server, result.stdout)
