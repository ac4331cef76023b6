"""Cluster tokens as cigri shows and stores them: never in clear, a pasted `Bearer ` dropped,
malformed values refused, and the event messages naming the command that fixes them."""

from __future__ import annotations

import base64
import json

import pytest

from cigri.domain.cluster_tokens import (
    ADMIN_TOKEN_MISSING,
    ADMIN_TOKEN_REJECTED,
    BadToken,
    admin_token_message,
    describe,
    mask,
    normalize_token,
    stored_value,
    user_token_message,
)


def _jwt(claims: dict[str, object]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.sig-abcdef"


def test_tokens_are_normalised_and_refused_when_they_cannot_be_one() -> None:
    assert normalize_token("  Bearer abc.def.ghi \n") == "abc.def.ghi"
    assert stored_value("abc.def.ghi") == "Bearer abc.def.ghi"
    for bad in ("", "  \n", "Bearer ", "two words", "a\nb"):
        with pytest.raises(BadToken):
            normalize_token(bad)


def test_a_token_is_shown_masked_with_its_claims_never_in_clear() -> None:
    token = _jwt({"user": "oar", "exp": 1_800_000_000})
    shown = describe(f"Bearer {token}")
    assert token not in shown and token[:-6] not in shown
    assert shown == "...abcdef (user oar, expires 2027-01-15T08:00:00Z)"
    assert mask("Bearer opaque-123456") == "...123456" and describe(None) == "none"
    assert describe("not-a-jwt-654321") == "...654321"


def test_event_messages_name_the_fix() -> None:
    assert "`cigri cluster token dahu --set - < TOKEN_FILE`" in admin_token_message(
        ADMIN_TOKEN_MISSING, "dahu", 3)
    refused = admin_token_message(ADMIN_TOKEN_REJECTED, "dahu", 3, "HTTP 401: expired")
    assert "refuses the cluster-admin token (HTTP 401: expired)" in refused
    assert "`gridtoken --admin -i 3 -t TOKEN`" in refused
    assert "`gridtoken -i 3 -t TOKEN`" in user_token_message("alice", "dahu", 3)
