"""The real OAR clusters of the integration tier answer on their REST API root."""

from __future__ import annotations

import os

import pytest
import requests

URLS = [u.strip() for u in os.environ.get("CIGRI_TEST_OAR_URLS", "").split(",") if u.strip()]


@pytest.mark.real_oar
@pytest.mark.parametrize("base_url", URLS or ["unset"], ids=lambda u: u)
def test_real_oar_api_root_answers_json(base_url: str) -> None:
    if not URLS:
        pytest.fail("CIGRI_TEST_OAR_URLS is not set: the real-OAR tier has no clusters")
    answer = requests.get(base_url, headers={"Accept": "application/json"}, timeout=30)
    assert answer.status_code == 200
    assert "api_version" in answer.json()
