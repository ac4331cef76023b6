"""`cigri metrics serve`: /metrics on a port of its own, stopped by SIGTERM; `cigri metrics
show` prints one scrape; a bad address is one line, no traceback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import requests

from tests.integration.notify_helpers import free_port


def _env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    env.update(CIGRI_DATABASE_URL=database_url)
    return env


def test_metrics_serve_answers_on_its_own_port_and_stops_on_sigterm(sqlite_url: str) -> None:
    port = free_port()
    process = subprocess.Popen([shutil.which("cigri") or "cigri", "metrics", "serve", "--listen",
                                f"127.0.0.1:{port}"], env=_env(sqlite_url),
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline, answer = time.monotonic() + 30, None
        while answer is None and time.monotonic() < deadline:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            except requests.ConnectionError:
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert "cigri_database_up 1.0" in answer.text
        assert requests.get(f"http://127.0.0.1:{port}/campaigns", timeout=5).status_code == 404
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_metrics_show_prints_one_scrape(sqlite_url: str) -> None:
    shown = subprocess.run(["cigri", "metrics", "show"], env=_env(sqlite_url), text=True,
                           capture_output=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "# TYPE cigri_jobs gauge" in shown.stdout
    assert 'cigri_campaigns{state="in_treatment"} 0.0' in shown.stdout


def test_a_bad_address_is_one_line(sqlite_url: str) -> None:
    refused = subprocess.run(["cigri", "metrics", "serve", "--listen", "nowhere"],
                             env=_env(sqlite_url), text=True, capture_output=True, timeout=60)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "cigri: --listen 'nowhere': expected HOST:PORT, e.g. 127.0.0.1:9468"]
