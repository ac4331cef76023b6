"""Benchmark: `GET /campaigns/<id>` latency under load, as issue 16 point 8 measured it.

`cigri-api` runs as its own process with the default settings (only the database URL and the
listen port are given); the OAR emulator (simulate mode, 3 clusters x 4 nodes x 2 cores, jobs of
`--duration` seconds) in another; the engine daemons (metascheduler, runner, updater, nikita) in
threads of a third. A campaign of `--tasks` tasks (500) is submitted through the API and runs
while `--clients` client processes (20; a thread each would measure this process's GIL, not the
API), each with its own keep-alive connection and the owner's bearer token, call
`GET /campaigns/<id>` as fast as they can for `--seconds`. Prints the unloaded median (one client,
before the load) and the loaded p50/p99/max and throughput; the last line is `key=value` pairs.

    PGHOST=127.0.0.1 PGUSER=postgres python bench/api_load.py [--clients 20] [--seconds 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from _grid import fresh_database
from sqlalchemy import Engine

from cigri.config import build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.metascheduler import build as build_metascheduler
from cigri.daemons.nikita import Nikita
from cigri.daemons.runner import RunnerProcess
from cigri.daemons.updater import Updater
from cigri.domain.clock import SystemClock
from cigri.oar.client import client_for_cluster
from cigri.storage.clusters import add_cluster
from cigri.storage.db import make_engine
from cigri.storage.tokens import create_token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _emulator(duration: int) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cigri.emulator", "--clusters", "3", "--nodes", "4", "--cores", "2",
         "--mode", "simulate", "--duration", f"fixed:{duration}", "--port", "0",
         "--log-level", "error"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    urls = [process.stdout.readline().strip() for _ in range(3)]
    if not all(url.startswith("http") for url in urls):
        process.terminate()
        raise RuntimeError(f"the emulator did not start: {urls}")
    return process, urls


def _api(url: str, port: int, workdir: str) -> subprocess.Popen[bytes]:
    conf = Path(workdir) / "cigri.conf"
    conf.write_text(f'DATABASE_URL = "{url}"\nAPI_LISTEN = "127.0.0.1:{port}"\n'
                    'LOG_LEVEL = "ERROR"\n')
    env = dict(os.environ, CIGRI_CONF=str(conf))
    process = subprocess.Popen(["cigri-api"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("cigri-api did not start")


def _run_daemons(url: str, stop: Any) -> None:
    """The engine daemons (threads of one child process, as almighty runs them) until `stop`."""
    settings = build_settings({
        "STRESS_FACTOR": 1000, "RUNNER_MIN_CYCLE_DURATION": 1, "UPDATER_INTERVAL": 2,
        "METASCHEDULER_INTERVAL": 1, "NIKITA_INTERVAL": 10, "GRID_USAGE_UPDATE_PERIOD": 0})
    engine = make_engine(url)
    halt = threading.Event()
    context = DaemonContext(settings=settings, engine=engine, clock=SystemClock(), stop=halt,
                            oar_factory=lambda c: client_for_cluster(c, timeout_seconds=30.0))
    loops = [build_metascheduler(context).run,
             RunnerProcess(context, discovery_interval=timedelta(seconds=1)).run,
             Updater(context).run, Nikita(context).run]
    threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    stop.wait()
    halt.set()
    for thread in threads:
        thread.join(timeout=60)
    engine.dispose()


def _client(url: str, token: str, seconds: float, out: Any) -> None:
    """One client (its own process and keep-alive connection): GET `url` in a loop."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = session.get(url, timeout=30)
        latencies.append(time.perf_counter() - started)
        errors += response.status_code != 200
    out.put((latencies, errors))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (from /proc): robust to a busy machine, where
    latencies mostly measure the other processes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--duration", type=int, default=30, help="emulated job seconds")
    args = parser.parse_args()

    run = uuid.uuid4().hex[:6]
    emulator, urls = _emulator(args.duration)
    try:
        with fresh_database(f"cigri_load_{run}") as engine, \
                tempfile.TemporaryDirectory(prefix="cigri-load-") as workdir:
            result = _bench(args, engine, urls, workdir)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    print(" ".join(f"{key}={value}" for key, value in result.items()))


def _bench(args: argparse.Namespace, engine: Engine, urls: list[str],
           workdir: str) -> dict[str, object]:
    port = _free_port()
    url = engine.url.render_as_string(hide_password=False)
    clock = SystemClock()
    with engine.begin() as conn:
        for i, oar_url in enumerate(urls):
            add_cluster(conn, name=f"load{i + 1}", api_url=oar_url, now=clock.now())
        token = create_token(conn, grid_user="loaduser", now=clock.now())[1]
    api = _api(url, port, workdir)
    base = f"http://127.0.0.1:{port}"
    fork = multiprocessing.get_context("fork")
    stop = fork.Event()
    daemons = fork.Process(target=_run_daemons, args=(url, stop))
    try:
        jdl = {"name": "load", "nb_jobs": args.tasks,
               "clusters": {f"load{i + 1}": {"exec_file": "true", "walltime": "00:10:00"}
                            for i in range(len(urls))}}
        # Every client reads the same campaign as its owner (its own connection, same token).
        response = requests.post(base + "/campaigns", json=jdl, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        campaign_id = response.json()["id"]
        daemons.start()
        time.sleep(5.0)  # the daemons pick the campaign up: jobs are submitted and running
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        unloaded = []
        for _ in range(41):
            started = time.perf_counter()
            session.get(f"{base}/campaigns/{campaign_id}", timeout=30).raise_for_status()
            unloaded.append(time.perf_counter() - started)
        results = fork.Queue()
        clients = [fork.Process(target=_client, args=(f"{base}/campaigns/{campaign_id}", token,
                                                      args.seconds, results))
                   for _ in range(args.clients)]
        cpu_before = _cpu_seconds(api.pid)
        for client in clients:
            client.start()
        outcomes = [results.get(timeout=args.seconds + 120) for _ in clients]
        for client in clients:
            client.join(timeout=30)
        api_cpu = _cpu_seconds(api.pid) - cpu_before
        samples = [latencies for latencies, _errors in outcomes]
        errors = sum(count for _latencies, count in outcomes)
        state = session.get(f"{base}/campaigns/{campaign_id}", timeout=30).json()
    finally:
        stop.set()
        if daemons.pid is not None:
            daemons.join(timeout=60)
        api.terminate()
        api.wait(timeout=30)
    latencies = [value for sample in samples for value in sample]
    return {
        "clients": args.clients, "tasks_per_campaign": args.tasks, "seconds": args.seconds,
        "unloaded_p50_ms": round(1000 * statistics.median(unloaded), 1),
        "p50_ms": round(1000 * _percentile(latencies, 0.50), 1),
        "p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
        "max_ms": round(1000 * max(latencies), 1),
        "requests": len(latencies), "req_per_s": round(len(latencies) / args.seconds, 1),
        "non_200": errors,
        "api_cpu_ms_per_request": round(1000 * api_cpu / max(1, len(latencies)), 2),
        "load_average": round(os.getloadavg()[0], 1),
        "finished_tasks": state.get("finished_jobs"),
        "active_jobs": sum(c["active_jobs"] for c in state.get("clusters", {}).values()),
    }


if __name__ == "__main__":
    main()
