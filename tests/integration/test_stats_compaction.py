"""Folding `campaign_cluster_event_counts` (one row per campaign, cluster and database session) into
one row per (campaign, cluster): `cigri maintenance` does it and reports how many rows it folded,
/stats shows the same figures before and after, and the fold neither waits for nor loses the
counts of transactions writing at the same time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Connection, Engine, delete, func, select, text

from cigri.cli.admin import cli
from cigri.domain.clock import FakeClock
from cigri.storage import stats
from cigri.storage.events import record_event
from cigri.storage.tables import campaign_cluster_event_counts, campaigns, events
from tests.integration.api_helpers import Api, jdl, make_api

NOW = datetime(2026, 1, 10, 12, 0, 30, tzinfo=UTC)
DEADLINE_SECONDS = 60.0
DAHU, LUKE = 1, 2  # the clusters make_api adds


def _rows(engine: Engine) -> list[tuple[int, int, int, int, int]]:
    counts = campaign_cluster_event_counts
    with engine.begin() as conn:
        return [tuple(row) for row in conn.execute(
            select(counts.c.campaign_id, counts.c.cluster_id, counts.c.backend_pid,
                   counts.c.failures, counts.c.resubmissions).order_by(*counts.primary_key))]


def _fail(conn: Connection, campaign_id: int, cluster_id: int | None,
          code: str = "EXIT_ERROR") -> None:
    record_event(conn, class_="job", code=code, campaign_id=campaign_id, cluster_id=cluster_id,
                 now=NOW)


def _pid(conn: Connection) -> int:
    """The session's backend pid (on an idle connection, whose transaction it ends)."""
    pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    conn.rollback()
    return pid


def _maintenance(url: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["maintenance", "--no-purge", "--no-usage", "--json"],
                                env={"CIGRI_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.output)
    assert report["errors"] == []
    return report


def _shown(api: Api, campaign_ids: list[int]) -> list[Any]:
    return [api.call("GET", f"/campaigns/{campaign_id}/stats").get_json()
            for campaign_id in campaign_ids]


def _totals(engine: Engine, campaign_id: int) -> tuple[int, int]:
    with engine.begin() as conn:
        whole = stats.campaign_cluster_stats(conn, campaign_id, now=NOW, window_seconds=3600)[-1]
    return whole.failures, whole.resubmissions


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def test_maintenance_folds_the_rows_and_stats_show_the_same_figures(
        pg_url: str, pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    first, second = api.submit(jdl("first")), api.submit(jdl("second"))
    for campaign_id, cluster_id in ((first, DAHU), (first, LUKE), (second, DAHU)):
        api.add_job(campaign_id, param_id=None, cluster_id=cluster_id, state="terminated")
    # Three sessions at once, so three backend pids, each adding to the same pairs.
    with pg_engine.connect() as a, pg_engine.connect() as b, pg_engine.connect() as c:
        assert len({_pid(a), _pid(b), _pid(c)}) == 3
        with a.begin():
            _fail(a, first, DAHU)
            _fail(a, first, LUKE, "RESUBMIT")
            _fail(a, second, None, "WALLTIME")
        with b.begin():
            _fail(b, first, DAHU)
            _fail(b, first, DAHU, "RESUBMIT")
            _fail(b, second, DAHU)
        with c.begin():  # takes one of a's away: c's row goes negative
            c.execute(delete(events).where(events.c.id == select(func.min(events.c.id)).where(
                events.c.campaign_id == first, events.c.cluster_id == DAHU,
                events.c.code == "EXIT_ERROR").scalar_subquery()))
            _fail(c, second, DAHU)
    before_rows = _rows(pg_engine)
    before = _shown(api, [first, second])
    assert len(before_rows) == 7

    report = _maintenance(pg_url)

    assert report["event_counts_folded"] == 7
    after_rows = _rows(pg_engine)
    pairs = sorted({(campaign, cluster) for campaign, cluster, *_ in before_rows})
    assert [(campaign, cluster, pid) for campaign, cluster, pid, *_ in after_rows] == [
        (campaign, cluster, 0) for campaign, cluster in pairs]
    assert _shown(api, [first, second]) == before
    assert (_totals(pg_engine, first), _totals(pg_engine, second)) == ((1, 2), (3, 0))

    # Nothing new: nothing folded. New events add a session row, folded into the same row.
    assert _maintenance(pg_url)["event_counts_folded"] == 0
    with pg_engine.begin() as conn:
        _fail(conn, first, DAHU)
    assert _maintenance(pg_url)["event_counts_folded"] == 1
    assert len(_rows(pg_engine)) == len(pairs)
    assert _totals(pg_engine, first) == (2, 2)


def test_maintenance_folds_nothing_on_sqlite(sqlite_url: str) -> None:
    assert _maintenance(sqlite_url)["event_counts_folded"] == 0


def test_fold_skips_a_row_a_running_transaction_holds(pg_engine: Engine,
                                                      clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    campaign_id = api.submit(jdl())
    with pg_engine.connect() as writer, pg_engine.connect() as other, pg_engine.connect() as folder:
        with writer.begin():
            _fail(writer, campaign_id, DAHU)
        with other.begin():
            _fail(other, campaign_id, DAHU)
        with writer.begin():
            _fail(writer, campaign_id, DAHU)  # holds its row until it commits
            with folder.begin():
                # Waiting for the writer would fail here instead of hanging.
                folder.execute(text("SET LOCAL lock_timeout = '5s'"))
                assert stats.compact_event_counts(folder) == 1
        assert _totals(pg_engine, campaign_id) == (3, 0)
        with folder.begin():
            assert stats.compact_event_counts(folder) == 1
    assert [row[2:] for row in _rows(pg_engine)] == [(0, 3, 0)]
    assert _totals(pg_engine, campaign_id) == (3, 0)


def test_writer_meeting_a_row_being_folded_waits_and_counts_afresh(
        pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    campaign_id = api.submit(jdl())
    with pg_engine.connect() as writer, pg_engine.connect() as folder:
        with writer.begin():
            _fail(writer, campaign_id, DAHU)
            _fail(writer, campaign_id, DAHU, "RESUBMIT")
        writer_pid = _pid(writer)
        failures: list[BaseException] = []

        def write() -> None:
            try:
                with writer.begin():
                    _fail(writer, campaign_id, DAHU)
            except BaseException as error:  # reported by the main thread
                failures.append(error)

        def writer_waits_for_a_lock() -> bool:
            with pg_engine.connect() as probe:
                return bool(probe.execute(text(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": writer_pid}).scalar())

        with folder.begin():
            assert stats.compact_event_counts(folder) == 1  # deletes the writer's row
            thread = threading.Thread(target=write)
            thread.start()
            _wait_for(writer_waits_for_a_lock, "the writer to wait for the folded row")
        thread.join(DEADLINE_SECONDS)
        assert not thread.is_alive() and failures == []
    assert [row[2:] for row in _rows(pg_engine)] == [(0, 1, 1), (writer_pid, 1, 0)]
    assert _totals(pg_engine, campaign_id) == (2, 1)


def test_fold_skips_a_campaign_being_deleted(pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    going, staying = api.submit(jdl("going")), api.submit(jdl("staying"))
    with pg_engine.begin() as conn:
        _fail(conn, going, DAHU)
        _fail(conn, staying, DAHU)
    with pg_engine.connect() as purge, pg_engine.connect() as folder, purge.begin():
        purge.execute(delete(campaigns).where(campaigns.c.id == going))
        with folder.begin():
            folder.execute(text("SET LOCAL lock_timeout = '5s'"))
            assert stats.compact_event_counts(folder) == 1
    assert [row[:3] for row in _rows(pg_engine)] == [(staying, DAHU, 0)]
    assert _totals(pg_engine, staying) == (1, 0)
