"""JDL messages in the user's words (issue 10, point 8): a JSON syntax error says where, as
`invalid JSON at line L, column C: ...`, in `gridsub` and `cigri jdl check`; a relative
`param_file` is found next to the JDL file by both, wherever they are run from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

BROKEN = '{"name": "n",\n "clusters": {"dahu": {"exec_file": "e"}}\n "nb_jobs": 1}\n'


def _run(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(argv[0])
    assert executable, f"{argv[0]} is not installed"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    full_env.update(env)
    return subprocess.run([executable, *argv[1:]], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=60, check=False)


def test_a_json_syntax_error_names_its_line_and_column(tmp_path: Path) -> None:
    jdl = tmp_path / "broken.json"
    jdl.write_text(BROKEN)
    env = {"CIGRI_CONF": str(tmp_path / "none.conf"), "CIGRI_DATABASE_URL": "sqlite://",
           "CIGRI_CLIENT_CONF": "/nonexistent", "CIGRI_API_URL": "http://127.0.0.1:9"}
    (tmp_path / "none.conf").write_text("")
    checked = _run("cigri", "jdl", "check", str(jdl), "--clusters", "dahu", cwd=tmp_path, env=env)
    assert (checked.returncode, checked.stderr) == (
        1, "error: invalid JSON at line 3, column 2: Expecting ',' delimiter\n")
    submitted = _run("gridsub", "-f", str(jdl), cwd=tmp_path, env=env)
    assert (submitted.returncode, submitted.stderr) == (
        1, f"gridsub: {jdl}: invalid JSON at line 3, column 2: Expecting ',' delimiter\n")


def test_jdl_check_reads_a_relative_param_file_next_to_the_jdl(tmp_path: Path) -> None:
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    (campaign / "p.txt").write_text("a 1\nb 2\n")
    jdl = campaign / "c.json"
    jdl.write_text(json.dumps({"name": "c", "exec_file": "e", "param_file": "p.txt",
                               "clusters": {"dahu": {}}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "p.txt").write_text("wrong 1\n")  # the current directory's file is not it
    (tmp_path / "c.conf").write_text("")
    result = _run("cigri", "jdl", "check", str(jdl), "--clusters", "dahu", cwd=elsewhere,
                  env={"CIGRI_CONF": str(tmp_path / "c.conf")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] == ["a 1", "b 2"]
