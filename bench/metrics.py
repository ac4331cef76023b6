"""Benchmark: what one `/metrics` scrape costs on a big grid, on PostgreSQL (issue 14: under 50 ms
at 1,000,000 jobs).

The grid: 5 clusters; `--jobs` jobs (default 1,000,000) of one campaign spread over them, 2 % in
`event` (half with an open job event), 3 % active (running, remote_waiting, submitted,
launching, to_launch) and the rest terminated; a second campaign whose `--bag` tasks (default
1,000,000) are all still in the bag; `--history` finished campaigns; 1,000 queued tasks, a
cluster blacklist, ten daemons' heartbeats, and the counters several daemons published (every
cluster x method x status, histograms included).

Prints the median time of a whole scrape through the API (`GET /metrics` on the Flask app:
database reads, exposition, HTTP) over `--scrapes` scrapes, and, as the baseline a naive
exporter would pay, one `count(*) ... GROUP BY cluster_id, state` over `jobs` and one
`count(*)` of the bag.

    PGHOST=127.0.0.1 PGUSER=postgres python bench/metrics.py [--jobs N] [--bag N] [--scrapes S]

The last line is `key=value` pairs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

from _grid import fresh_database
from sqlalchemy import Engine, text

from cigri.api import create_app
from cigri.config import build_settings
from cigri.domain import telemetry
from cigri.domain.clock import FakeClock
from cigri.storage.metrics import add_counters

CLUSTERS = 5


def _build(engine: Engine, jobs: int, bag: int, history: int) -> None:
    with engine.begin() as conn:
        for index in range(1, CLUSTERS + 1):
            conn.execute(text("INSERT INTO clusters (name, api_url) VALUES (:n, :u)"),
                         {"n": f"cluster{index}", "u": f"http://cluster{index}/"})
        conn.execute(text(
            "INSERT INTO campaigns (grid_user, state, nb_jobs) SELECT 'old', 'terminated', 1 "
            "FROM generate_series(1, :n)"), {"n": history})
        big, fresh = (int(conn.execute(text(
            "INSERT INTO campaigns (grid_user, state, nb_jobs) VALUES (:u, 'in_treatment', :n) "
            "RETURNING id"), {"u": user, "n": n}).scalar_one()) for user, n in
            (("alice", jobs), ("bob", bag)))
        for campaign, count in ((big, jobs), (fresh, bag)):
            conn.execute(text(
                "INSERT INTO parameters (campaign_id, name, param) SELECT :c, 'p' || i, 'p' || i "
                "FROM generate_series(1, :n) AS i"), {"c": campaign, "n": count})
        # 2 % event, 3 % active (five states), the rest terminated; clusters round-robin.
        conn.execute(text("""
            INSERT INTO jobs (campaign_id, param_id, cluster_id, state, remote_id, start_time,
                              stop_time)
            SELECT campaign_id, id, 1 + id % :k,
                   CASE WHEN id % 100 < 2 THEN 'event'
                        WHEN id % 100 = 2 THEN 'running'
                        WHEN id % 100 = 3 THEN
                            (ARRAY['remote_waiting', 'submitted', 'launching',
                                   'to_launch'])[1 + (id / 100) % 4]
                        WHEN id % 100 = 4 THEN 'running'
                        ELSE 'terminated' END,
                   id, now() - interval '1 hour', now()
            FROM parameters WHERE campaign_id = :c"""), {"c": big, "k": CLUSTERS})
        conn.execute(text("""
            INSERT INTO events (class, code, state, job_id, cluster_id, campaign_id, date_open)
            SELECT 'job', 'EXIT_ERROR', CASE WHEN id % 2 = 0 THEN 'open' ELSE 'closed' END,
                   id, cluster_id, campaign_id, now()
            FROM jobs WHERE state = 'event'"""))
        conn.execute(text(
            "INSERT INTO events (class, code, state, cluster_id, date_open) "
            "VALUES ('cluster', 'BLACKLIST', 'open', 3, now() - interval '2 hours')"))
        conn.execute(text(
            "INSERT INTO bag_of_tasks (campaign_id, param_id) "
            "SELECT campaign_id, id FROM parameters WHERE campaign_id = :c"), {"c": fresh})
        conn.execute(text(
            "INSERT INTO jobs_to_launch (task_id, cluster_id, order_num) "
            "SELECT id, 1 + id % :k, 1 FROM bag_of_tasks ORDER BY id LIMIT 1000"),
            {"k": CLUSTERS})
        conn.execute(text(
            "INSERT INTO taps (cluster_id, campaign_id, state, rate) "
            "SELECT id, :c, 'open', 10 FROM clusters"), {"c": fresh})
        names = ["metascheduler", "updater", "nikita", "collector", "notifier"] + [
            f"runner:cluster{i}" for i in range(1, CLUSTERS + 1)]
        for name in names:
            conn.execute(text(
                "INSERT INTO daemon_heartbeats (name, host, pid, started_at, beat_at, "
                "interval_seconds, passes, failures) VALUES (:n, 'h', 1, now(), now(), 5, 100, 0)"),
                {"n": name})
        add_counters(conn, _published_counters(names))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def _published_counters(daemons: list[str]) -> dict[telemetry.Series, float]:
    """What a few days of daemons leave in `daemon_counters`: every series they can make."""
    recorder = telemetry.Recorder()
    for daemon in daemons:
        for seconds in (0.004, 0.2, 3.0):
            recorder.observe(telemetry.DAEMON_PASS_DURATION, {"daemon": daemon}, seconds)
        recorder.inc(telemetry.DAEMON_PASSES, {"daemon": daemon}, 1e6)
        recorder.inc(telemetry.DAEMON_FAILURES, {"daemon": daemon}, 3)
        recorder.inc(telemetry.DAEMON_LEASE_CHANGES, {"daemon": daemon, "change": "acquired"})
    for index in range(1, CLUSTERS + 1):
        cluster = f"cluster{index}"
        for method in ("GET", "POST", "DELETE"):
            for status in ("200", "201", "202", "400", "401", "404", "500", "502", "timeout",
                           "connection_error"):
                recorder.inc(telemetry.OAR_REQUESTS,
                             {"cluster": cluster, "method": method, "status": status}, 1000)
            for seconds in (0.003, 0.04, 0.3, 7.0):
                recorder.observe(telemetry.OAR_REQUEST_DURATION,
                                 {"cluster": cluster, "method": method}, seconds)
        recorder.inc(telemetry.JOBS_SUBMITTED, {"cluster": cluster}, 1e5)
        for cause in ("BESTEFFORT_KILL", "WALLTIME", "LAUNCH_ERROR", "Special_exit_status_66"):
            recorder.inc(telemetry.JOBS_RESUBMITTED, {"cluster": cluster, "cause": cause}, 100)
    return recorder.drain()


def _median_ms(action: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--bag", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=21)
    args = parser.parse_args()

    with fresh_database(f"cigri_bench_metrics_{os.getpid()}") as engine:
        started = time.perf_counter()
        _build(engine, args.jobs, args.bag, args.history)
        built_s = time.perf_counter() - started
        clock = FakeClock(datetime.now(UTC))
        client = create_app(build_settings({}), engine, clock=clock,
                            oar_factory=lambda _c: None).test_client()
        body = client.get("/metrics").get_data(as_text=True)  # warm: registry, plans, pool
        series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
        scrape_ms = _median_ms(lambda: client.get("/metrics"), args.scrapes)

        def naive() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT cluster_id, state, count(*) FROM jobs "
                                  "GROUP BY cluster_id, state")).all()
                conn.execute(text("SELECT count(*) FROM bag_of_tasks")).scalar_one()

        naive_ms = _median_ms(naive, max(3, args.scrapes // 4))
    print(f"grid of {args.jobs} jobs and {args.bag} tasks in the bag built in {built_s:.0f} s; "
          f"a scrape ({series} series, {len(body)} bytes): median {scrape_ms:.1f} ms over "
          f"{args.scrapes}; counting jobs and the bag instead: {naive_ms:.0f} ms", flush=True)
    print(f"jobs={args.jobs} bag={args.bag} series={series} scrape_ms={scrape_ms:.1f} "
          f"naive_count_ms={naive_ms:.0f} ratio={naive_ms / scrape_ms:.1f}")


if __name__ == "__main__":
    main()
