"""`cigri.domain.event_codes.EventCode`: the one vocabulary of event codes. Its values are stored
and shown to users (never renamed); rule sets hold members; a misspelt code fails the type check."""

from __future__ import annotations

from pathlib import Path

from mypy import api as mypy_api

from cigri.domain import colombo, failures, notifications
from cigri.domain.event_codes import EventCode

RULE_SETS = {
    "colombo.BLACKLISTING_CLUSTER_CODES": colombo.BLACKLISTING_CLUSTER_CODES,
    "colombo.USER_SPECIFIC_CODES": colombo.USER_SPECIFIC_CODES,
    "colombo.TRANSIENT_CODES": colombo.TRANSIENT_CODES,
    "colombo.AUTOFIX_CODES": colombo.AUTOFIX_CODES,
    "colombo.RESUBMIT_CODES": colombo.RESUBMIT_CODES,
    "colombo.NON_BLACKLISTING_JOB_CODES": colombo.NON_BLACKLISTING_JOB_CODES,
    "colombo.NEVER_CLOSED_BY_FIX": colombo.NEVER_CLOSED_BY_FIX,
    "failures.BUDGETED_EVENT_CODES": failures.BUDGETED_EVENT_CODES,
    "failures.EXIT_ERROR_CODES": failures.EXIT_ERROR_CODES,
    "notifications.INTERNAL_CODES": notifications.INTERNAL_CODES,
    "notifications.AGGREGATED_CODES": notifications.AGGREGATED_CODES,
    "notifications.HIGH_LOG_CODES": notifications.HIGH_LOG_CODES,
    "notifications.MEDIUM_CODES": notifications.MEDIUM_CODES,
    "notifications.LOW_CODES": notifications.LOW_CODES,
}


def test_every_code_is_stored_as_its_v3_name() -> None:
    assert all(code.value == code.name for code in EventCode)
    assert f"{EventCode.BLACKLIST}@3" == "BLACKLIST@3" and EventCode.EXIT_ERROR == "EXIT_ERROR"


def test_rule_sets_are_frozensets_of_members() -> None:
    for name, rule in RULE_SETS.items():
        assert isinstance(rule, frozenset), name
        assert all(type(code) is EventCode for code in rule), name


def test_a_misspelt_code_fails_the_type_check(tmp_path: Path) -> None:
    snippet = tmp_path / "typo.py"
    snippet.write_text(
        "from datetime import datetime\n"
        "from sqlalchemy import Connection\n"
        "from cigri.domain.states import EventClass\n"
        "from cigri.storage.events import record_event\n"
        "def f(conn: Connection, now: datetime) -> int:\n"
        "    return record_event(conn, class_=EventClass.JOB, code='EXIT_EROR', now=now)\n")
    out, _err, status = mypy_api.run([str(snippet), "--ignore-missing-imports",
                                      "--follow-imports=silent"])
    assert status == 1 and 'Argument "code" to "record_event" has incompatible type' in out
