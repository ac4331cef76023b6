"""Admission rules: checks a campaign must pass before it is accepted (v3 `admission_rules`).

v3 stored Ruby code in the database and evaluated it; here a rule names a built-in check and
carries JSON arguments, so nothing from the database is ever run. Built-in rules:

- `normal_authorized`: `{"<cluster>": ["user", ...]}`: only the listed users may run jobs that are
  not best-effort on that cluster (v3's `/etc/cigri/user_lists` `normal_authorized`). A cluster
  absent from the mapping is open to everyone. Every type that can submit a normal job passes it:
  `normal`, `nightly` and `semi-best-effort` (normal jobs at night); test mode is exempt (v3: a
  user may try a campaign, one normal job at a time, where they could not run it for real).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from cigri.domain.errors import CigriError
from cigri.domain.jdl import CampaignSpec


class AdmissionRefused(CigriError):
    """An admission rule refused the campaign."""


@dataclass(frozen=True, kw_only=True)
class AdmissionRule:
    id: int
    rule: str
    value: str | None


def check_admission(spec: CampaignSpec, *, grid_user: str, rules: Sequence[AdmissionRule]) -> None:
    """Raise AdmissionRefused naming the first rule the campaign fails (v3 message format)."""
    for rule in rules:
        if rule.rule != "normal_authorized":
            raise AdmissionRefused(f"rule {rule.id} failed: unknown rule {rule.rule!r}")
        try:
            allowed = json.loads(rule.value or "{}")
        except json.JSONDecodeError as error:
            raise AdmissionRefused(f"rule {rule.id} failed: its value is not JSON") from error
        for cluster in spec.clusters:
            users = allowed.get(cluster.name) if isinstance(allowed, dict) else None
            if not cluster.needs_normal_authorisation or users is None:
                continue
            if grid_user not in users:
                raise AdmissionRefused(
                    f"rule {rule.id} failed: You are not authorized to launch non best-effort "
                    f"jobs on cluster {cluster.name}!")


def may_run_normal_jobs(grid_user: str, cluster_name: str, rules: Sequence[AdmissionRule]) -> bool:
    """Whether `normal_authorized` lets the user run normal jobs on the cluster now. The runner
    asks it before each normal submission, so a campaign accepted before a list was set or
    after the user was removed from it runs best-effort instead (rules that do not read are
    left to the submission check)."""
    for rule in rules:
        if rule.rule != "normal_authorized":
            continue
        try:
            allowed = json.loads(rule.value or "{}")
        except json.JSONDecodeError:
            continue
        users = allowed.get(cluster_name) if isinstance(allowed, dict) else None
        if users is not None and grid_user not in users:
            return False
    return True
