"""Settings: v3-compatible file format, environment overrides, one message per bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cigri.config import SETTING_TYPES, build_settings, load_settings
from cigri.domain.errors import ConfigError


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
