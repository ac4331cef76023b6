"""Parameter lines of a campaign: one task each, named by its first word, which must be unique.

Owns the streaming parse of parameter lines (`parse_param_lines`), the duplicate-name checks and
their messages (shared with storage, which finds duplicates against stored tasks in SQL), and how a
client expands a `param_file` path. Pure: the server never opens a path a user names, so the client
reads the file and hands its lines over. Also checks the JDL keys that choose the source
(`params`, `nb_jobs`, `param_file`: `parameter_source`); the rest of the JDL is
`cigri.domain.jdl`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cigri.domain.errors import DuplicateTaskNames, JDLError
from cigri.domain.jdl_settings import kind, show

MAX_NAME_LENGTH: Final = 255  # campaigns.name and parameters.name are VARCHAR(255)


@dataclass(frozen=True, kw_only=True)
class ParamRecord:
    """One parameter line: its 1-based line number, task name (first word) and the whole line."""

    line_no: int
    name: str
    param: str


def task_name(param: str) -> str:
    """The task name of a parameter line: its first whitespace-separated word ("" if blank)."""
    words = param.split(None, 1)
    return words[0] if words else ""


def parse_param_lines(lines: Iterable[str]) -> Iterator[ParamRecord]:
    """Turn parameter lines into records, streaming. Like v3, each line is stripped of surrounding
    whitespace (its newline included) and blank lines are kept as empty parameters. A line that the
    database cannot hold (a NUL character, a name over 255 characters) raises `JDLError`."""
    for line_no, raw in enumerate(lines, start=1):
        param = raw.strip()
        if "\x00" in param:
            raise JDLError(f"parameter line {line_no}: contains a NUL character")
        name = task_name(param)
        if len(name) > MAX_NAME_LENGTH:
            raise JDLError(f"parameter line {line_no}: task name '{name[:40]}...' is longer than "
                           f"{MAX_NAME_LENGTH} characters")
        yield ParamRecord(line_no=line_no, name=name, param=param)


def duplicate_task_name_errors(records: Iterable[ParamRecord], *, limit: int = 20) -> list[str]:
    """One message per task name used by more than one line, naming the lines (in memory)."""
    lines_by_name: dict[str, list[int]] = {}
    for record in records:
        lines_by_name.setdefault(record.name, []).append(record.line_no)
    duplicates = [(name, numbers) for name, numbers in lines_by_name.items() if len(numbers) > 1]
    return [duplicate_message(name, numbers) for name, numbers in duplicates[:limit]] + (
        [f"... and {len(duplicates) - limit} more duplicate task names"]
        if len(duplicates) > limit else [])


def duplicate_message(name: str, line_numbers: Iterable[int], *, existing: bool = False) -> str:
    """The message for one duplicate task name (shared with storage, which finds them in SQL)."""
    numbers = ", ".join(str(number) for number in line_numbers)
    where = "already a task of this campaign; given again at parameter line" if existing else (
        "used by parameter lines")
    return f"duplicate task name '{name}': {where} {numbers} (a task name is the first word of " \
           "its parameter line and must be unique in a campaign)"


def check_unique_task_names(lines: Iterable[str]) -> int:
    """Raise `DuplicateTaskNames` if two lines share a task name; return the number of lines."""
    records = list(parse_param_lines(lines))
    errors = duplicate_task_name_errors(records)
    if errors:
        raise DuplicateTaskNames(errors)
    return len(records)


def resolve_param_file_path(path: str, *, home: str, environ: Mapping[str, str]) -> str:
    """Expand a `param_file` path the way v3 did, but with the *submitter's* home and environment
    (the client calls this): `~` and `{HOME}` become `home`, `$VAR`/`${VAR}` come from `environ`."""
    expanded = path.replace("{HOME}", home).replace("~", home)
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        variable = match.group(1) or match.group(2)
        if variable not in environ:
            missing.append(variable)
            return match.group(0)
        return environ[variable]

    expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, expanded)
    if missing:
        raise JDLError([f"param_file: environment variable ${name} is not defined"
                        for name in missing])
    return expanded


def parameter_source(
    top: Mapping[str, Any], jobs_type: str, errors: list[str],
) -> tuple[tuple[str, ...] | None, int | None, str | None]:
    """(params, nb_jobs, param_file) of a JDL's top level: at most one is set, `params` winning
    over `nb_jobs` over `param_file` (v3); problems are appended to `errors`."""
    params: tuple[str, ...] | None = None
    nb_jobs: int | None = None
    param_file: str | None = None
    if "params" in top:
        params = _inline_params(top["params"], errors)
    if "nb_jobs" in top:
        raw = top["nb_jobs"]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            errors.append(f"nb_jobs: must be a JSON integer >= 0, not {show(raw)}")
        else:
            nb_jobs = raw
    if "param_file" in top:
        raw = top["param_file"]
        if not isinstance(raw, str) or not raw.strip():
            errors.append(f"param_file: must be a non-empty string (a path), not {show(raw)}")
        else:
            param_file = raw
    if not ({"params", "nb_jobs", "param_file"} & top.keys()) and jobs_type != "desktop_computing":
        errors.append("No parameters for your campaign are defined. You must define params, "
                      "param_file or nb_jobs")
    if params is not None:  # params win over nb_jobs and param_file (v3)
        return params, None, None
    if nb_jobs is not None:
        return None, nb_jobs, None
    return None, None, param_file


def _inline_params(raw: Any, errors: list[str]) -> tuple[str, ...] | None:
    if not isinstance(raw, list):
        errors.append(f"params: must be an array of strings, not {kind(raw)}")
        return None
    lines: list[str] = []
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            errors.append(f"params[{index}]: must be a string, not {kind(item)}")
        elif "\n" in item or "\r" in item:
            errors.append(f"params[{index}]: a parameter is one line; it contains a line break")
        else:
            lines.append(item)
    if len(lines) != len(raw):
        return None
    try:
        records = list(parse_param_lines(lines))
    except JDLError as error:
        errors.extend(f"params: {message}" for message in error.errors)
        return None
    errors.extend(f"params: {message}" for message in duplicate_task_name_errors(records))
    return tuple(record.param for record in records)
