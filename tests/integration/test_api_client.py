"""The grid tools' client configuration: v3's client file, the new keys, the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from cigri.cli.client import (
    DEFAULT_URL,
    ApiClient,
    ApiUnreachable,
    ClientConfig,
    load_client_config,
)


def test_v3_client_file_keys_still_work(tmp_path: Path) -> None:
    conf = tmp_path / "api-clients.conf"
    conf.write_text('API_HOST = "grid.example.org"\nAPI_PORT = "8443"\nAPI_BASE = "/cigri-api"\n'
                    'API_SSL = "true"\nAPI_TIMEOUT = "5" # seconds\nUNQUOTED = 3\n')
    config = load_client_config({"CIGRICONFFILE": str(conf)})
    assert config == ClientConfig(url="https://grid.example.org:8443/cigri-api", socket=None,
                                  token=None, timeout_seconds=5.0)


def test_environment_wins_and_the_socket_wins_over_the_url(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    token = tmp_path / "token"
    token.write_text("secret\n")
    conf.write_text(f'API_URL = "http://a:1"\nAPI_TOKEN_FILE = "{token}"\n')
    config = load_client_config({"CIGRI_CLIENT_CONF": str(conf)})
    assert (config.url, config.token, config.socket) == ("http://a:1", "secret", None)
    config = load_client_config({"CIGRI_CLIENT_CONF": str(conf), "CIGRI_API_URL": "http://b:2",
                                 "CIGRI_API_TOKEN": "other", "CIGRI_API_SOCKET": "/run/x.sock"})
    assert (config.url, config.token, config.socket) == ("http://b:2", "other", "/run/x.sock")
    assert load_client_config({"CIGRI_CLIENT_CONF": str(tmp_path / "none")}).url == DEFAULT_URL


def test_an_unreachable_socket_is_reported_with_its_path() -> None:
    client = ApiClient(ClientConfig(socket="/nonexistent.sock", token="t"))
    with pytest.raises(ApiUnreachable, match=r"not reachable at /nonexistent\.sock"):
        client.get("/whoami")
