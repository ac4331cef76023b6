"""A real Prometheus server (Debian's `prometheus`) scrapes a real `cigri-api` process while a
campaign runs on the OAR emulator; its HTTP API then shows the campaign's jobs by state and the
OAR request counters moving (issue 14, must show 1)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from cigri.domain import telemetry
from cigri.domain.clock import FakeClock, SystemClock
from cigri.storage.tokens import create_token
from tests.integration.engine_helpers import make_settings, new_campaign, queue_tasks, start_grid
from tests.integration.notify_helpers import free_port

TASKS = 4
ROOT = Path(__file__).resolve().parents[2]


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def api_port(pg_url: str) -> Iterator[int]:
    """`cigri-api` as its own process on the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    env.update(CIGRI_DATABASE_URL=pg_url, CIGRI_API_LISTEN="127.0.0.1:0", CIGRI_LOG_LEVEL="INFO")
    process = subprocess.Popen([shutil.which("cigri-api") or "cigri-api"], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        deadline, port = time.monotonic() + 30, None
        while port is None and time.monotonic() < deadline:
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", process.stderr.readline())
            port = int(match[1]) if match else None
        assert port, "cigri-api did not say where it listens"
        yield port
    finally:
        _stop(process)


@pytest.fixture
def prometheus(api_port: int, pg_engine: Engine, tmp_path: Path) -> Iterator[str]:
    """A Prometheus server scraping cigri-api's /metrics every second with an API token (every
    API request is authenticated), as docs/metrics.md shows; yields its base URL."""
    with pg_engine.begin() as conn:
        _, token = create_token(conn, grid_user="prometheus", now=SystemClock().now())
    (tmp_path / "token").write_text(token)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: cigri\n    metrics_path: /metrics\n"
        f"    authorization:\n      type: Bearer\n      credentials_file: {tmp_path / 'token'}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{api_port}']\n")
    port = free_port()
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _ready(url), what="Prometheus to be ready")
        yield url
    finally:
        _stop(process)


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _wait(condition: Callable[[], object], *, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


def query(url: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Prometheus' instant query API: {labels without __name__/job/instance: value}."""
    answer = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return {tuple(sorted((k, v) for k, v in item["metric"].items()
                         if k not in {"__name__", "job", "instance"})): float(item["value"][1])
            for item in answer["data"]["result"]}


def jobs_in(url: str, state: str) -> float:
    return sum(query(url, f'cigri_jobs{{cluster="c1", state="{state}"}}').values())


def oar_requests(url: str) -> float:
    return sum(query(url, 'cigri_oar_requests_total{cluster="c1"}').values())


def test_prometheus_scrapes_cigri_while_a_campaign_runs(pg_engine: Engine, clock: FakeClock,
                                                        prometheus: str) -> None:
    telemetry.RECORDER.drain()
    settings = make_settings(RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS=TASKS)
    with start_grid(pg_engine, clock, nodes=2, cores=2, settings=settings) as grid:
        assert _wait(lambda: query(prometheus, 'up{job="cigri"}') == {(): 1.0},
                     what="a first successful scrape")
        queue_tasks(grid, new_campaign(grid, [f"p{i}" for i in range(TASKS)]))
        grid.runner().run(loops=1)  # submits the campaign's jobs to the emulated OAR
        grid.advance(1)
        updater = grid.updater()
        updater.run(loops=1)  # they run
        _wait(lambda: jobs_in(prometheus, "running") == TASKS, what="the jobs running")
        while_running = oar_requests(prometheus)
        posts = query(prometheus, 'sum by (method) (cigri_oar_requests_total{cluster="c1"})')
        assert posts[(("method", "POST"),)] >= 1 and posts[(("method", "GET"),)] >= 1
        assert jobs_in(prometheus, "terminated") == 0

        grid.advance(30)  # fixed:10 s jobs are over
        updater.run(loops=1)
        _wait(lambda: jobs_in(prometheus, "terminated") == TASKS, what="the jobs terminated")
        assert jobs_in(prometheus, "running") == 0
        assert oar_requests(prometheus) > while_running  # the updater's polls, published
        submitted = query(prometheus, 'cigri_jobs_submitted_total{cluster="c1"}')
        assert submitted == {(("cluster", "c1"),): TASKS}
        latency = query(prometheus, 'sum(cigri_oar_request_duration_seconds_count{cluster="c1"})')
        assert latency == {(): oar_requests(prometheus)}
        passes = query(prometheus, 'cigri_daemon_passes_total{daemon="updater"}')
        assert passes == {(("daemon", "updater"),): 2}

        # Every metric Prometheus got is documented, and every query of the Grafana dashboard
        # is valid PromQL over documented metrics.
        exported = {re.sub(r"_(bucket|sum|count)$", "", name) for name in requests.get(
            f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"]
                    if name.startswith("cigri_")}
        documented = set(re.findall(r"`(cigri_[a-z_]+)`",
                                    (ROOT / "docs" / "metrics.md").read_text()))
        assert exported <= documented, exported - documented
        dashboard = json.loads((ROOT / "etc" / "grafana" / "cigri.json").read_text())
        expressions = [target["expr"].replace("$cluster", ".*")
                       for panel in dashboard["panels"] for target in panel.get("targets", [])]
        assert len(expressions) > 20
        for expression in expressions:
            names = {re.sub(r"_bucket$", "", name)
                     for name in re.findall(r"\bcigri_[a-z_]+", expression)}
            assert names and names <= documented, (expression, names - documented)
            answer = requests.get(f"{prometheus}/api/v1/query", params={"query": expression},
                                  timeout=10).json()
            assert answer["status"] == "success", (expression, answer)
