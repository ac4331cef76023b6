"""`cigri-oar-emulator` as a command: prints one URL per cluster, serves them, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import requests


def test_cli_serves_clusters_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cigri.emulator.cli import main; main()", "--allow-root-jobs",
            "--clusters",
            "2",
            "--nodes",
            "3",
            "--cores",
            "2",
            "--mode",
            "simulate",
            "--port",
            "0",
            "--time-scale",
            "50",
            "--workdir",
            str(tmp_path),
            "--state-file",
            str(tmp_path / "state.json"),
            "--users",
            "testuser",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        urls = [process.stdout.readline().strip() for _ in range(2)]
        assert all(u.startswith("http://127.0.0.1:") and u.endswith("/oarapi/") for u in urls)
        headers = {"Accept": "application/json", "X-Remote-Ident": "testuser"}
        root = requests.get(urls[1], headers=headers, timeout=5).json()
        assert root["oar_version"].startswith("2.5.9")
        resources = requests.get(f"{urls[1]}resources", headers=headers, timeout=5).json()
        assert [r["network_address"] for r in resources["items"]][::2] == ["c2node1", "c2node2", "c2node3"]
        created = requests.post(f"{urls[0]}jobs", json={"command": "sleep 1"}, headers=headers, timeout=5)
        assert created.status_code == 201
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert (tmp_path / "state.json").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
