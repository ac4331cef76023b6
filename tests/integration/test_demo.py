"""`cigri demo`, as a user runs it: a subprocess that ends by itself with a summary and leaves
no temporary directory behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _cigri() -> list[str]:
    script = Path(sys.executable).parent / "cigri"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from cigri.cli.admin import main; main()"]


@pytest.mark.timeout(180)
def test_demo_runs_a_campaign_to_the_end_and_prints_its_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI_")}
    env["TMPDIR"] = str(tmp_path)  # the demo's throwaway directory goes here
    result = subprocess.run([*_cigri(), "demo", "--tasks", "60"], env=env, capture_output=True,
                            text=True, timeout=170, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "campaign 1: terminated" in out
    assert re.search(r"tasks done\s+60/60", out)
    per_cluster = dict(re.findall(r"(c\d): (\d+)", out.split("per cluster", 1)[1].splitlines()[0]))
    assert set(per_cluster) == {"c1", "c2", "c3"} and sum(map(int, per_cluster.values())) >= 60
    wall = float(re.search(r"wall time\s+([\d.]+)s", out).group(1))  # type: ignore[union-attr]
    assert wall < 120
    assert list(tmp_path.glob("cigri-demo-*")) == []  # cleaned up
