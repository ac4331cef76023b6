"""Benchmark: the OAR emulator in simulate mode runs a 100,000-job array campaign on a 3 x 1,000-core
grid at a time scale of at least 100x, driven over HTTP the way cigri drives OAR (array submissions
of a few hundred jobs through `param_file`, bulk status polls with `jobs/details?ids=`). The
emulator runs as its own process (`cigri-oar-emulator`) so its CPU time can be measured.

Prints submissions/s, status queries/s, the emulator's CPU seconds; the last line is key=value pairs.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import requests

HEADERS = {"Accept": "application/json", "X-Remote-Ident": "cigri"}


@dataclass
class Stats:
    submissions: int = 0  # POST /jobs
    jobs_submitted: int = 0
    status_queries: int = 0  # GET jobs/details
    statuses_read: int = 0
    finished: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_base_port(count: int) -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(url: str, jobs: int, array_size: int, max_waiting: int, chunk: int, stats: Stats) -> None:
    """One cluster's share of the campaign, like cigri's runner: keep the queue fed, poll in bulk."""
    session = requests.Session()
    session.headers.update(HEADERS)
    submitted = 0
    unfinished: list[int] = []
    next_param = 0
    while submitted < jobs or unfinished:
        waiting = len(unfinished)
        if submitted < jobs and waiting < max_waiting:
            size = min(array_size, jobs - submitted)
            params = "\n".join(f"p{next_param + i} {i}" for i in range(size))
            next_param += size
            response = session.post(
                f"{url}jobs",
                json={
                    "resources": "core=1,walltime=01:00:00",
                    "command": "./run.sh",
                    "param_file": params,
                    "name": "cigri.1",
                    "type": "besteffort",  # cigri campaigns run best-effort
                },
                timeout=60,
            )
            if response.status_code != 201:
                with stats.lock:
                    stats.errors += 1
                continue
            ids = [int(x) for x in re.findall(r"OAR_JOB_ID=(\d+)", response.json()["cmd_output"])]
            unfinished.extend(ids)
            submitted += size
            with stats.lock:
                stats.submissions += 1
                stats.jobs_submitted += size
            continue
        still: list[int] = []
        for start in range(0, len(unfinished), chunk):
            ids = unfinished[start : start + chunk]
            response = session.get(
                f"{url}jobs/details", params={"ids": ":".join(map(str, ids)), "limit": chunk}, timeout=60
            )
            items = response.json()["items"]
            done = {j["id"] for j in items if j["state"] in ("Terminated", "Error")}
            still.extend(i for i in ids if i not in done)
            with stats.lock:
                stats.status_queries += 1
                stats.statuses_read += len(items)
                stats.finished += len(done)
        unfinished = still
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=125)
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--time-scale", type=float, default=100.0)
    parser.add_argument("--duration", default="uniform:120:480")
    parser.add_argument("--array-size", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args()

    base = free_base_port(args.clusters)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cigri.emulator.cli import main; main()", "--allow-root-jobs",
            "--mode",
            "simulate",
            "--clusters",
            str(args.clusters),
            "--nodes",
            str(args.nodes),
            "--cores",
            str(args.cores),
            "--port",
            str(base),
            "--time-scale",
            str(args.time_scale),
            "--duration",
            args.duration,
            "--failure-rate",
            "0.01",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    urls = [process.stdout.readline().strip() for _ in range(args.clusters)]
    cores = args.nodes * args.cores
    print(
        f"emulator pid {process.pid}: {args.clusters} x {cores} cores at {urls[0]}..., "
        f"time scale {args.time_scale}x, {args.jobs} jobs, durations {args.duration}"
    )
    stats = Stats()
    share = [
        args.jobs // args.clusters + (1 if i < args.jobs % args.clusters else 0) for i in range(args.clusters)
    ]
    cpu0 = cpu_seconds(process.pid)
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=drive, args=(url, n, args.array_size, 2 * cores, args.chunk, stats))
        for url, n in zip(urls, share, strict=True)
    ]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        time.sleep(5)
        with stats.lock:
            print(
                f"  t={time.monotonic() - t0:6.1f}s submitted={stats.jobs_submitted} "
                f"finished={stats.finished} emulator_cpu={cpu_seconds(process.pid) - cpu0:.1f}s",
                flush=True,
            )
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(process.pid) - cpu0
    status = requests.get(urls[0].replace("/oarapi/", "/_emulator/status"), timeout=10).json()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    emulated = elapsed * args.time_scale
    print(
        f"{stats.jobs_submitted} jobs submitted in {stats.submissions} array submissions, "
        f"{stats.finished} finished, {stats.errors} errors, in {elapsed:.1f}s real "
        f"(~{emulated / 3600:.1f}h emulated)"
    )
    print(
        f"submissions/s={stats.submissions / elapsed:.1f} ({stats.jobs_submitted / elapsed:.0f} jobs/s); "
        f"status queries/s={stats.status_queries / elapsed:.1f} "
        f"({stats.statuses_read / elapsed:.0f} job statuses/s); "
        f"emulator CPU {cpu:.1f}s ({100 * cpu / elapsed:.0f}% of one core); cluster 1 status {status}"
    )
    print(
        f"jobs={stats.jobs_submitted} finished={stats.finished} errors={stats.errors} "
        f"elapsed_s={elapsed:.1f} "
        f"time_scale={args.time_scale:g} submissions_per_s={stats.submissions / elapsed:.2f} "
        f"jobs_submitted_per_s={stats.jobs_submitted / elapsed:.1f} "
        f"status_queries_per_s={stats.status_queries / elapsed:.2f} "
        f"statuses_per_s={stats.statuses_read / elapsed:.1f} emulator_cpu_s={cpu:.1f}"
    )


if __name__ == "__main__":
    main()
