"""`cigri demo`, as a user runs it: a subprocess that ends by itself with a summary, shows
best-effort preemption (at least one job killed and resubmitted, every run) and leaves no
temporary directory behind."""

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
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/ui/  \(sign in with the token in \S+\)",
                     out), out
    assert re.search(r"tasks done\s+60/60", out)
    per_cluster = dict(re.findall(r"(c\d): (\d+)", out.split("per cluster", 1)[1].splitlines()[0]))
    assert set(per_cluster) == {"c1", "c2", "c3"} and sum(map(int, per_cluster.values())) >= 60
    resubmitted = int(re.search(r"resubmissions: (\d+)", out).group(1))  # type: ignore[union-attr]
    assert resubmitted >= 1, out
    assert re.search(r"RESUBMIT: [1-9]", out), out
    wall = float(re.search(r"wall time\s+([\d.]+)s", out).group(1))  # type: ignore[union-attr]
    assert wall < 120
    assert list(tmp_path.glob("cigri-demo-*")) == []  # cleaned up


@pytest.mark.timeout(120)
def test_interrupted_demo_stops_everything_and_cleans_up(tmp_path: Path) -> None:
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI_")}
    env["TMPDIR"] = str(tmp_path)
    process = subprocess.Popen([*_cigri(), "demo", "--tasks", "5000"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(tmp_path.glob("cigri-demo-*/cigri.conf")):
            time.sleep(0.2)
        (workdir,) = tmp_path.glob("cigri-demo-*")
        time.sleep(2)  # almighty and its daemons are up
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, output
    assert "interrupted" in output
    assert not workdir.exists()
