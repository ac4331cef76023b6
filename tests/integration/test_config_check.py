"""`cigri config check` is honest (issue 10, point 4): it connects to the configured database and
says whether the schema is at this version's revision; `cigri status` says when nothing has ever
run, naming the database it read."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cigri.cli.admin import cli
from cigri.storage.migrate import head_revision, upgrade


def test_config_check_connects_and_reports_the_current_schema(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIGRI_DATABASE_URL", db_url)
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert f"schema at revision {head_revision()} (current)" in result.output


def test_config_check_fails_on_an_old_schema(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0002")
    monkeypatch.setenv("CIGRI_DATABASE_URL", url)
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 1
    assert "is at schema revision 0002" in str(result.exception) + result.output


def test_status_says_nothing_has_run_on_which_database(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIGRI_DATABASE_URL", db_url)
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 1
    assert result.output.startswith("nothing has run yet on ")
    assert "no daemon has ever reported a heartbeat" in result.output
