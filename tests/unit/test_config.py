"""Settings: v3-compatible file format, environment overrides, one message per bad key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cigri.config import (
    SETTING_TYPES,
    DatabaseType,
    LogFormat,
    LogLevel,
    build_settings,
    duration_keys,
    load_settings,
)
from cigri.domain.errors import ConfigError
from cigri.domain.scheduling import Policy


def test_v3_style_file_is_read(tmp_path: Path) -> None:
    conf = tmp_path / "cigri.conf"
    conf.write_text('REMOTE_WAITING_TIMEOUT = "600"\nSTRESS_FACTOR = "0.5"\n'
                    'DATABASE_TYPE = "PostgreSQL"\nDATABASE_NAME = "grid"\n')
    settings = load_settings({"CIGRI_CONF": str(conf)})
    assert settings.REMOTE_WAITING_TIMEOUT == 600
    assert settings.STRESS_FACTOR == 0.5
    assert settings.database_url.startswith("postgresql+psycopg://cigri3@127.0.0.1:5432/grid")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "cigri.conf"
    conf.write_text("RUNNER_TAP_INCREASE_MAX = 100\n")
    settings = load_settings({"CIGRI_CONF": str(conf), "CIGRI_RUNNER_TAP_INCREASE_MAX": "7"})
    assert settings.RUNNER_TAP_INCREASE_MAX == 7


def test_every_bad_key_gets_its_own_message() -> None:
    with pytest.raises(ConfigError) as caught:
        build_settings({"STRESS_FACTR": "1", "AUTOFIX_DELAY": "soon", "REST_CLIENT_VERIFY_SSL": "maybe",
                        "RUNNER_TAP_INCREASE_FACTOR": "0.5"})
    message = caught.value.message
    assert "STRESS_FACTR: unknown key (did you mean STRESS_FACTOR?)" in message
    assert "AUTOFIX_DELAY: expected int, got 'soon'" in message
    assert "REST_CLIENT_VERIFY_SSL: expected bool, got 'maybe'" in message
    assert "RUNNER_TAP_INCREASE_FACTOR: must be >= 1" in message


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings({"CIGRI_CONF": str(tmp_path / "absent.conf")})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "cigri.conf"
    conf.write_text("KEY = unquoted value\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings({"CIGRI_CONF": str(conf)})


def test_default_database_is_the_user_level_sqlite_file() -> None:
    settings = build_settings({})
    assert settings.database_url.startswith("sqlite:///")


def test_documentation_lists_every_key() -> None:
    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    missing = [key for key in SETTING_TYPES if f"`{key}`" not in text]
    assert missing == [], "run bin/gen-config-docs"


def test_sample_configuration_lists_every_key() -> None:
    text = (Path(__file__).parents[2] / "etc" / "cigri.conf").read_text()
    assert [key for key in SETTING_TYPES if f"# {key} = " not in text] == [], "run bin/gen-config-docs"


def test_a_choice_key_refuses_an_unknown_value_naming_key_value_and_choices() -> None:
    """An unknown DATABASE_TYPE used to become the user-level SQLite file without a word."""
    with pytest.raises(ConfigError) as caught:
        build_settings({"DATABASE_TYPE": "mysql", "LOG_FORMAT": "xml", "DATABASE_SSL_MODE": "requird",
                        "METASCHEDULER_POLICY": "lottery", "LOG_LEVEL": "loud"})
    message = caught.value.message
    assert "DATABASE_TYPE: unknown value 'mysql'; expected one of PostgreSQL, SQLite (or empty)" in message
    assert "LOG_FORMAT: unknown value 'xml'; expected one of text, json" in message
    assert ("DATABASE_SSL_MODE: unknown value 'requird'; expected one of disable, allow, prefer, "
            "require, verify-ca, verify-full (or empty)") in message
    assert "METASCHEDULER_POLICY: unknown value 'lottery'; expected one of fair_share, fifo" in message
    assert "LOG_LEVEL: unknown value 'loud'; expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in message


@pytest.mark.parametrize("spelling", ["PostgreSQL", "postgresql", "Pg", "postgres", " POSTGRES "])
def test_v3_spellings_of_postgresql_are_accepted(spelling: str) -> None:
    settings = build_settings({"DATABASE_TYPE": spelling, "DATABASE_SSL_MODE": "require"})
    assert settings.DATABASE_TYPE is DatabaseType.POSTGRESQL
    assert settings.database_url == "postgresql+psycopg://cigri3@127.0.0.1:5432/cigri3?sslmode=require"


def test_sqlite_type_is_the_user_level_file_and_log_levels_take_v3_names() -> None:
    assert build_settings({"DATABASE_TYPE": "sqlite"}).database_url.startswith("sqlite:///")
    assert build_settings({"LOG_LEVEL": "warn"}).LOG_LEVEL is LogLevel.WARNING
    assert build_settings({"LOG_LEVEL": "Fatal"}).LOG_LEVEL is LogLevel.CRITICAL
    assert build_settings({"LOG_FORMAT": "JSON"}).LOG_FORMAT is LogFormat.JSON
    assert build_settings({"METASCHEDULER_POLICY": "fifo"}).METASCHEDULER_POLICY is Policy.FIFO


def test_every_duration_key_has_a_timedelta_view_built_once() -> None:
    settings = build_settings({"AUTOFIX_DELAY": "45", "LEASE_SECONDS": 12.5, "UPDATER_INTERVAL": 0.5})
    assert settings.autofix_delay == timedelta(seconds=45)
    assert settings.lease_length == timedelta(seconds=12.5)
    assert settings.updater_interval == timedelta(milliseconds=500)
    assert settings.autofix_delay is settings.autofix_delay
    views = {"LEASE_SECONDS": "lease_length"}
    for key in duration_keys():
        view = getattr(settings, views.get(key, key.lower()))
        assert view == timedelta(seconds=getattr(settings, key)), key
    assert {"REMOTE_WAITING_TIMEOUT", "EPILOGUE_BLACKLIST_TIMEOUT", "RUNNER_MIN_CYCLE_DURATION",
            "NOTIFIER_INTERVAL", "COLLECTOR_INTERVAL", "NIKITA_INTERVAL", "METASCHEDULER_INTERVAL",
            "RUNNER_TAP_GRACE_PERIOD"} <= duration_keys()
