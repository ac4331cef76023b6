"""Benchmark: one evaluation pass of the automation rules (issue 13): 10,000 rules over 1,000
campaigns in treatment, then the same after the campaigns' jobs doubled (goal: flat).

The grid: 5 clusters, `--campaigns` campaigns (default 1,000) of 10 users, `--jobs` jobs in all
(default 1,000,000) spread over them, 2 % with an open EXIT_ERROR event, the rest terminated.
`--rules-per-campaign` rules (default 10) scoped to each campaign, taken in turn (from a
different start for each campaign) among: an EXIT_ERROR rule, a BLACKLIST-closed rule, a state
rule, a rule on the whole `campaign` class, failure-rate and resubmission-rate rules over two
windows, silence rules, cluster rules (blacklisted, back), a cluster-error-share rule, a throughput
rule and an ETA rule. Each campaign's JDL names one cluster. Between two measured passes,
`--new-events` (default 100) EXIT_ERROR events are recorded on random campaigns and one cluster is
blacklisted (or its blacklist closed): what a pass reads beyond the counters. Prints the median
pass (`--passes`, default 5) before and after doubling the jobs, and their ratio.

    PGHOST=127.0.0.1 PGUSER=postgres python bench/rules.py [--jobs N] [--campaigns C]

The last line is `key=value` pairs.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from _grid import fresh_database
from sqlalchemy import Engine, text

from cigri.daemons.rule_evaluation import evaluate
from cigri.storage.automations import add_rule

CLUSTERS = 5


def _rules(campaign: int, count: int) -> list[dict[str, object]]:
    kinds: list[dict[str, object]] = [
        {"kind": "event", "code": "EXIT_ERROR"},
        {"kind": "event", "code": "BLACKLIST", "on": "close"},
        {"kind": "state", "state": ["paused", "cancelled"]},
        {"kind": "event", "class": "campaign"},
        {"kind": "metric", "metric": "failure_rate", "above": 0.5, "window_minutes": 30},
        {"kind": "metric", "metric": "resubmission_rate", "above": 0.5, "window_minutes": 30},
        {"kind": "metric", "metric": "failure_rate", "above": 0.9, "window_minutes": 120},
        {"kind": "metric", "metric": "resubmission_rate", "above": 0.9, "window_minutes": 120},
        {"kind": "silence", "minutes": 60},
        {"kind": "silence", "minutes": 240},
        {"kind": "cluster", "on": "blacklisted"},
        {"kind": "cluster", "on": "back"},
        {"kind": "metric", "metric": "cluster_error_share", "above": 0.8, "window_minutes": 30},
        {"kind": "metric", "metric": "throughput", "below": 10, "window_minutes": 30},
        {"kind": "metric", "metric": "eta", "after": "2030-01-01T00:00:00+00:00",
         "window_minutes": 60},
    ]
    return [{"name": f"r{campaign}-{i}", "trigger": kinds[(campaign + i) % len(kinds)],
             "actions": ["notify"], "scope": {"campaign": campaign}} for i in range(count)]


def _build(engine: Engine, campaigns: int, rules_per_campaign: int) -> list[int]:
    with engine.begin() as conn:
        for index in range(1, CLUSTERS + 1):
            conn.execute(text("INSERT INTO clusters (name, api_url) VALUES (:n, :u)"),
                         {"n": f"cluster{index}", "u": f"http://cluster{index}/"})
        ids = [int(i) for i in conn.execute(text(
            "INSERT INTO campaigns (grid_user, state, name, nb_jobs, submission_time) "
            "SELECT 'user' || (i % 10), 'in_treatment', 'c' || i, 0, now() - interval '1 day' "
            "FROM generate_series(1, :n) AS i RETURNING id"), {"n": campaigns}).scalars()]
        conn.execute(text(
            "INSERT INTO campaign_properties (campaign_id, cluster_id, name, value) "
            "SELECT c, 1 + c % :k, 'exec_file', 'x' FROM unnest(CAST(:ids AS int[])) AS c"),
            {"ids": ids, "k": CLUSTERS})
        now = datetime.now(UTC)
        for campaign in ids:
            for rule in _rules(campaign, rules_per_campaign):
                add_rule(conn, owner=f"user{(campaign - ids[0] + 1) % 10}", admin=False,
                         source=rule, now=now)
    return ids


def _add_jobs(engine: Engine, ids: list[int], jobs: int, round_: int) -> None:
    per = max(1, jobs // len(ids))
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO parameters (campaign_id, name, param) "
            "SELECT c, 'r' || :r || '-' || i, 'p' FROM unnest(CAST(:ids AS int[])) AS c, "
            "generate_series(1, :per) AS i"), {"ids": ids, "per": per, "r": round_})
        conn.execute(text("UPDATE campaigns SET nb_jobs = nb_jobs + :per "
                          "WHERE id = ANY(CAST(:ids AS int[]))"), {"ids": ids, "per": per})
        conn.execute(text("""
            INSERT INTO jobs (campaign_id, param_id, cluster_id, state, remote_id, start_time,
                              stop_time)
            SELECT campaign_id, id, 1 + id % :k,
                   CASE WHEN id % 100 < 2 THEN 'event' ELSE 'terminated' END,
                   id, now() - interval '2 hours', now() - interval '1 hour'
            FROM parameters WHERE name LIKE 'r' || :r || '-%'"""), {"k": CLUSTERS, "r": round_})
        conn.execute(text("""
            INSERT INTO events (class, code, state, job_id, cluster_id, campaign_id, date_open,
                                notified)
            SELECT 'job', 'EXIT_ERROR', 'open', j.id, j.cluster_id, j.campaign_id,
                   now() - interval '1 hour', true
            FROM jobs j JOIN parameters p ON p.id = j.param_id
            WHERE j.state = 'event' AND p.name LIKE 'r' || :r || '-%'"""), {"r": round_})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def _passes(engine: Engine, ids: list[int], now: datetime, passes: int, new_events: int
            ) -> tuple[float, datetime]:
    times = []
    for _ in range(passes):
        with engine.begin() as conn:
            for campaign in random.sample(ids, min(new_events, len(ids))):
                conn.execute(text(
                    "INSERT INTO events (class, code, state, campaign_id, date_open, notified) "
                    "VALUES ('job', 'EXIT_ERROR', 'open', :c, :t, true)"),
                    {"c": campaign, "t": now})
            cluster = random.randint(1, CLUSTERS)
            closed = conn.execute(text(
                "UPDATE events SET state = 'closed', date_closed = :t WHERE code = 'BLACKLIST' "
                "AND state = 'open' AND campaign_id IS NULL AND cluster_id = :k"),
                {"t": now, "k": cluster}).rowcount
            if not closed:
                conn.execute(text(
                    "INSERT INTO events (class, code, state, cluster_id, date_open, notified) "
                    "VALUES ('cluster', 'BLACKLIST', 'open', :k, :t, true)"),
                    {"k": cluster, "t": now})
        now += timedelta(seconds=10)
        start = time.perf_counter()
        with engine.begin() as conn:
            evaluate(conn, now=now)
        times.append(time.perf_counter() - start)
    return statistics.median(times), now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=1_000)
    parser.add_argument("--rules-per-campaign", type=int, default=10)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--new-events", type=int, default=100)
    args = parser.parse_args()
    random.seed(1)
    with fresh_database(f"cigri_bench_rules_{os.getpid()}") as engine:
        started = time.perf_counter()
        ids = _build(engine, args.campaigns, args.rules_per_campaign)
        _add_jobs(engine, ids, args.jobs, 1)
        print(f"built {args.campaigns} campaigns, {len(ids) * args.rules_per_campaign} rules, "
              f"{args.jobs} jobs in {time.perf_counter() - started:.0f} s")
        now = datetime.now(UTC)
        with engine.begin() as conn:  # the first pass starts the watermarks and metric windows
            first = time.perf_counter()
            evaluate(conn, now=now)
            first = time.perf_counter() - first
        before, now = _passes(engine, ids, now, args.passes, args.new_events)
        _add_jobs(engine, ids, args.jobs, 2)
        after, now = _passes(engine, ids, now, args.passes, args.new_events)
        print(f"first pass (starts the metric windows): {first * 1000:.0f} ms")
        print(f"median pass at {args.jobs} jobs: {before * 1000:.0f} ms; "
              f"at {2 * args.jobs} jobs: {after * 1000:.0f} ms; ratio {after / before:.2f}")
        print(f"rules={len(ids) * args.rules_per_campaign} campaigns={len(ids)} jobs={args.jobs} "
              f"pass_ms={before * 1000:.0f} pass_doubled_ms={after * 1000:.0f} "
              f"ratio={after / before:.2f}")


if __name__ == "__main__":
    main()
