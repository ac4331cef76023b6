"""Issue 16 point 4: schemathesis fuzzes every operation of `/openapi.json` as an authenticated user.

Each operation gets `CIGRI_FUZZ_EXAMPLES` generated requests (50 by default; derandomized, so a
run is repeatable) that fit the description, and half as many that do not (negative mode), on a grid
with a campaign, tasks, jobs and events; every answer must be below 500 and conform to the
description (documented status code and content type; for fitting requests, the body schema). The
counts are printed (examples run, 5xx seen) so CI logs show them.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, insert

from cigri.api.openapi import ROUTES
from cigri.domain.clock import FakeClock
from cigri.storage.tables import events
from cigri.storage.tokens import create_token
from tests.integration.api_helpers import jdl, make_api

EXAMPLES = int(os.environ.get("CIGRI_FUZZ_EXAMPLES", "50"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
ADMIN_OPERATIONS = {"POST /events"}


@pytest.mark.timeout(300)  # about 30 s at the default 50 examples; a loaded CI machine is slower
def test_no_operation_answers_a_5xx_or_off_its_description(
        pg_engine: Engine, clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    api = make_api(pg_engine, clock, MAX_TASKS_PER_CAMPAIGN=2000, MAX_TASKS_PER_USER=5000)
    campaign_id = api.submit(jdl(nb_jobs=5))
    api.add_job(campaign_id, param_id=None, cluster_id=1, state="terminated", tag="prologue")
    with api.engine.begin() as conn:
        conn.execute(insert(events).values(class_="cluster", code="MANUAL", state="open",
                                           cluster_id=1, date_open=clock.now()))
        bearer = {user: create_token(conn, grid_user=user, now=clock.now())[1]
                  for user in ("alice", "root")}
    schema = schemathesis.openapi.from_wsgi("/openapi.json", api.app)
    examples: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(result.ok(), mode, bearer, examples, statuses)

    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    with capsys.disabled():
        print(f"\nschemathesis: {len(examples)} operations, {sum(examples.values())} examples "
              f"run, {server_errors} 5xx; statuses {dict(sorted(statuses.items()))}")
    assert server_errors == 0
    # schemathesis leaves out the operation that serves the description itself.
    missing = {f"{method.upper()} {path}" for path, method, *_ in ROUTES
               if path != "/openapi.json"} - set(examples)
    assert missing == set(), "operations never fuzzed"


def _fuzz(operation: Any, mode: GenerationMode, bearer: dict[str, str], examples: Counter[str],
          statuses: Counter[int]) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    user = "root" if label in ADMIN_OPERATIONS else "alice"

    @settings(max_examples=EXAMPLES if mode is GenerationMode.POSITIVE else EXAMPLES // 2,
              deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        # The caller is `user` (by a real token), not the generated credentials.
        case.headers = {key: value for key, value in (case.headers or {}).items()
                        if key.lower() not in {"authorization", "x-cigri-user"}}
        response = case.call(headers={"Authorization": f"Bearer {bearer[user]}"})
        examples[label] += 1
        statuses[response.status_code] += 1
        # Data off the description (negative mode) must be refused, never a 5xx.
        case.validate_response(response, checks=CHECKS if mode is GenerationMode.POSITIVE
                               else NEGATIVE_CHECKS)

    fuzz()
