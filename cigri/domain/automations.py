"""Automation rules (issue 13): what a rule is, how its JSON or TOML definition is validated, and
the pure decisions a rule pass makes (does this event, this metric, this silence fire the rule; is
the rule cooling down; which campaigns does it cover).

A rule has one trigger, one or more actions, a scope and a cooldown:

- triggers: `event` (an event of a code or class opened, or closed, on a campaign), `state` (a
  campaign became terminated, cancelled, paused or resumed: the events those changes record),
  `cluster` (a cluster the campaign runs on was blacklisted, came under stress, or is back: the
  cluster events Colombo and the updater record), `metric` (over a window, from the maintained
  counters: failure or resubmission rate above a threshold, throughput below one, the ETA later
  than a date, one cluster's share of the failures above a threshold) and `silence` (no task
  finished for N minutes while the campaign is in treatment);
- actions: `notify` (a `notify` event the notifier turns into messages), `pause`, `resume`,
  `cancel`, `fix` (with `resubmit`, as `gridevents -f [-r]`), `blacklist` (the campaign on a
  cluster: the one named, or the trigger's), `add_tasks` (parameters given in the rule: the server
  reads no file for a rule; `gridrule add` reads a `params_file` on the client, as the user);
- scope: one campaign (`campaign`), the owner's campaigns (`mine`), those whose name matches a
  shell pattern (`name`), and for an admin every campaign (`all`).

Pure: no I/O. Storage (`cigri.storage.automations`) reads and writes the rows; the automations
daemon (`cigri.daemons.automations`) composes them.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from cigri.domain.errors import CigriError
from cigri.domain.event_codes import EventCode
from cigri.domain.states import EventClass

RULE_FIRED: Final = EventCode.RULE_FIRED  # the campaign event recording a firing (class `campaign`)
RULE_NOTIFY: Final = EventCode.RULE_NOTIFY  # the `notify` event of a notify action

TRIGGER_KINDS: Final = ("event", "state", "cluster", "metric", "silence")
ACTION_KINDS: Final = ("notify", "pause", "resume", "cancel", "fix", "blacklist", "add_tasks")
RATE_METRICS: Final = ("failure_rate", "resubmission_rate", "cluster_error_share")
METRICS: Final = (*RATE_METRICS, "throughput", "eta")
# A cluster trigger waits for whole-cluster events (no campaign): (codes, opened or closed).
CLUSTER_CODES: Final = {"blacklisted": (("BLACKLIST",), "open"),
                        "stressed": (("UNDER_STRESS",), "open"),
                        "back": (("BLACKLIST", "UNDER_STRESS"), "close")}
# A campaign state change is the event the change records (campaign id on it).
STATE_CODES: Final = {"terminated": "FINISHED_CAMPAIGN", "cancelled": "USER_FRAG",
                      "paused": "PAUSED", "resumed": "RESUMED"}
MAX_ACTIONS: Final = 10
MAX_NAME: Final = 255
MAX_MESSAGE: Final = 2000
MAX_RULE_TASKS: Final = 10_000  # parameters an add_tasks action carries


class DefinitionError(CigriError):
    """A rule's or a schedule's definition that cannot be used; `problems` lists every reason,
    one a line."""

    what = "definition"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"invalid {self.what}: " + "; ".join(problems))
        self.problems = problems


class RuleError(DefinitionError):
    what = "rule"


class FiringState(StrEnum):
    PENDING = "pending"  # recorded, actions not run yet
    DONE = "done"  # actions run (each one's outcome recorded)


@dataclass(frozen=True, kw_only=True)
class Trigger:
    kind: str
    codes: tuple[str, ...] = ()  # event/state: event codes (empty: any code of `class_`)
    class_: str | None = None  # event: an event class
    on: str = "open"  # event: "open" or "close"; cluster: a key of CLUSTER_CODES
    clusters: tuple[str, ...] = ()  # cluster: cluster names (empty: any)
    metric: str | None = None
    above: float = 0.0
    below: float = 0.0  # throughput: tasks per hour
    after: datetime | None = None  # eta: the date the ETA must not pass
    window: timedelta = timedelta(hours=1)
    min_samples: int = 1  # metric: finished + failed jobs in the window before it counts
    silence: timedelta = timedelta(0)

    def describe(self) -> str:
        over = f" over {_minutes(self.window)} min"
        if self.kind == "metric" and self.metric == "throughput":
            return f"throughput < {self.below:g} tasks/h{over}"
        if self.kind == "metric" and self.metric == "eta":
            return f"eta later than {self.after.isoformat() if self.after else '?'}{over}"
        if self.kind == "metric":
            return f"{self.metric} > {self.above:g}{over}"
        if self.kind == "cluster":
            return f"cluster {','.join(self.clusters) or 'any'} {self.on}"
        if self.kind == "silence":
            return f"no task finished for {_minutes(self.silence)} min"
        what = ",".join(self.codes) or f"class {self.class_}"
        return f"{self.kind} {what}" + (" closed" if self.on == "close" else "")


@dataclass(frozen=True, kw_only=True)
class Action:
    kind: str
    message: str | None = None  # notify
    to: str = "owner"  # notify: "owner" or "admins"
    resubmit: bool = False  # fix
    cluster: str | None = None  # blacklist: the cluster (None: the trigger's)
    params: tuple[str, ...] = ()  # add_tasks

    def describe(self) -> str:
        if self.kind == "fix":
            return "fix+resubmit" if self.resubmit else "fix"
        if self.kind == "blacklist":
            return f"blacklist on {self.cluster or 'the cluster'}"
        if self.kind == "add_tasks":
            return f"add {len(self.params)} tasks"
        return self.kind


@dataclass(frozen=True, kw_only=True)
class Scope:
    campaign_id: int | None = None
    name_pattern: str | None = None
    everyone: bool = False  # admin rules only: every user's campaigns

    def covers(self, *, campaign_id: int, name: str | None, grid_user: str, owner: str,
               admin: bool) -> bool:
        """Whether a campaign is in the rule's scope. A user's rule never covers another user's
        campaign; an admin's does when `all` (or a campaign id) says so."""
        if not (admin and (self.everyone or self.campaign_id is not None)) and grid_user != owner:
            return False
        if self.campaign_id is not None and campaign_id != self.campaign_id:
            return False
        return self.name_pattern is None or fnmatch.fnmatchcase(name or "", self.name_pattern)


@dataclass(frozen=True, kw_only=True)
class RuleDefinition:
    name: str
    trigger: Trigger
    actions: tuple[Action, ...]
    scope: Scope
    cooldown: timedelta = timedelta(hours=1)

    def describe_actions(self) -> str:
        return ", ".join(a.describe() for a in self.actions)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """A stored rule."""

    id: int
    owner: str
    admin: bool
    enabled: bool
    definition: RuleDefinition
    source: Mapping[str, Any] = field(default_factory=dict)  # the definition as given


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g}"


def load_definition(text: str, *, admin: bool) -> tuple[RuleDefinition, dict[str, Any]]:
    """Parse a JSON (first non-blank character `{`) or TOML rule and validate it; returns the
    definition and the plain mapping to store. Raises `RuleError` listing every problem."""
    data = parse_text(text)
    return parse_definition(data, admin=admin), data


def parse_text(text: str) -> Any:
    """The mapping of a JSON (first non-blank character `{`) or TOML text, not yet validated."""
    try:
        return json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise RuleError([f"not valid JSON or TOML: {error}"]) from None


def parse_definition(data: Any, *, admin: bool) -> RuleDefinition:
    """Validate a rule mapping; raises `RuleError` with one line per problem."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise RuleError(["a rule is an object with name, trigger, actions and scope"])
    unknown = sorted(set(data) - {"name", "trigger", "actions", "scope", "cooldown_minutes"})
    if unknown:
        problems.append(f"unknown keys: {', '.join(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        problems.append(f"name: a non-empty string of at most {MAX_NAME} characters")
        name = ""
    trigger = _parse_trigger(data.get("trigger"), problems)
    actions = _parse_actions(data.get("actions"), problems, admin=admin)
    scope = _parse_scope(data.get("scope"), problems, admin=admin)
    cooldown = _number(data, "cooldown_minutes", problems, default=60, minimum=0)
    if trigger is not None and not carries_cluster(trigger) and any(
            a.kind == "blacklist" and a.cluster is None for a in actions):
        problems.append("actions: blacklist needs a cluster unless the trigger names one "
                        "(a cluster trigger, or metric cluster_error_share)")
    if problems:
        raise RuleError(problems)
    assert trigger is not None and scope is not None
    return RuleDefinition(name=name.strip(), trigger=trigger, actions=tuple(actions), scope=scope,
                          cooldown=timedelta(minutes=cooldown))


def _number(data: Mapping[str, Any], key: str, problems: list[str], *, default: float,
            minimum: float, maximum: float | None = None, prefix: str = "") -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum or (
            maximum is not None and value > maximum):
        bound = f" and at most {maximum:g}" if maximum is not None else ""
        problems.append(f"{prefix}{key}: a number at least {minimum:g}{bound}, not {value!r}")
        return default
    return float(value)


def _parse_trigger(data: Any, problems: list[str]) -> Trigger | None:
    if not isinstance(data, Mapping) or data.get("kind") not in TRIGGER_KINDS:
        problems.append(f"trigger: an object whose kind is one of {', '.join(TRIGGER_KINDS)}")
        return None
    kind = str(data["kind"])
    allowed = {"event": {"kind", "code", "codes", "class", "on"}, "state": {"kind", "state"},
               "cluster": {"kind", "on", "cluster", "clusters"},
               "metric": {"kind", "metric", "above", "below", "after", "window_minutes",
                          "min_samples"},
               "silence": {"kind", "minutes"}}[kind]
    unknown = sorted(set(data) - allowed)
    if unknown:
        problems.append(f"trigger: unknown keys for a {kind} trigger: {', '.join(unknown)}")
    if kind == "event":
        return _event_trigger(data, problems)
    if kind == "state":
        states = data.get("state")
        states = [states] if isinstance(states, str) else states
        if not isinstance(states, list) or not states or any(s not in STATE_CODES for s in states):
            problems.append(f"trigger.state: one or a list of {', '.join(STATE_CODES)}")
            return None
        return Trigger(kind=kind, codes=tuple(STATE_CODES[s] for s in states))
    if kind == "cluster":
        return _cluster_trigger(data, problems)
    if kind == "metric":
        return _metric_trigger(data, problems)
    if "minutes" not in data:
        problems.append("trigger.minutes: required for a silence trigger")
    minutes = _number(data, "minutes", problems, default=30, minimum=1, prefix="trigger.")
    return Trigger(kind=kind, silence=timedelta(minutes=minutes))


def _cluster_trigger(data: Mapping[str, Any], problems: list[str]) -> Trigger | None:
    on = data.get("on")
    if on not in CLUSTER_CODES:
        problems.append(f"trigger.on: one of {', '.join(CLUSTER_CODES)}")
        return None
    names = data.get("clusters", [data["cluster"]] if "cluster" in data else [])
    if not isinstance(names, list) or any(not isinstance(n, str) or not n for n in names):
        problems.append("trigger.cluster(s): cluster names")
        names = []
    codes, _when = CLUSTER_CODES[str(on)]
    return Trigger(kind="cluster", on=str(on), codes=codes, clusters=tuple(names))


def _metric_trigger(data: Mapping[str, Any], problems: list[str]) -> Trigger:
    metric = data.get("metric")
    if metric not in METRICS:
        problems.append(f"trigger.metric: one of {', '.join(METRICS)}")
    # each metric's threshold: a rate `above`, a throughput `below`, a date `after`
    needed = {"throughput": "below", "eta": "after"}.get(str(metric), "above")
    misplaced = sorted({"above", "below", "after"} - {needed} & set(data))
    if misplaced:
        problems.append(f"trigger: {', '.join(misplaced)} does not apply to {metric}; "
                        f"give {needed}")
    if metric in ("throughput", "eta") and needed not in data:
        problems.append(f"trigger.{needed}: required for {metric}")
    above = _number(data, "above", problems, default=0.5, minimum=0, maximum=1, prefix="trigger.")
    below = _number(data, "below", problems, default=0, minimum=0, prefix="trigger.")
    after = None
    if metric == "eta" and "after" in data:
        after = _aware_date(data["after"])
        if after is None:
            problems.append("trigger.after: an ISO date and time with its offset, e.g. "
                            "2026-03-01T08:00+01:00")
    window = _number(data, "window_minutes", problems, default=60, minimum=1, prefix="trigger.")
    samples = _number(data, "min_samples", problems, default=1, minimum=1, prefix="trigger.")
    return Trigger(kind="metric", metric=str(metric), above=above, below=below, after=after,
                   window=timedelta(minutes=window), min_samples=int(samples))


def _aware_date(value: Any) -> datetime | None:
    try:
        found = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return found if found.tzinfo is not None else None


def _event_trigger(data: Mapping[str, Any], problems: list[str]) -> Trigger | None:
    codes = data.get("codes", [data["code"]] if "code" in data else [])
    class_ = data.get("class")
    if not isinstance(codes, list) or any(not isinstance(c, str) or not c.strip() for c in codes):
        problems.append("trigger.code(s): event codes, e.g. \"EXIT_ERROR\"")
        codes = []
    if class_ is not None and class_ not in {c.value for c in EventClass}:
        problems.append(f"trigger.class: one of {', '.join(c.value for c in EventClass)}")
    if not codes and class_ is None:
        problems.append("trigger: an event trigger needs a code, codes or a class")
    on = data.get("on", "open")
    if on not in ("open", "close"):
        problems.append("trigger.on: \"open\" or \"close\"")
    return Trigger(kind="event", codes=tuple(c.strip().upper() for c in codes),
                   class_=class_ if isinstance(class_, str) else None, on=str(on))


def _parse_actions(data: Any, problems: list[str], *, admin: bool) -> list[Action]:
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list) or not data or len(data) > MAX_ACTIONS:
        problems.append(f"actions: a list of 1 to {MAX_ACTIONS} actions")
        return []
    found = []
    for index, item in enumerate(data):
        where = f"actions[{index}]"
        if isinstance(item, str):
            item = {"do": item}
        if not isinstance(item, Mapping) or item.get("do") not in ACTION_KINDS:
            problems.append(f"{where}: an object whose do is one of {', '.join(ACTION_KINDS)}")
            continue
        kind = str(item["do"])
        allowed = {"notify": {"do", "message", "to"}, "fix": {"do", "resubmit"},
                   "blacklist": {"do", "cluster"}, "add_tasks": {"do", "params"}
                   }.get(kind, {"do"})
        if kind == "add_tasks" and "params_file" in item:
            problems.append(f"{where}.params_file: the server reads no file for a rule; give "
                            "params (gridrule add reads a params_file on your machine)")
            item = {k: v for k, v in item.items() if k != "params_file"}
        unknown = sorted(set(item) - allowed)
        if unknown:
            problems.append(f"{where}: unknown keys for {kind}: {', '.join(unknown)}")
        message = item.get("message")
        if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE):
            problems.append(f"{where}.message: a string of at most {MAX_MESSAGE} characters")
            message = None
        to = item.get("to", "owner")
        if to not in ("owner", "admins") or (to == "admins" and not admin):
            problems.append(f"{where}.to: \"owner\"" + (" or \"admins\"" if admin else ""))
        resubmit = item.get("resubmit", False)
        if not isinstance(resubmit, bool):
            problems.append(f"{where}.resubmit: true or false")
            resubmit = False
        cluster = item.get("cluster")
        if cluster is not None and (not isinstance(cluster, str) or not cluster):
            problems.append(f"{where}.cluster: a cluster name")
            cluster = None
        found.append(Action(kind=kind, message=message, to=str(to), resubmit=resubmit,
                            cluster=cluster, params=_params(item, where, problems)))
    return found


def _params(item: Mapping[str, Any], where: str, problems: list[str]) -> tuple[str, ...]:
    if item.get("do") != "add_tasks":
        return ()
    params = item.get("params")
    if (not isinstance(params, list) or not 1 <= len(params) <= MAX_RULE_TASKS
            or any(not isinstance(p, str) or not p.strip() or "\n" in p for p in params)):
        problems.append(f"{where}.params: a list of 1 to {MAX_RULE_TASKS} parameter lines")
        return ()
    return tuple(p.strip() for p in params)


def _parse_scope(data: Any, problems: list[str], *, admin: bool) -> Scope | None:
    if data is None:
        data = {"mine": True}
    if not isinstance(data, Mapping):
        problems.append("scope: an object with campaign, mine, name or (admins) all")
        return None
    unknown = sorted(set(data) - {"campaign", "mine", "name", "all"})
    if unknown:
        problems.append(f"scope: unknown keys: {', '.join(unknown)}")
    campaign = data.get("campaign")
    if campaign is not None and (isinstance(campaign, bool) or not isinstance(campaign, int)
                                 or campaign < 1):
        problems.append("scope.campaign: a campaign id")
        campaign = None
    pattern = data.get("name")
    if pattern is not None and (not isinstance(pattern, str) or not pattern
                                or len(pattern) > MAX_NAME):
        problems.append("scope.name: a shell pattern, e.g. \"nightly-*\"")
        pattern = None
    everyone = data.get("all", False)
    if everyone and not admin:
        problems.append("scope.all: only an admin's rule covers every user's campaigns")
    if not isinstance(everyone, bool):
        problems.append("scope.all: true or false")
        everyone = False
    return Scope(campaign_id=campaign, name_pattern=pattern, everyone=bool(everyone and admin))


# --- decisions ------------------------------------------------------------------------------


def event_matches(trigger: Trigger, *, code: str, class_: str) -> bool:
    """Whether an event (of a campaign) is one the trigger waits for."""
    if trigger.kind not in ("event", "state"):
        return False
    if trigger.codes and code not in trigger.codes:
        return False
    if not trigger.codes and code in (RULE_FIRED, RULE_NOTIFY):
        return False  # a rule on a whole class never fires on the rules' own events
    return trigger.class_ is None or class_ == trigger.class_


def cooling_down(rule: RuleDefinition, last_fired: datetime | None, now: datetime) -> bool:
    """A rule fires at most once per cooldown and campaign."""
    return last_fired is not None and now < last_fired + rule.cooldown


@dataclass(frozen=True, kw_only=True)
class Counters:
    """A campaign's maintained totals (`cigri.storage.stats`) at one instant."""

    terminated: int
    failures: int
    resubmissions: int
    cluster_failures: Mapping[int, int] = field(default_factory=dict)  # cluster id -> failures


def metric_value(trigger: Trigger, base: Counters, current: Counters) -> tuple[float, int]:
    """(rate, samples) between two samples of the counters: failures, or resubmissions, per job
    that ended in between (terminated, failed, or resubmitted)."""
    terminated = max(0, current.terminated - base.terminated)
    failures = max(0, current.failures - base.failures)
    resubmissions = max(0, current.resubmissions - base.resubmissions)
    samples = terminated + failures + resubmissions
    part = failures if trigger.metric == "failure_rate" else resubmissions
    return (part / samples if samples else 0.0), samples


def metric_crossed(trigger: Trigger, base: Counters, current: Counters) -> bool:
    rate, samples = metric_value(trigger, base, current)
    return samples >= trigger.min_samples and rate > trigger.above


def carries_cluster(trigger: Trigger) -> bool:
    """Whether a firing of this trigger names a cluster (for a blacklist without one)."""
    return trigger.kind == "cluster" or (trigger.kind == "metric"
                                         and trigger.metric == "cluster_error_share")


def cluster_share(trigger: Trigger, base: Mapping[int, int], current: Mapping[int, int]
                  ) -> tuple[int, float, int] | None:
    """(cluster id, share, failures) when one cluster holds more than `above` of the failures
    between two samples of the per-cluster failure counters (at least `min_samples` of them)."""
    delta = {c: max(0, n - base.get(c, 0)) for c, n in current.items()}
    failures = sum(delta.values())
    if failures < trigger.min_samples or not failures:
        return None
    cluster, count = max(sorted(delta.items()), key=lambda item: item[1])
    share = count / failures
    return (cluster, share, failures) if share > trigger.above else None


def throughput_too_low(trigger: Trigger, recent: int) -> float | None:
    """The throughput (tasks per hour over the window) when it is below the threshold."""
    rate = recent * 3600.0 / trigger.window.total_seconds()
    return rate if rate < trigger.below else None


def eta_too_late(trigger: Trigger, *, remaining: int, recent: int,
                 now: datetime) -> tuple[bool, datetime | None]:
    """Whether the ETA (remaining tasks at the window's throughput) is later than `after`, and
    the ETA (None when no task finished over the window: no ETA at all, which is late)."""
    assert trigger.after is not None
    if remaining <= 0:
        return False, None
    if recent <= 0:
        return True, None
    eta = now + trigger.window * (remaining / recent)
    return eta > trigger.after, eta


def firing_message(rule_id: int, definition: RuleDefinition, detail: str) -> str:
    """The message of the RULE_FIRED event (what gridevents shows)."""
    return (f"rule #{rule_id} ({definition.name}) fired: {detail}; actions: "
            f"{definition.describe_actions()}")
