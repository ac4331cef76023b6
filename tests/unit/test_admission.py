"""Admission rules (`cigri.domain.admission`): which campaigns the `normal_authorized` rule refuses
at submission, and whom the runner lets run normal jobs."""

from __future__ import annotations

import json

import pytest

from cigri.domain.admission import (
    AdmissionRefused,
    AdmissionRule,
    check_admission,
    may_run_normal_jobs,
)
from cigri.domain.jdl import CampaignSpec, JDLDefaults, parse_jdl

RULES = [AdmissionRule(id=1, rule="normal_authorized", value=json.dumps({"dahu": ["bob"]}))]


def _spec(**cluster: str) -> CampaignSpec:
    return parse_jdl({"name": "n", "nb_jobs": 1, "clusters": {"dahu": {"exec_file": "e",
                                                                       **cluster}}},
                     defaults=JDLDefaults(), known_clusters=["dahu"])


@pytest.mark.parametrize("kind", ["normal", "nightly", "semi-best-effort"])
def test_every_type_that_can_run_normal_jobs_is_checked(kind: str) -> None:
    with pytest.raises(AdmissionRefused, match="not authorized to launch non best-effort jobs "
                                               "on cluster dahu"):
        check_admission(_spec(type=kind), grid_user="alice", rules=RULES)
    check_admission(_spec(type=kind), grid_user="bob", rules=RULES)


@pytest.mark.parametrize("kind", ["best-effort", "normal", "nightly"])
def test_best_effort_and_test_mode_are_not_checked(kind: str) -> None:
    test = "false" if kind == "best-effort" else "true"
    check_admission(_spec(type=kind, test_mode=test), grid_user="alice",
                    rules=RULES)


def test_may_run_normal_jobs() -> None:
    assert not may_run_normal_jobs("alice", "dahu", RULES)
    assert may_run_normal_jobs("bob", "dahu", RULES)
    assert may_run_normal_jobs("alice", "luke", RULES)  # no list: open to everyone
    assert may_run_normal_jobs("alice", "dahu", [])
