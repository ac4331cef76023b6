"""`/metrics` (issue 14): the grid state from the maintained tables, the daemons' counts published
through the database in one statement per pass, Prometheus' conventions (checked by `promtool
check metrics`), bounded labels, the opt-in per-campaign and per-user series, and the alert rules
(`promtool check rules`)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, delete, event, func, select

from cigri.api import create_app
from cigri.config import build_settings
from cigri.domain import telemetry
from cigri.domain.clock import FakeClock
from cigri.storage.tables import bag_of_tasks, bag_task_counts, campaigns
from cigri.storage.tokens import create_token
from tests.integration.engine_helpers import (
    USER,
    make_settings,
    new_campaign,
    queue_tasks,
    start_grid,
)

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_LABELS = {"cluster", "daemon", "state", "class", "change", "method", "status", "cause",
                  "le"}


@pytest.fixture(autouse=True)
def _fresh_recorder() -> Iterator[None]:
    """The recorder is per process: start each test without another test's counts."""
    telemetry.RECORDER.drain()
    yield
    telemetry.RECORDER.drain()


def scrape(engine: Engine, clock: FakeClock, **settings: Any) -> str:
    app = create_app(build_settings(settings), engine, clock=clock, oar_factory=lambda _c: None)
    with engine.begin() as conn:  # every API request is authenticated; an admin may see all
        _, token = create_token(conn, grid_user="root", now=clock.now())
    answer = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    return answer.get_data(as_text=True)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def _count_counter_statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    def _before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "daemon_counters" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", _before)
    return seen


def test_a_campaign_on_the_emulator_shows_in_the_metrics(pg_engine: Engine,
                                                         clock: FakeClock) -> None:
    with start_grid(pg_engine, clock, clusters=1, nodes=2, cores=2) as grid:
        campaign = new_campaign(grid, [f"p{i}" for i in range(6)])
        queue_tasks(grid, campaign)
        statements = _count_counter_statements(pg_engine)
        grid.runner().run(loops=1)
        # one pass, one statement for every count it made (OAR requests, submissions, the pass)
        assert len(statements) == 1 and statements[0].lstrip().upper().startswith("INSERT")
        grid.advance(1)
        grid.updater().run(loops=1)
        found = samples(scrape(pg_engine, clock))
    submitted = value(found, "cigri_jobs_submitted_total", cluster="c1")
    assert submitted == 3  # RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS: the tap's first rate
    running = sum(value(found, "cigri_jobs", cluster="c1", state=state) or 0
                  for state in ("submitted", "remote_waiting", "running"))
    assert running == 3
    assert value(found, "cigri_tasks_waiting") == 6 - 3  # taken into jobs leave the bag
    assert value(found, "cigri_tasks_queued", cluster="c1") == 3
    assert value(found, "cigri_campaigns", state="in_treatment") == 1
    posts = sum(v for (name, labels), v in found.items()
                if name == "cigri_oar_requests_total" and ("method", "POST") in labels)
    assert posts == sum(v for (name, labels), v in found.items()
                        if name == "cigri_oar_requests_total" and ("method", "POST") in labels
                        and dict(labels)["status"].startswith("2"))
    gets = sum(v for (name, labels), v in found.items()
               if name == "cigri_oar_requests_total" and ("method", "GET") in labels)
    assert posts >= 1 and gets >= 1, found
    assert (value(found, "cigri_oar_request_duration_seconds_count", cluster="c1", method="POST")
            == posts)
    assert value(found, "cigri_daemon_passes_total", daemon="runner:c1") == 1
    assert value(found, "cigri_daemon_passes_total", daemon="updater") == 1
    assert value(found, "cigri_daemon_pass_duration_seconds_count", daemon="updater") == 1
    assert value(found, "cigri_daemon_lease_changes_total", daemon="updater",
                 change="acquired") == 1
    assert value(found, "cigri_daemon_heartbeat_age_seconds", daemon="updater") == 0
    assert value(found, "cigri_daemon_late", daemon="updater") == 0
    assert value(found, "cigri_database_up") == 1
    for name, labels in found:
        assert name.startswith("cigri_")
        assert {key for key, _ in labels} <= ALLOWED_LABELS, (name, labels)


def test_counts_of_two_processes_add_up_and_survive_a_restart(pg_engine: Engine,
                                                              clock: FakeClock) -> None:
    """Each flush adds deltas: two daemons (or one restarted) never overwrite each other."""
    from cigri.storage.metrics import add_counters, read_counters

    first, second = telemetry.Recorder(), telemetry.Recorder()
    first.inc(telemetry.JOBS_RESUBMITTED, {"cluster": "c1", "cause": "BESTEFFORT_KILL"}, 2)
    second.inc(telemetry.JOBS_RESUBMITTED, {"cluster": "c1", "cause": "BESTEFFORT_KILL"}, 3)
    second.observe(telemetry.OAR_REQUEST_DURATION, {"cluster": "c1", "method": "GET"}, 0.2)
    with pg_engine.begin() as conn:
        add_counters(conn, first.drain())
    with pg_engine.begin() as conn:
        add_counters(conn, second.drain())
        counters = read_counters(conn)
    key = (telemetry.JOBS_RESUBMITTED, (("cause", "BESTEFFORT_KILL"), ("cluster", "c1")))
    assert counters[key] == 5
    found = samples(scrape(pg_engine, clock))
    assert value(found, "cigri_jobs_resubmitted_total", cluster="c1", cause="BESTEFFORT_KILL") == 5
    buckets = {dict(labels)["le"]: v for (name, labels), v in found.items()
               if name == "cigri_oar_request_duration_seconds_bucket"}
    assert buckets["0.1"] == 0 and buckets["0.25"] == 1 and buckets["+Inf"] == 1


def test_tasks_in_the_bag_are_maintained_not_counted(pg_engine: Engine, clock: FakeClock) -> None:
    with start_grid(pg_engine, clock) as grid:
        kept = new_campaign(grid, [f"a{i}" for i in range(5)])
        gone = new_campaign(grid, [f"b{i}" for i in range(4)])
        queue_tasks(grid, kept, limit=2)
        grid.runner().run(loops=1)  # takes the 2 queued tasks out of the bag
        with pg_engine.begin() as conn:
            conn.execute(delete(campaigns).where(campaigns.c.id == gone))  # cascades to its bag
            maintained = dict(conn.execute(
                select(bag_task_counts.c.campaign_id, func.sum(bag_task_counts.c.tasks))
                .group_by(bag_task_counts.c.campaign_id)).all())
            counted = dict(conn.execute(
                select(bag_of_tasks.c.campaign_id, func.count())
                .group_by(bag_of_tasks.c.campaign_id)).all())
    assert counted == {kept: 3}
    assert {key: int(v) for key, v in maintained.items()} == counted
    assert value(samples(scrape(pg_engine, clock)), "cigri_tasks_waiting") == 3


def test_per_campaign_and_per_user_series_are_opt_in(engine: Engine, clock: FakeClock) -> None:
    with start_grid(engine, clock) as grid:
        campaign = new_campaign(grid, ["x", "y"])
        default = samples(scrape(engine, clock))
        assert not [name for name, _ in default if "campaign_" in name or "user" in name]
        opted = samples(scrape(engine, clock, METRICS_PER_CAMPAIGN=True, METRICS_PER_USER=True))
    assert value(opted, "cigri_campaign_tasks_waiting", campaign=str(campaign)) == 2
    assert value(opted, "cigri_user_campaigns", user=USER, state="in_treatment") == 1


def test_promtool_accepts_a_scrape(pg_engine: Engine, clock: FakeClock, tmp_path: Path) -> None:
    with start_grid(pg_engine, clock, settings=make_settings()) as grid:
        queue_tasks(grid, new_campaign(grid, ["p1", "p2"]))
        grid.runner().run(loops=1)
        grid.updater().run(loops=1)
        text = scrape(pg_engine, clock)
    assert "cigri_oar_requests_total{" in text and "cigri_jobs{" in text
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), \
        checked.stdout + checked.stderr


def test_promtool_accepts_the_alert_rules_and_their_unit_tests() -> None:
    rules = ROOT / "etc" / "prometheus" / "alerts.yml"
    checked = subprocess.run(["promtool", "check", "rules", str(rules)], text=True,
                             capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout
    tested = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], text=True,
                            capture_output=True, timeout=60, cwd=rules.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_maintenance_folds_the_bag_counts_without_changing_them(pg_engine: Engine,
                                                                clock: FakeClock) -> None:
    """Each writing session adds a row; `cigri maintenance` folds them to one row per campaign
    that still has tasks, and none for an emptied bag, so a scrape reads few rows."""
    from cigri.storage.metrics import compact_bag_counts

    with start_grid(pg_engine, clock) as grid:
        kept = new_campaign(grid, [f"a{i}" for i in range(6)])
        emptied = new_campaign(grid, [f"b{i}" for i in range(3)])
        held = pg_engine.connect()  # the ingesting session stays busy: the deletes get another
        for campaign, limit in ((kept, 2), (emptied, None)):
            with pg_engine.connect() as conn, conn.begin():
                conn.execute(delete(bag_of_tasks).where(
                    bag_of_tasks.c.id.in_(select(bag_of_tasks.c.id)
                                          .where(bag_of_tasks.c.campaign_id == campaign)
                                          .order_by(bag_of_tasks.c.id).limit(limit or 100))))

        def rows() -> list[tuple[int, int, int]]:
            with pg_engine.begin() as conn:
                return [tuple(row) for row in conn.execute(
                    select(bag_task_counts).order_by(bag_task_counts.c.campaign_id))]

        held.close()
        before = rows()
        assert len(before) == 4  # (campaign, session): kept +6 and -2, emptied +3 and -3
        with pg_engine.begin() as conn:
            assert compact_bag_counts(conn) == len(before)
        after = rows()
    assert [(campaign, pid, tasks) for campaign, pid, tasks in after] == [(kept, 0, 4)]
    assert value(samples(scrape(pg_engine, clock)), "cigri_tasks_waiting") == 4


def test_resubmissions_are_counted_by_cluster_and_cause(pg_engine: Engine,
                                                        clock: FakeClock) -> None:
    """Two best-effort jobs killed by a normal user's job: the updater resubmits them and the
    scrape says so, by cause; the tasks are back in the bag."""
    with start_grid(pg_engine, clock, clusters=1, nodes=2, cores=2) as grid:
        campaign = new_campaign(grid, ["100", "101"])
        queue_tasks(grid, campaign)
        grid.runner().run(loops=1)
        grid.advance(1)
        grid.control(0).normal_user(4, 50)
        grid.advance(1)
        grid.updater().run(loops=1)
        found = samples(scrape(pg_engine, clock))
    assert value(found, "cigri_jobs_resubmitted_total", cluster="c1",
                 cause="BESTEFFORT_KILL") == 2
    assert value(found, "cigri_jobs", cluster="c1", state="event") == 2
    assert value(found, "cigri_tasks_waiting") == 2
