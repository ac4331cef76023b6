"""The JDL's keys and the validation of one cluster's settings (or the global ones they inherit).

Owns which keys a JDL may hold (campaign-wide or per cluster), the kind of value each per-cluster
key takes (string, walltime, boolean, lines, `max_jobs`) and how a given value is checked and
normalised (`validated_settings`; booleans such as `temporal_grouping` in `_checked_boolean`),
with the wording of the messages that name what is wrong. Does not own defaults, precedence,
macros or the specs built from the result (`cigri.domain.jdl`), nor parameter lines
(`cigri.domain.parameters`).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from cigri.domain.night import NIGHTLY, SEMI_BEST_EFFORT

GLOBAL_KEYS: Final = frozenset(
    {"name", "clusters", "param_file", "nb_jobs", "params", "jobs_type", "max_resubmissions"})

STRING_KEYS: Final = frozenset({
    "exec_file", "exec_directory", "resources", "type", "properties", "project",
    "cluster_job_type", "checkpointing_type", "output_gathering_method", "output_file",
    "output_destination",
})
WALLTIME_KEYS: Final = frozenset({"walltime", "prologue_walltime", "epilogue_walltime"})
BOOLEAN_KEYS: Final = frozenset({"test_mode", "temporal_grouping", "dimensional_grouping"})
LINES_KEYS: Final = frozenset({"prologue", "epilogue"})
CLUSTER_KEYS: Final = STRING_KEYS | WALLTIME_KEYS | BOOLEAN_KEYS | LINES_KEYS | {"max_jobs"}

BEST_EFFORT_TYPES: Final = frozenset({"best-effort", "besteffort"})
NORMAL_TYPE: Final = "normal"
# Types whose jobs follow the cluster's night window (`cigri.domain.night`).
TIMED_TYPES: Final = frozenset({SEMI_BEST_EFFORT, NIGHTLY})

_WALLTIME_RE: Final = re.compile(r"^\d+(:\d+){0,2}$")
# Bounds on numbers a user gives (issue 16): beyond them a value is a mistake or an attack, and
# would overflow the integers the engine and OAR keep.
MAX_WALLTIME_SECONDS: Final = 366 * 24 * 3600
MAX_JOBS_LIMIT: Final = 2**31 - 1
TRUE: Final = "true"
FALSE: Final = "false"

# A check takes (key, value) and returns (normalised value, None) or (None, what is wrong).
_Check = Callable[[str, Any], tuple[Any, str | None]]


def validated_settings(raw: Mapping[str, Any], prefix: str, errors: list[str]) -> dict[str, Any]:
    """Check and normalise per-cluster values: strings, walltimes, booleans, lines, max_jobs.

    Each problem is appended to `errors`, named by `prefix` + key; a bad value is left out.
    """
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        check = _check_of(key)
        if check is None:
            continue
        normalised, problem = check(key, value)
        if problem is not None:
            errors.append(f"{prefix}{key}: {problem}")
        else:
            settings[key] = normalised
    return settings


def _check_of(key: str) -> _Check | None:
    kinds: tuple[tuple[Iterable[str], _Check], ...] = (
        (STRING_KEYS, _checked_string), (WALLTIME_KEYS, _checked_walltime),
        (BOOLEAN_KEYS, _checked_boolean), (LINES_KEYS, _checked_lines),
        (("max_jobs",), _checked_max_jobs))
    return next((check for keys, check in kinds if key in keys), None)


def _checked_string(key: str, value: Any) -> tuple[Any, str | None]:
    types = BEST_EFFORT_TYPES | TIMED_TYPES | {NORMAL_TYPE}
    if not isinstance(value, str):
        return None, f"must be a string, not {kind(value)}"
    if key in {"exec_file", "resources"} and not value.strip():
        return None, "must not be empty"
    if key == "type" and value not in types:
        return None, f"must be one of {listing(types)}, not {show(value)}"
    return value, None


def _checked_walltime(key: str, value: Any) -> tuple[Any, str | None]:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _WALLTIME_RE.match(text.strip()):
        return None, ("must be a walltime such as \"01:30:00\" or \"300\" (seconds), not "
                      f"{show(value)}")
    if _walltime_seconds(text.strip()) > MAX_WALLTIME_SECONDS:
        return None, (f"must be at most {MAX_WALLTIME_SECONDS} seconds (366 days), not "
                      f"{show(value)}")
    return text.strip(), None


def _checked_boolean(key: str, value: Any) -> tuple[Any, str | None]:
    """test_mode, temporal_grouping, dimensional_grouping: stored as "true"/"false";
    temporal_grouping may also be "auto" (grouped once it pays, `cigri.domain.batches`)."""
    if key == "temporal_grouping" and str(value).strip().lower() == "auto":
        return "auto", None
    flag = boolean(value)
    if flag is None:
        return None, ("must be true or false (a JSON boolean or the string \"true\"/\"false\"), "
                      f"not {show(value)}")
    return bool_text(flag), None


def _checked_lines(key: str, value: Any) -> tuple[Any, str | None]:
    lines = _lines(value)
    if lines is None:
        return None, f"must be a string or an array of strings, not {kind(value)}"
    return lines, None


def _checked_max_jobs(key: str, value: Any) -> tuple[Any, str | None]:
    number = non_negative_integer(value)
    if number is None:
        return None, f"must be an integer >= 0 (or a numeric string), not {show(value)}"
    if number > MAX_JOBS_LIMIT:
        return None, f"must be at most {MAX_JOBS_LIMIT}, not {show(value)}"
    return number, None


def _walltime_seconds(text: str) -> int:
    """Seconds of a walltime as OAR reads it: hours, hours:minutes or hours:minutes:seconds."""
    fields = [int(part) for part in text.split(":")]
    seconds = 0
    for value in fields:
        seconds = seconds * 60 + value
    return seconds * {1: 3600, 2: 60}.get(len(fields), 1)  # OAR: "h", "h:m", "h:m:s"


def boolean(value: Any) -> bool | None:
    """A JSON boolean or the string "true"/"false" (any case); None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {TRUE, FALSE}:
        return value.strip().lower() == TRUE
    return None


def bool_text(flag: bool) -> str:
    return TRUE if flag else FALSE


def _lines(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return tuple(value.splitlines())
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return tuple(value)
    return None


def non_negative_integer(value: Any) -> int | None:
    """An integer >= 0 from a JSON integer, a whole float or a numeric string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def kind(value: Any) -> str:
    """What a JSON value is, in words ("a string", "an array", "null")."""
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    """A value as it stands in a message: JSON for scalars (cut at 60 characters), else its kind."""
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else kind(value)
    return text if len(text) <= 60 else text[:57] + "..."


def listing(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def suggest(word: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of `choices`, or ""."""
    close = difflib.get_close_matches(word.lower(), list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
