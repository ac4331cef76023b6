"""Benchmark: the REST API on a campaign of N tasks (default 1,000,000) and N jobs, on PostgreSQL.

1. Submits the campaign with the real `gridsub` (a subprocess) from a JDL whose `param_file` holds
   N lines: the file is read by the client and streamed to the API, which ingests it. Compared
   with `bench/ingest.py`'s ingestion time for the same N (run here, `--no-sqlite --repeat 1`).
   Goal: under 3 x the ingestion time.
2. Adds N jobs to that campaign (one per task, mostly terminated, some running), VACUUM ANALYZE,
   then times over HTTP (median of `--calls` calls) `GET /campaigns/<id>` and
   `GET /campaigns/<id>/stats`, the two calls `gridstat <id>` makes, and the two together
   (`gridstat_total_ms`). Goal: each under 100 ms, so `gridstat` answers in under 100 ms. Also
   prints the list call and a task page.
3. Times one UPDATE of 10,000 jobs from running to terminated (what the updater does), with all
   the triggers on `jobs`, with only the baseline's `campaign_job_counts` triggers, and with none:
   the cost the statistics triggers (migration 0002) add to the updater. Median of `--updates`.

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

from sqlalchemy import Engine, create_engine, text
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


def _median_pair_ms(client: ApiClient, first: str, second: str, calls: int) -> float:
    """Both calls one after the other, as `gridstat <id>` makes them."""
    client.get(first)
    client.get(second)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        client.get(first)
        client.get(second)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# Triggers on `jobs` each variant disables: the statistics sums (migration 0002), then also the
# baseline's terminated-task counter.
_TRIGGER_VARIANTS = {
    "all": (),
    "baseline": ("jobs_stats_update",),
    "none": ("jobs_stats_update", "jobs_count_update"),
}


def _update_ms(engine: Engine, *, first_id: int, rows: int, repeat: int) -> dict[str, float]:
    """Median time of one UPDATE of `rows` jobs from running to terminated, per trigger variant,
    and (EXPLAIN ANALYZE, all triggers on) the time spent in each statistics trigger. Each try
    runs in a transaction rolled back afterwards, so the data stays as it was; the variants take
    turns so none always runs on the most bloated table."""
    ids = {"lo": first_id, "hi": first_id + rows}
    found: dict[str, list[float]] = {name: [] for name in _TRIGGER_VARIANTS}
    found.update(stats_trigger=[], count_trigger=[])
    names = list(_TRIGGER_VARIANTS)
    for attempt in range(repeat):
        for name in names[attempt % len(names):] + names[:attempt % len(names)]:
            with engine.connect() as conn, conn.begin() as transaction:
                for trigger in _TRIGGER_VARIANTS[name]:
                    conn.execute(text(f"ALTER TABLE jobs DISABLE TRIGGER {trigger}"))
                conn.execute(text("UPDATE jobs SET state = 'running', stop_time = NULL "
                                  "WHERE id >= :lo AND id < :hi"), ids)
                started = time.perf_counter()
                conn.execute(text("UPDATE jobs SET state = 'terminated', stop_time = now() "
                                  "WHERE id >= :lo AND id < :hi"), ids)
                found[name].append((time.perf_counter() - started) * 1000)
                transaction.rollback()
        with engine.connect() as conn, conn.begin() as transaction:
            conn.execute(text("UPDATE jobs SET state = 'running', stop_time = NULL "
                              "WHERE id >= :lo AND id < :hi"), ids)
            plan = conn.execute(text(
                "EXPLAIN (ANALYZE, FORMAT JSON) UPDATE jobs SET state = 'terminated', "
                "stop_time = now() WHERE id >= :lo AND id < :hi"), ids).scalar_one()
            triggers = {t["Trigger Name"]: t["Time"] for t in plan[0].get("Triggers", [])}
            found["stats_trigger"].append(triggers.get("jobs_stats_update", float("nan")))
            found["count_trigger"].append(triggers.get("jobs_count_update", float("nan")))
            transaction.rollback()
    return {name: statistics.median(times) for name, times in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=21)
    parser.add_argument("--updates", type=int, default=5,
                        help="tries of each timed UPDATE of 10,000 jobs")
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
        stats_ms = _median_ms(client, f"/campaigns/{campaign_id}/stats", args.calls)
        total_ms = _median_pair_ms(client, f"/campaigns/{campaign_id}",
                                   f"/campaigns/{campaign_id}/stats", args.calls)
        page_ms = _median_ms(client, f"/campaigns/{campaign_id}/jobs?limit=100&after=500000",
                             args.calls)
        print(f"GET /campaigns/{campaign_id} (gridstat -c): median {detail_ms:.1f} ms over "
              f"{args.calls} calls; finished {detail['finished_jobs']}/{detail['total_jobs']}")
        print(f"GET /campaigns/{campaign_id}/stats: median {stats_ms:.1f} ms; gridstat "
              f"{campaign_id} (both calls): median {total_ms:.1f} ms (goal: each under 100 ms)")
        print(f"GET /campaigns: {list_ms:.1f} ms; a task page deep in the campaign: "
              f"{page_ms:.1f} ms")
        with engine.begin() as conn:
            first_job = int(conn.execute(text("SELECT min(id) FROM jobs")).scalar_one())
        update_rows = min(10_000, args.tasks)
        updates = _update_ms(engine, first_id=first_job + args.tasks // 2, rows=update_rows,
                             repeat=args.updates)
        print(f"UPDATE of {update_rows} jobs running -> terminated: {updates['all']:.1f} ms with "
              f"every trigger, {updates['baseline']:.1f} ms without the statistics triggers, "
              f"{updates['none']:.1f} ms without any (median of {args.updates}); inside it, the "
              f"statistics trigger takes {updates['stats_trigger']:.1f} ms and the baseline's "
              f"counter {updates['count_trigger']:.1f} ms (EXPLAIN ANALYZE)", flush=True)
        ingest_s = ratio = None
        if not args.skip_ingest_baseline:
            ingest_s = _ingest_seconds(args.tasks)
            ratio = gridsub_s / ingest_s
            print(f"bench/ingest.py ingestion: {ingest_s:.2f} s; gridsub/ingest = {ratio:.2f} "
                  "(goal < 3)")
        server.close()
        pairs = {"tasks": args.tasks, "jobs": args.tasks, "gridstat_detail_ms": f"{detail_ms:.1f}",
                 "gridstat_list_ms": f"{list_ms:.1f}", "stats_ms": f"{stats_ms:.1f}",
                 "gridstat_total_ms": f"{total_ms:.1f}",
                 "update_10k_ms": f"{updates['all']:.1f}",
                 "update_10k_without_stats_triggers_ms": f"{updates['baseline']:.1f}",
                 "update_10k_without_triggers_ms": f"{updates['none']:.1f}",
                 "stats_trigger_10k_ms": f"{updates['stats_trigger']:.1f}",
                 "count_trigger_10k_ms": f"{updates['count_trigger']:.1f}",
                 "task_page_ms": f"{page_ms:.1f}", "gridsub_seconds": f"{gridsub_s:.2f}",
                 "api_peak_mb": f"{api_peak_mb:.0f}",
                 "ingest_seconds": "" if ingest_s is None else f"{ingest_s:.2f}",
                 "gridsub_over_ingest": "" if ratio is None else f"{ratio:.2f}",
                 "detail_under_100ms": detail_ms < 100, "stats_under_100ms": stats_ms < 100,
                 "gridstat_total_under_100ms": total_ms < 100,
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
