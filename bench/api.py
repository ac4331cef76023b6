"""Benchmark: the REST API on a campaign of N tasks (default 1,000,000) and N jobs, on PostgreSQL.

1. Submits the campaign with the real `gridsub` (a subprocess) from a JDL whose `param_file` holds
   N lines: the file is read by the client and streamed to the API, which ingests it. Compared
   with `bench/ingest.py`'s ingestion time for the same N (run here, `--no-sqlite --repeat 1`).
   Goal: under 3 x the ingestion time.
2. Adds N jobs to that campaign (one per task, mostly terminated, some running), VACUUM ANALYZE,
   then times `GET /campaigns/<id>` (what `gridstat -c` asks first) over HTTP: median of
   `--calls` calls. Goal: under 100 ms. Also prints the list call and the stats call.

    python bench/api.py [--tasks N] [--calls C]

PostgreSQL server: `CIGRI_BENCH_DATABASE_URL` (default postgresql://postgres@127.0.0.1/postgres);
the benchmark creates and drops its own database there. The last line is `key=value` pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cigri.api import create_app
from cigri.api.server import serve_tcp
from cigri.cli.client import ApiClient, ClientConfig
from cigri.config import build_settings
from cigri.storage.clusters import add_cluster
from cigri.storage.db import make_engine, normalise_url
from cigri.storage.migrate import upgrade
from cigri.storage.tokens import create_token

DEFAULT_URL = "postgresql://postgres@127.0.0.1/postgres"
ROOT = Path(__file__).resolve().parent.parent


def _ingest_seconds(tasks: int) -> float:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "ingest.py"), "--tasks",
                             str(tasks), "--repeat", "1", "--no-sqlite"],
                            capture_output=True, text=True, check=True)
    last = result.stdout.strip().splitlines()[-1]
    pairs = dict(part.split("=", 1) for part in last.split() if "=" in part)
    return float(pairs["pg_ingest_seconds"])


def _median_ms(client: ApiClient, path: str, calls: int) -> float:
    client.get(path)  # warm the pool and the caches
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        client.get(path)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=21)
    parser.add_argument("--skip-ingest-baseline", action="store_true",
                        help="do not run bench/ingest.py (no ratio printed)")
    args = parser.parse_args()

    server_url = normalise_url(os.environ.get("CIGRI_BENCH_DATABASE_URL", DEFAULT_URL))
    name = f"cigri_bench_api_{os.getpid()}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="cigri-bench-api-"))
    engine = make_engine(url, pool_size=8)
    try:
        upgrade(url)
        from datetime import UTC, datetime

        with engine.begin() as conn:
            add_cluster(conn, name="dahu", api_url="http://127.0.0.1:9/oarapi/")
            _row, token = create_token(conn, grid_user="alice", now=datetime.now(UTC))
        app = create_app(build_settings({"DATABASE_URL": url}), engine)
        server = serve_tcp(app, "127.0.0.1:0", threads=4)
        threading.Thread(target=server.run, daemon=True).start()
        base = f"http://127.0.0.1:{server.effective_port}"

        params = workdir / "params.txt"
        with params.open("w") as handle:
            for index in range(args.tasks):
                handle.write(f"task{index} {index} input_{index % 977}.dat --seed={index * 7}\n")
        jdl = workdir / "campaign.json"
        jdl.write_text(json.dumps({"name": "bench", "param_file": "params.txt",
                                   "clusters": {"dahu": {"exec_file": "$HOME/run.sh"}}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
        env.update(CIGRI_API_URL=base, CIGRI_API_TOKEN=token, CIGRI_CLIENT_CONF="/nonexistent")
        started = time.perf_counter()
        submitted = subprocess.run([shutil.which("gridsub") or "gridsub", "-f", str(jdl)],
                                   env=env, capture_output=True, text=True, check=True)
        gridsub_s = time.perf_counter() - started
        campaign_id = int(submitted.stdout.split("CAMPAIGN_ID=")[1])
        # The API runs in this process: its peak memory says whether it held the parameters.
        api_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"gridsub of {args.tasks} tasks (param_file streamed): {gridsub_s:.2f} s; peak "
              f"memory of the API process: {api_peak_mb:.0f} MB", flush=True)

        with engine.begin() as conn:
            # One job per task, as the runner would have made them: 1000 still running (a
            # cluster's worth), the others terminated.
            conn.execute(text(
                "INSERT INTO jobs (campaign_id, param_id, cluster_id, state, remote_id, "
                "submission_time, start_time, stop_time) "
                "SELECT campaign_id, id, 1, CASE WHEN id % 1000 = 0 THEN 'running' "
                "ELSE 'terminated' END, id, now() - interval '2 hours', "
                "now() - interval '1 hour' - (id % 600) * interval '1 second', now() "
                "FROM parameters WHERE campaign_id = :c"), {"c": campaign_id})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        client = ApiClient(ClientConfig(url=base, token=token))
        detail = client.get(f"/campaigns/{campaign_id}")
        assert detail["total_jobs"] == args.tasks, detail
        detail_ms = _median_ms(client, f"/campaigns/{campaign_id}", args.calls)
        list_ms = _median_ms(client, "/campaigns", args.calls)
        stats_ms = _median_ms(client, f"/campaigns/{campaign_id}/stats", max(5, args.calls // 4))
        page_ms = _median_ms(client, f"/campaigns/{campaign_id}/jobs?limit=100&after=500000",
                             args.calls)
        print(f"GET /campaigns/{campaign_id} (gridstat -c): median {detail_ms:.1f} ms over "
              f"{args.calls} calls; finished {detail['finished_jobs']}/{detail['total_jobs']}")
        print(f"GET /campaigns: {list_ms:.1f} ms; /stats: {stats_ms:.1f} ms; "
              f"a task page deep in the campaign: {page_ms:.1f} ms")
        ingest_s = ratio = None
        if not args.skip_ingest_baseline:
            ingest_s = _ingest_seconds(args.tasks)
            ratio = gridsub_s / ingest_s
            print(f"bench/ingest.py ingestion: {ingest_s:.2f} s; gridsub/ingest = {ratio:.2f} "
                  "(goal < 3)")
        server.close()
        pairs = {"tasks": args.tasks, "jobs": args.tasks, "gridstat_detail_ms": f"{detail_ms:.1f}",
                 "gridstat_list_ms": f"{list_ms:.1f}", "stats_ms": f"{stats_ms:.1f}",
                 "task_page_ms": f"{page_ms:.1f}", "gridsub_seconds": f"{gridsub_s:.2f}",
                 "api_peak_mb": f"{api_peak_mb:.0f}",
                 "ingest_seconds": "" if ingest_s is None else f"{ingest_s:.2f}",
                 "gridsub_over_ingest": "" if ratio is None else f"{ratio:.2f}",
                 "detail_under_100ms": detail_ms < 100,
                 "gridsub_under_3x": "" if ratio is None else ratio < 3}
        print(" ".join(f"{key}={value}" for key, value in pairs.items()))
    finally:
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
