"""docs/quickstart.md, followed command by command: every `$ ` line of its console blocks runs, in
order, in a fresh `$HOME`, with the `cd` and `export` lines carried over like a shell session,
and what it prints must show every line the page shows (dates, ids, pids, ports and the user's
name and home may differ; `...` stands for lines left out).

Departures from a human reader, and only these: `pip install -e .` is not rerun (the suite runs in
that install); as root `cigri sandbox` gets `--allow-root-jobs`, as the page says it must; a
`gridstat --watch` the page stops with Ctrl-C gets a SIGINT once its frame shows; the job id of
`gridstat -j ID -O` is the one the previous listing gave for that task; a read-only command
(`gridstat`, `gridevents`) is looked at again, for up to 30 s, until it shows what the page shows.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
ROOT = os.geteuid() == 0
DOC_HOME = "/home/alice"
DOC_USER = "alice"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def steps() -> list[Step]:
    found: list[Step] = []
    in_block = False
    heredoc: str | None = None
    for line in PAGE.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```console"
            continue
        if not in_block:
            continue
        if heredoc is not None:
            found[-1].command += "\n" + line
            if line == heredoc:
                heredoc = None
            continue
        if line.startswith("$ "):
            found.append(Step(line[2:]))
            marker = re.search(r"<<'(\w+)'", line)
            heredoc = marker.group(1) if marker else None
        elif found:
            found[-1].expected.append(line)
    return found


def pattern(line: str, home: str, user: str) -> re.Pattern[str]:
    """The documented line as a regex: its variable parts (numbers, hex ids, cluster names,
    progress bars, column spacing, the user and their home) match any value."""
    text = line.strip().replace(DOC_HOME, "\0H").replace(DOC_USER, "\0U")
    out = ""
    for token in re.split(r"(\0H|\0U|\[[#.]+\]|[0-9a-f]{16}|c\d\b|\d+|\s+)", text):
        if token == "\0H":
            out += re.escape(home)
        elif token == "\0U":
            out += re.escape(user)
        elif re.fullmatch(r"\[[#.]+\]", token):
            out += r"\[[#.]+\]"
        elif re.fullmatch(r"[0-9a-f]{16}", token):
            out += "[0-9a-f]+"
        elif re.fullmatch(r"c\d", token):
            out += r"c\d"
        elif token.isdigit():
            out += r"\d+"
        elif token.isspace():
            out += r"\s+"
        else:
            out += re.escape(token)
    return re.compile(out)


def missing(step: Step, output: str, home: str, user: str) -> list[str]:
    lines = [line for line in step.expected if line.strip() and line.strip() != "..."]
    return [line for line in lines if not pattern(line, home, user).search(output)]


def run_watch(command: str, env: dict[str, str], cwd: str) -> str:
    """A `gridstat --watch`, stopped with Ctrl-C (SIGINT) once the campaign shows its events,
    or left to end by itself once it is terminated."""
    process = subprocess.Popen(["bash", "-c", f"exec {command}"], env=env, cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + 120
    try:
        for line in process.stdout:
            output += line
            if "(events)" in line:
                process.send_signal(signal.SIGINT)
            assert time.monotonic() < deadline, output
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return output


@pytest.mark.timeout(420)
def test_the_quickstart_page_works_as_written() -> None:
    home = tempfile.mkdtemp(prefix="qs-")  # short: the sandbox's socket path must fit
    user = __import__("pwd").getpwuid(os.getuid()).pw_name
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    env.update(HOME=home, COLUMNS="200",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    cwd = home
    previous = ""
    sandbox_dir = os.path.join(home, ".local/share/cigri/sandbox")
    try:
        for step in steps():
            command = step.command
            if command == "pip install -e .":
                continue
            if command.startswith("cd "):
                cwd = os.path.expanduser(command[3:].replace("~", home, 1))
                assert os.path.isdir(cwd), command
                continue
            if command.startswith("export "):
                key, value = command[7:].split("=", 1)
                env[key] = value.replace("~", home, 1)
                continue
            if command.startswith("cigri sandbox --detach") and ROOT:
                command += " --allow-root-jobs"
            job = re.fullmatch(r"gridstat -j \d+ -O", command)
            if job:  # the job of the task the page reads: parameter 3
                found = re.search(r"^\s+\d+: (\d+),\d+,terminated,c\d,3,3$", previous, re.M)
                assert found, previous
                command = f"gridstat -j {found.group(1)} -O"
            deadline = time.monotonic() + 30
            while True:
                if "--watch" in command:
                    output, status = run_watch(command, env, cwd), 0
                else:
                    done = subprocess.run(["bash", "-c", command], env=env, cwd=cwd,
                                          capture_output=True, text=True, timeout=180,
                                          check=False)
                    output, status = done.stdout + done.stderr, done.returncode
                assert "Traceback" not in output, f"{command}\n{output}"
                assert status == 0, f"{command} exited {status}\n{output}"
                absent = missing(step, output, home, user)
                retry = command.split()[0] in {"gridstat", "gridevents"}
                if not absent or not retry or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert not absent, f"{command}: not shown: {absent}\n{output}"
            previous = output
        leftovers = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
                except OSError:
                    continue
                if home.encode() in text:
                    leftovers.append(entry.name)
        assert leftovers == []
    finally:
        subprocess.run([sys.executable, "-c", "from cigri.cli.admin import main; main()",
                        "sandbox", "stop", "--dir", sandbox_dir], env=env,
                       capture_output=True, timeout=120, check=False)
        shutil.rmtree(home, ignore_errors=True)
