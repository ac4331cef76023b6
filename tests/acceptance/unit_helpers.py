"""Reading the units of `systemd/` as systemd does, and starting a service's command the way
systemd would: its `ExecStart` (split and `$VAR`-expanded by systemd's rules), the variables of its
`EnvironmentFile`, its `User`/`Group` (with the user's groups), `WorkingDirectory`,
`NoNewPrivileges`, a fresh session (the service's cgroup: `KillMode=control-group` signals every
process in it) and systemd's own environment (PATH, USER, LOGNAME, HOME, SHELL, INVOCATION_ID).

What cannot be reproduced without systemd as PID 1 is left out and said so by the tests: the
sandboxing keys (`ProtectSystem`, `PrivateTmp`), the journal, and `Restart=`.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
INSTALLED_PREFIX = "/usr/bin/"  # where the units expect cigri's commands
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Unit:
    path: Path
    sections: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        values = self.sections.get(section, {}).get(key)
        return values[-1] if values else default

    @property
    def name(self) -> str:
        return self.path.name


def read_unit(path: Path) -> Unit:
    """A unit file: sections of keys, each key with every value it was given, in order."""
    unit, section = Unit(path), ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.sections.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        unit.sections[section].setdefault(key.strip(), []).append(value.strip())
    return unit


def installed(command: str) -> str:
    """`/usr/bin/cigri-x` -> the `cigri-x` this environment installed (its console script)."""
    name = command[len(INSTALLED_PREFIX):]
    found = shutil.which(name)
    assert found, f"{name} is not installed in this environment"
    return found


def with_installed_commands(text: str) -> str:
    """A unit's text with every `/usr/bin/cigri...` path pointing at the installed command."""
    return re.sub(r"/usr/bin/(cigri[\w-]*)", lambda m: installed(m[0]), text)


def read_environment_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile syntax: KEY=VALUE lines, `#`/`;` comments, quotes removed."""
    found: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key.strip()] = value
    return found


def expand_exec(line: str, env: dict[str, str]) -> list[str]:
    """ExecStart split into words as systemd does; `${VAR}` anywhere is replaced by its value
    (one word), `$VAR` as a whole word by its value split at whitespace; other `$` stay (the
    shell of `/bin/sh -c '...'` expands them)."""
    assert line[:1] not in "-@:+!", f"ExecStart prefix not handled here: {line}"
    words: list[str] = []
    for word in shlex.split(line):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            words.extend(env.get(whole[1], "").split())
            continue
        words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                            lambda m: env.get(m[1], ""), word))
    return words


def timeout_seconds(value: str | None, default: float = 90.0) -> float:
    """A systemd time span (`60`, `30s`, `2min`, `1min 30s`) in seconds."""
    if not value:
        return default
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@dataclass
class Service:
    """A service's command as its unit runs it, ready to start."""

    unit: Unit
    argv: list[str]
    env: dict[str, str]
    user: str
    group: str
    cwd: str
    kill_signal: str
    kill_mode: str
    stop_timeout: float
    environment_file: str
    prefix: list[str]

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen([*self.prefix, *self.argv], env=self.env, cwd=self.cwd,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)


def service_for(unit: Unit, *, environment_file: Path, grant_read: bool) -> Service:
    """How systemd would start `unit`, with its EnvironmentFile read from `environment_file`
    (the unit's own path, e.g. /etc/default/cigri, is shared by the whole host). `grant_read`
    adds CAP_DAC_READ_SEARCH: only when the unit's user cannot read this environment's Python
    (e.g. installed under /root, mode 700); the process keeps the unit's uid, gid and groups."""
    service = unit.sections["Service"]
    declared = unit.get("Service", "EnvironmentFile")
    assert declared, f"{unit.name}: no EnvironmentFile"
    env_file_vars = read_environment_file(environment_file)
    user = unit.get("Service", "User")
    group = unit.get("Service", "Group") or user
    assert user and group, f"{unit.name}: no User"
    account = pwd.getpwnam(user)
    env = {"PATH": SYSTEMD_PATH, "USER": user, "LOGNAME": user, "HOME": account.pw_dir,
           "SHELL": account.pw_shell, "INVOCATION_ID": uuid.uuid4().hex, **env_file_vars}
    (exec_start,) = service["ExecStart"]
    argv = expand_exec(with_installed_commands(exec_start), env)
    prefix = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups"]
    if unit.get("Service", "NoNewPrivileges") in {"true", "yes", "1"}:
        prefix.append("--no-new-privs")
    if grant_read:
        prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    prefix.append("--")
    cwd = unit.get("Service", "WorkingDirectory") or account.pw_dir
    return Service(unit=unit, argv=argv, env=env, user=user, group=group, cwd=cwd,
                   kill_signal=unit.get("Service", "KillSignal") or "SIGTERM",
                   kill_mode=unit.get("Service", "KillMode") or "control-group",
                   stop_timeout=timeout_seconds(unit.get("Service", "TimeoutStopSec")),
                   environment_file=declared, prefix=prefix)


def processes_in_session(session: int) -> list[int]:
    """Live (not zombie) processes of a session: what is left of the service's cgroup."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == session and fields[0] != "Z":  # fields[3] is the session id
            found.append(int(entry))
    return found
