"""Benchmark: the web dashboard at scale, on PostgreSQL.

Builds, with set-based INSERTs, `--campaigns` campaigns (default 10,000) holding `--tasks` tasks
(default 1,000,000: half in campaign 1, alice's, the rest spread over the others), one job per
task (mostly terminated, some running or failed) and `--events` events (default 10,000,000: a
fifth on campaign 1, a few hundred open), across 4 clusters, then VACUUM ANALYZE. Then times every
dashboard page and fragment in the server (Flask's test client in this process: the time the
server spends, no network), as alice and as an admin, median and max of `--calls` rounds over
every page.
Goal: every page under 150 ms median and under 500 ms max.

    python bench/ui.py [--tasks N] [--events N] [--campaigns N] [--calls C]

PostgreSQL server: `CIGRI_BENCH_DATABASE_URL` (default postgresql://postgres@127.0.0.1/postgres);
the benchmark creates and drops its own database there. The last line is `key=value` pairs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from cigri.api import create_app
from cigri.config import build_settings
from cigri.storage.db import make_engine, normalise_url
from cigri.storage.migrate import upgrade

DEFAULT_URL = "postgresql://postgres@127.0.0.1/postgres"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _seed(engine: Engine, *, tasks: int, events: int, campaigns: int) -> None:
    big = tasks // 2
    small = max(1, (tasks - big) // max(1, campaigns - 1))
    started = time.perf_counter()
    steps = [
        ("clusters", """INSERT INTO clusters (name, api_url, enabled, stress_factor)
            SELECT 'c' || i, 'http://127.0.0.1:9/oarapi/', true, 0 FROM generate_series(1, 4) i"""),
        ("campaigns", """INSERT INTO campaigns (id, grid_user, state, type, name, submission_time,
                nb_jobs, jdl)
            SELECT i, CASE WHEN i <= 40 THEN 'alice' ELSE 'user' || (i % 100) END,
                   CASE WHEN i % 10 = 0 THEN 'terminated' WHEN i % 17 = 0 THEN 'paused'
                        ELSE 'in_treatment' END,
                   'normal', 'campaign-' || i, :now - (i || ' minutes')::interval,
                   CASE WHEN i = 1 THEN :big ELSE :small END,
                   '{"name": "c", "clusters": {"c1": {"exec_file": "run.sh"}}}'
            FROM generate_series(1, :campaigns) i"""),
        ("campaign_properties", """INSERT INTO campaign_properties (campaign_id, cluster_id, name,
                value)
            SELECT i, c, 'exec_file', 'run.sh' FROM generate_series(1, :campaigns) i,
                   generate_series(1, CASE WHEN i = 1 THEN 4 ELSE 2 END) c"""),
        ("parameters", """INSERT INTO parameters (campaign_id, name, param)
            SELECT CASE WHEN n <= :big THEN 1 ELSE LEAST(:campaigns, 2 + (n - :big - 1) / :small) END,
                   'task' || n, 'task' || n || ' --seed ' || n || ' input_' || (n % 977) || '.dat'
            FROM generate_series(1, :tasks) n"""),
        ("jobs", """INSERT INTO jobs (campaign_id, param_id, cluster_id, state, remote_id,
                submission_time, start_time, stop_time, return_code, attempt)
            SELECT p.campaign_id, p.id, 1 + p.id % 4,
                   CASE WHEN p.id % 1000 = 1 THEN 'running' WHEN p.id % 1000 = 2 THEN 'event'
                        ELSE 'terminated' END,
                   p.id, :now - interval '3 hours', :now - interval '2 hours',
                   CASE WHEN p.id % 1000 = 1 THEN NULL
                        ELSE :now - ((p.id % 3600) || ' seconds')::interval END,
                   CASE WHEN p.id % 1000 = 2 THEN 3 ELSE 0 END, 1
            FROM parameters p"""),
    ]
    with engine.begin() as conn:
        values = {"now": NOW, "big": big, "small": small, "tasks": tasks, "campaigns": campaigns}
        for name, sql in steps:
            step = time.perf_counter()
            conn.execute(text(sql), values)
            print(f"  {name}: {time.perf_counter() - step:.1f} s", flush=True)
    # Events in chunks of 1,000,000: a fifth on campaign 1, the rest spread; mostly closed.
    chunk = 1_000_000
    step = time.perf_counter()
    for first in range(0, events, chunk):
        with engine.begin() as conn:
            conn.execute(text("""
                INSERT INTO events (class, code, state, job_id, cluster_id, campaign_id,
                    checked, notified, date_open, date_update, date_closed, message)
                SELECT 'job', CASE WHEN n % 3 = 0 THEN 'RESUBMIT' ELSE 'EXIT_ERROR' END,
                       CASE WHEN n % 20000 = 7 THEN 'open' ELSE 'closed' END,
                       j.id, j.cluster_id, j.campaign_id, true, true,
                       :now - ((n % 86400) || ' seconds')::interval, :now,
                       CASE WHEN n % 20000 = 7 THEN NULL ELSE :now END,
                       'The job exited with exit status 3'
                FROM generate_series(:first, :last) n
                JOIN jobs j ON j.id = CASE WHEN n % 5 = 0 THEN 1 + (n / 5) % :big
                                           ELSE 1 + :big + n % (:tasks - :big) END"""),
                {"now": NOW, "first": first + 1, "last": min(events, first + chunk),
                 "big": big, "tasks": tasks})
    print(f"  events: {time.perf_counter() - step:.1f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        step = time.perf_counter()
        conn.execute(text("VACUUM ANALYZE"))
        print(f"  vacuum analyze: {time.perf_counter() - step:.1f} s", flush=True)
    print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)


def _time(client: object, path: str, user: str, calls: int) -> tuple[float, float]:
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        response = client.get(path, headers={"X-Cigri-User": user})  # type: ignore[attr-defined]
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return statistics.median(timings), max(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the database (to EXPLAIN)")
    args = parser.parse_args()

    server_url = normalise_url(os.environ.get("CIGRI_BENCH_DATABASE_URL", DEFAULT_URL))
    name = f"cigri_bench_ui_{os.getpid()}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=4)
    results: dict[str, tuple[float, float]] = {}
    try:
        upgrade(url)
        print(f"seeding {args.campaigns} campaigns, {args.tasks} tasks and jobs, "
              f"{args.events} events", flush=True)
        _seed(engine, tasks=args.tasks, events=args.events, campaigns=args.campaigns)
        from cigri.domain.clock import FakeClock

        app = create_app(build_settings({"DATABASE_URL": url, "API_TRUSTED_PROXIES": "127.0.0.1",
                                         "ADMINS": "root"}), engine, clock=FakeClock(NOW))
        client = app.test_client()
        big = args.tasks // 2
        pages = {
            "campaigns": ("/ui/campaigns", "alice"),
            "campaigns_rows": ("/ui/campaigns/rows?state=active", "alice"),
            "campaigns_admin": ("/ui/campaigns", "root"),
            "campaigns_admin_all_deep": (f"/ui/campaigns?state=all&after={args.campaigns - 30}",
                                         "root"),
            "campaigns_admin_user": ("/ui/campaigns?user=user42&state=all", "root"),
            "campaign": ("/ui/campaigns/1", "alice"),
            "campaign_live": ("/ui/campaigns/1/live", "alice"),
            "campaign_tasks_deep": (f"/ui/campaigns/1?task_after={big - 1000}", "alice"),
            "campaign_tasks_running": ("/ui/campaigns/1?task_state=running", "alice"),
            "campaign_tasks_search_none": ("/ui/campaigns/1?q=nothing-matches", "alice"),
            "campaign_tasks_search": ("/ui/campaigns/1?q=input_976.dat", "alice"),
            "task": (f"/ui/campaigns/1/tasks/{big // 2}", "alice"),
            "events_open": ("/ui/campaigns/1/events", "alice"),
            "events_all_deep": ("/ui/campaigns/1/events?all=1&after=5000000", "alice"),
            "jdl": ("/ui/campaigns/1/jdl", "alice"),
            "clusters": ("/ui/clusters", "alice"),
            "daemons": ("/ui/daemons", "root"),
            "daemons_rows": ("/ui/daemons/rows", "root"),
            "settings": ("/ui/settings", "alice"),
        }
        # Rounds over every page (not each page's calls in a row), so a burst of load on the
        # shared machine falls on all pages alike rather than on a few.
        timings: dict[str, list[float]] = {key: [] for key in pages}
        for _ in range(args.calls):
            for key, (path, user) in pages.items():
                timings[key].append(_time(client, path, user, 1)[0])
        for key, (path, _user) in pages.items():
            results[key] = (statistics.median(timings[key]), max(timings[key]))
            median, worst = results[key]
            print(f"{key:30s} {path:55s} median {median:7.1f} ms  max {worst:7.1f} ms",
                  flush=True)
    finally:
        engine.dispose()
        if args.keep:
            print(f"kept database {name}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    worst_median = max(m for m, _ in results.values())
    worst_max = max(w for _, w in results.values())
    print(" ".join([f"tasks={args.tasks}", f"events={args.events}", f"campaigns={args.campaigns}",
                    *(f"{k}_ms={m:.1f}" for k, (m, _) in results.items()),
                    f"worst_median_ms={worst_median:.1f}", f"worst_max_ms={worst_max:.1f}"]))


if __name__ == "__main__":
    main()
