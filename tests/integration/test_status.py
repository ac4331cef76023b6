"""`cigri status` reads heartbeats, flags late daemons and exits non-zero for them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from cigri.cli.admin import cli
from cigri.storage.heartbeats import record_heartbeat


def _beat(engine: Engine, name: str, age_seconds: float, interval: float = 5.0) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        record_heartbeat(conn, name=name, host="node1", pid=4242, started_at=now,
                         now=now - timedelta(seconds=age_seconds), interval_seconds=interval,
                         passes=7, failures=0)


def test_status_lists_daemons_and_succeeds_when_none_is_late(
        engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIGRI_DATABASE_URL", db_url)
    _beat(engine, "metascheduler", 1)
    _beat(engine, "runner:c1", 2)
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert "metascheduler" in result.output and "runner:c1" in result.output
    assert "LATE" not in result.output


def test_status_flags_a_daemon_silent_for_three_intervals(
        engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIGRI_DATABASE_URL", db_url)
    _beat(engine, "metascheduler", 1)
    _beat(engine, "nikita", 31, interval=10)
    result = CliRunner().invoke(cli, ["status", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["late"] == ["nikita"]
    by_name = {row["name"]: row for row in data["daemons"]}
    assert by_name["nikita"]["pid"] == 4242 and by_name["metascheduler"]["passes"] == 7


def test_status_fails_when_no_daemon_ever_reported(
        engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIGRI_DATABASE_URL", db_url)
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 1 and "no daemon" in result.output


def test_forget_drops_a_retired_daemon(engine: Engine, db_url: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIGRI_DATABASE_URL", db_url)
    _beat(engine, "metascheduler", 1)
    _beat(engine, "runner:gone", 3600)
    assert CliRunner().invoke(cli, ["status"]).exit_code == 1
    result = CliRunner().invoke(cli, ["status", "--forget", "runner:gone"])
    assert result.exit_code == 0 and "runner:gone" not in result.output
