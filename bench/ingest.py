"""Benchmark: ingest a campaign of N tasks (default 1,000,000) into PostgreSQL and SQLite.

Prints the time of `create_campaign` (staging COPY, duplicate-safe INSERT ... SELECT into
parameters and bag_of_tasks), the time of a raw `COPY` of the same rows into the same tables in the
same run, their ratio, the peak memory of the process (ru_maxrss) and the SQLite time. Medians of
`--repeat` runs. The parameter lines are generated lazily, as a request body would stream them.
Goal: ratio <= 2.0, peak memory < 200 MB.

    python bench/ingest.py [--tasks N] [--repeat R]

PostgreSQL server: `CIGRI_BENCH_DATABASE_URL` (default postgresql://postgres@127.0.0.1/postgres);
the benchmark creates and drops its own database there. The last line is `key=value` pairs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from cigri.domain.jdl import task_name
from cigri.storage.campaigns import create_campaign
from cigri.storage.db import make_engine, normalise_url
from cigri.storage.migrate import upgrade
from cigri.storage.tables import campaigns

DEFAULT_URL = "postgresql://postgres@127.0.0.1/postgres"


def parameter_lines(count: int) -> Iterator[str]:
    for index in range(count):
        yield f"task{index} --input data/{index % 977}/{index}.dat --seed {index * 7919 % 100003}\n"


def ingest(engine: Engine, count: int) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        create_campaign(conn, grid_user="bench", name="bench", jobs_type="normal",
                        jdl={"name": "bench"}, properties={None: {"max_resubmissions": "5"}},
                        params=parameter_lines(count), now=datetime.now(UTC))
    return time.perf_counter() - started


def raw_copy(engine: Engine, count: int) -> float:
    """COPY the same parameters and bag_of_tasks rows straight into the tables (ids precomputed):
    the floor any ingestion on this server can reach."""
    started = time.perf_counter()
    with engine.begin() as conn:
        campaign_id = conn.execute(insert(campaigns).values(
            grid_user="bench", state="in_treatment", type="normal", name="raw", nb_jobs=count,
            submission_time=datetime.now(UTC)).returning(campaigns.c.id)).scalar_one()
        first_id = int(conn.execute(text(
            "SELECT setval(pg_get_serial_sequence('parameters', 'id'),"
            " nextval(pg_get_serial_sequence('parameters', 'id')) + :n)"), {"n": count}
        ).scalar_one()) - count
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor:
            with cursor.copy("COPY parameters (id, campaign_id, name, param) FROM STDIN") as copy:
                for offset, line in enumerate(parameter_lines(count)):
                    param = line.strip()
                    copy.write_row((first_id + offset, campaign_id, task_name(param), param))
            with cursor.copy("COPY bag_of_tasks (campaign_id, param_id, priority) FROM STDIN") as copy:
                for offset in range(count):
                    copy.write_row((campaign_id, first_id + offset, 10))
    return time.perf_counter() - started


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE campaigns CASCADE"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE parameters, bag_of_tasks"))


def sqlite_ingest(count: int) -> float:
    with tempfile.TemporaryDirectory(prefix="cigri-bench-") as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        try:
            return ingest(engine, count)
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="tasks in the campaign")
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians are printed")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite figure")
    args = parser.parse_args()

    server_url = normalise_url(os.environ.get("CIGRI_BENCH_DATABASE_URL", DEFAULT_URL))
    database = f"cigri_bench_{os.getpid()}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    bench_url = make_url(server_url).set(database=database).render_as_string(hide_password=False)
    engine: Engine | None = None
    try:
        upgrade(bench_url)
        engine = make_engine(bench_url)
        ingest_times: list[float] = []
        copy_times: list[float] = []
        for run in range(args.repeat):
            # Alternate the order so neither side always runs on a warmer server.
            order = [("ingest", ingest_times, ingest), ("copy", copy_times, raw_copy)]
            for label, times, function in order if run % 2 == 0 else reversed(order):
                reset(engine)
                times.append(function(engine, args.tasks))
                print(f"run {run + 1}: {label:6} {times[-1]:7.2f} s", flush=True)
        sqlite_times = [] if args.no_sqlite else [sqlite_ingest(args.tasks)
                                                   for _ in range(args.repeat)]
    finally:
        if engine is not None:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()

    ingest_s = statistics.median(ingest_times)
    copy_s = statistics.median(copy_times)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    sqlite_s = statistics.median(sqlite_times) if sqlite_times else float("nan")
    print(f"PostgreSQL ingestion of {args.tasks} tasks: {ingest_s:.2f} s "
          f"({args.tasks / ingest_s:,.0f} tasks/s); raw COPY of the same rows: {copy_s:.2f} s; "
          f"ratio {ingest_s / copy_s:.2f} (goal <= 2.0)")
    print(f"SQLite ingestion: {sqlite_s:.2f} s; peak memory of the process: {peak_mb:.0f} MB "
          "(goal < 200 MB)")
    print(f"tasks={args.tasks} repeat={args.repeat} pg_ingest_seconds={ingest_s:.3f} "
          f"pg_copy_seconds={copy_s:.3f} ratio={ingest_s / copy_s:.3f} "
          f"sqlite_ingest_seconds={sqlite_s:.3f} peak_rss_mb={peak_mb:.1f}")


if __name__ == "__main__":
    main()
