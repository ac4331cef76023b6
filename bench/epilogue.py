"""Benchmark: the epilogue check (`cigri.storage.epilogues.list_epilogue_sites`) on a finished
campaign of N task jobs (default 1,000,000), on PostgreSQL, and what the partial index of
prologue and epilogue jobs (`ix_jobs_campaign_cluster_tag`, migration 0003) costs the updater.

The campaign ran on cluster `a` only and defines an epilogue on `a` and on `b`, so the check
answers "yes" for `a` and "no" for `b`; another campaign has N/10 jobs on `b`, and `--history`
past campaigns have a prologue and an epilogue job on each cluster. Prints the median
time of `list_epilogue_sites` (what the meta-scheduler and the updater call at every pass while
the campaign waits for its epilogue) and of one UPDATE of 10,000 jobs running -> terminated (the
updater's write), then, with `--without-index`, both again after dropping the partial index and
after creating it again.
`--full-index` also measures an index on all jobs, `(campaign_id, cluster_id)`, for comparison.

    python bench/epilogue.py [--tasks N] [--calls C] [--without-index] [--full-index]

PostgreSQL server: `CIGRI_BENCH_DATABASE_URL` (default postgresql://postgres@127.0.0.1/postgres);
the benchmark creates and drops its own database there. The last line is `key=value` pairs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from cigri.storage.db import make_engine, normalise_url
from cigri.storage.epilogues import list_epilogue_sites
from cigri.storage.migrate import upgrade

DEFAULT_URL = "postgresql://postgres@127.0.0.1/postgres"
_PARTIAL_INDEX = "ix_jobs_campaign_cluster_tag"
_FULL_INDEX = "ix_bench_jobs_campaign_cluster"


def _build(engine: Engine, tasks: int, history: int) -> int:
    with engine.begin() as conn:
        for name in ("a", "b"):
            conn.execute(text("INSERT INTO clusters (name, api_url) VALUES (:n, :u)"),
                         {"n": name, "u": f"http://{name}/"})
        ids = [int(conn.execute(text(
            "INSERT INTO campaigns (grid_user, state, nb_jobs) VALUES ('alice', 'in_treatment', "
            ":n) RETURNING id"), {"n": n}).scalar_one()) for n in (tasks, tasks // 10)]
        for campaign, count, cluster in ((ids[0], tasks, 1), (ids[1], tasks // 10, 2)):
            conn.execute(text(
                "INSERT INTO parameters (campaign_id, name, param) SELECT :c, 'p' || i, 'p' || i "
                "FROM generate_series(1, :n) AS i"), {"c": campaign, "n": count})
            conn.execute(text(
                "INSERT INTO jobs (campaign_id, param_id, cluster_id, state, remote_id, "
                "start_time, stop_time) SELECT campaign_id, id, :k, 'terminated', id, "
                "now() - interval '1 hour', now() FROM parameters WHERE campaign_id = :c"),
                {"c": campaign, "k": cluster})
        # Past campaigns' prologue and epilogue jobs, on both clusters: what a `param_id IS NULL`
        # probe through `ix_jobs_param_id` would read at every check.
        conn.execute(text(
            "INSERT INTO campaigns (grid_user, state, nb_jobs) SELECT 'bob', 'terminated', 1 "
            "FROM generate_series(1, :n)"), {"n": history})
        conn.execute(text(
            "INSERT INTO jobs (campaign_id, param_id, cluster_id, state, tag) "
            "SELECT c.id, NULL, k.id, 'terminated', t.tag FROM campaigns AS c, clusters AS k, "
            "(VALUES ('prologue'), ('epilogue')) AS t (tag) WHERE c.grid_user = 'bob'"))
        for cluster in (1, 2):
            conn.execute(text(
                "INSERT INTO campaign_properties (campaign_id, cluster_id, name, value) "
                "VALUES (:c, :k, 'epilogue', 'echo done')"), {"c": ids[0], "k": cluster})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return ids[0]


def _check_ms(engine: Engine, campaign_id: int, calls: int) -> tuple[float, list[bool]]:
    times = []
    with engine.connect() as conn:
        sites = list_epilogue_sites(conn, [campaign_id])
        for _ in range(calls):
            started = time.perf_counter()
            list_epilogue_sites(conn, [campaign_id])
            times.append((time.perf_counter() - started) * 1000)
            conn.rollback()
    return statistics.median(times), [site.has_worked for site in sites]


def _update_ms(engine: Engine, *, first_id: int, rows: int, repeat: int) -> float:
    """Median time of one UPDATE of `rows` jobs running -> terminated, rolled back each time."""
    ids = {"lo": first_id, "hi": first_id + rows}
    times = []
    for _ in range(repeat):
        with engine.connect() as conn, conn.begin() as transaction:
            conn.execute(text("UPDATE jobs SET state = 'running', stop_time = NULL "
                              "WHERE id >= :lo AND id < :hi"), ids)
            started = time.perf_counter()
            conn.execute(text("UPDATE jobs SET state = 'terminated', stop_time = now() "
                              "WHERE id >= :lo AND id < :hi"), ids)
            times.append((time.perf_counter() - started) * 1000)
            transaction.rollback()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=21)
    parser.add_argument("--updates", type=int, default=7)
    parser.add_argument("--history", type=int, default=10_000,
                        help="past campaigns, each with a prologue and an epilogue job per cluster")
    parser.add_argument("--without-index", action="store_true",
                        help=f"also measure without {_PARTIAL_INDEX}")
    parser.add_argument("--full-index", action="store_true",
                        help="also measure with an index on all jobs (campaign_id, cluster_id)")
    args = parser.parse_args()

    server_url = normalise_url(os.environ.get("CIGRI_BENCH_DATABASE_URL", DEFAULT_URL))
    name = f"cigri_bench_epilogue_{os.getpid()}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        upgrade(url)
        campaign_id = _build(engine, args.tasks, args.history)
        with engine.begin() as conn:
            first_job = int(conn.execute(text("SELECT min(id) FROM jobs")).scalar_one())
        rows = min(10_000, args.tasks)
        check_ms, worked = _check_ms(engine, campaign_id, args.calls)
        update_ms = _update_ms(engine, first_id=first_job + args.tasks // 2, rows=rows,
                               repeat=args.updates)
        print(f"epilogue check on {args.tasks} jobs: median {check_ms:.2f} ms over {args.calls} "
              f"calls (has_worked a, b: {worked}); UPDATE of {rows} jobs: {update_ms:.1f} ms",
              flush=True)
        pairs: dict[str, object] = {"tasks": args.tasks, "epilogue_check_ms": f"{check_ms:.2f}",
                                    "update_10k_ms": f"{update_ms:.1f}"}
        # Dropped, then created again: the UPDATE is timed with, without and with the index
        # (A/B/A), so the drift of a table bloated by the rolled back updates shows.
        recreate = (f"CREATE INDEX {_PARTIAL_INDEX} ON jobs (campaign_id, cluster_id, tag, state) "
                    "WHERE param_id IS NULL")
        variants = [("without_index", f"DROP INDEX {_PARTIAL_INDEX}", args.without_index),
                    ("index_again", recreate, args.without_index),
                    ("full_index", f"CREATE INDEX {_FULL_INDEX} ON jobs (campaign_id, cluster_id)",
                     args.full_index)]
        for variant, statement, wanted in variants:
            if not wanted:
                continue
            with engine.begin() as conn:
                conn.execute(text(statement))
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE jobs"))
            variant_ms, variant_worked = _check_ms(engine, campaign_id, args.calls)
            variant_update_ms = _update_ms(engine, first_id=first_job + args.tasks // 2,
                                           rows=rows, repeat=args.updates)
            print(f"{variant}: check {variant_ms:.2f} ms ({variant_worked}); UPDATE "
                  f"{variant_update_ms:.1f} ms", flush=True)
            pairs.update({f"{variant}_check_ms": f"{variant_ms:.2f}",
                          f"{variant}_update_10k_ms": f"{variant_update_ms:.1f}"})
        print(" ".join(f"{key}={value}" for key, value in pairs.items()))
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
