"""The JDL (campaign description): parsing, validation, defaults, precedence, macros, parameters.

Owns the rules of `cigri-v3-user.md` §1, with the fixes of issue 2: booleans may be JSON booleans
or strings, `prologue`/`epilogue` a string or a list, unknown keys and clusters are errors named
with their key path, duplicate task names are reported with their line numbers, and every problem
is collected before one `JDLError` is raised. Pure: the server never opens a path a user names, so
a `param_file` is read by the client, which hands its lines to `parse_param_lines`.

Does not own storage of campaigns (`cigri.storage.campaigns`) or admission rules.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cigri.domain.errors import DuplicateTaskNames, JDLError
from cigri.domain.night import NIGHTLY, SEMI_BEST_EFFORT, may_submit_normal_jobs

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

# The per-cluster keys v3 persists in campaign_properties (everything else lives only in the JDL).
PROPERTY_KEYS: Final = (
    "checkpointing_type", "dimensional_grouping", "epilogue", "exec_file", "output_destination",
    "output_file", "output_gathering_method", "prologue", "properties", "resources",
    "temporal_grouping", "walltime", "type", "test_mode", "max_jobs", "prologue_walltime",
    "epilogue_walltime", "project", "exec_directory", "cluster_job_type",
)
# Campaign-wide properties, stored with a NULL cluster id.
CAMPAIGN_PROPERTY_KEYS: Final = ("max_resubmissions",)

JOBS_TYPES: Final = frozenset({"normal", "desktop_computing"})
BEST_EFFORT_TYPES: Final = frozenset({"best-effort", "besteffort"})
NORMAL_TYPE: Final = "normal"
# Types whose jobs follow the cluster's night window (`cigri.domain.night`).
TIMED_TYPES: Final = frozenset({SEMI_BEST_EFFORT, NIGHTLY})

MAX_NAME_LENGTH: Final = 255  # campaigns.name and parameters.name are VARCHAR(255)
_WALLTIME_RE: Final = re.compile(r"^\d+(:\d+){0,2}$")
# Bounds on numbers a user gives (issue 16): beyond them a value is a mistake or an attack, and
# would overflow the integers the engine and OAR keep.
MAX_WALLTIME_SECONDS: Final = 366 * 24 * 3600
MAX_RESUBMISSIONS: Final = 1000
MAX_JOBS_LIMIT: Final = 2**31 - 1
MAX_TOP_LEVEL_KEYS: Final = 200
_TRUE: Final = "true"
_FALSE: Final = "false"


@dataclass(frozen=True, kw_only=True)
class JDLDefaults:
    """Server-side defaults (cigri.conf `DEFAULT_JOB_*`, `DEFAULT_MAX_RESUBMISSIONS`)."""

    resources: str = "/resource_id=1"
    walltime: str = "01:00:00"
    max_resubmissions: int = 5


# Built-in per-cluster defaults (v3 jdl-parser.rb); resources and walltime come from JDLDefaults.
_BUILTIN_DEFAULTS: Final[Mapping[str, str]] = {
    "type": "best-effort",
    "exec_directory": "$HOME",
    "output_gathering_method": "None",
    "dimensional_grouping": _FALSE,
    "temporal_grouping": _FALSE,
    "checkpointing_type": "None",
    "test_mode": _FALSE,
    "properties": "",
    "project": "",
    "cluster_job_type": "",
}


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """The settings of a campaign on one cluster, after defaults, precedence and macros."""

    name: str
    exec_file: str
    exec_directory: str
    resources: str
    walltime: str
    type: str
    properties: str
    project: str
    cluster_job_type: str
    prologue: tuple[str, ...] = ()
    epilogue: tuple[str, ...] = ()
    prologue_walltime: str | None = None
    epilogue_walltime: str | None = None
    max_jobs: int | None = None  # None: unlimited
    is_test_mode: bool = False
    has_temporal_grouping: bool = False
    temporal_grouping: str = _FALSE  # "true", "false" or "auto"
    has_dimensional_grouping: bool = False
    checkpointing_type: str = "None"
    output_gathering_method: str = "None"
    output_file: str | None = None
    output_destination: str | None = None

    @property
    def is_best_effort(self) -> bool:
        """Every job best-effort: not test mode (normal jobs), and neither `normal` nor a timed
        type (`nightly`, `semi-best-effort`: normal jobs at night)."""
        return not self.is_test_mode and self.type in BEST_EFFORT_TYPES

    @property
    def needs_normal_authorisation(self) -> bool:
        """It can submit normal jobs outside test mode: the admission rule of `normal` applies
        (test mode is exempt, v3)."""
        return may_submit_normal_jobs(self.type, is_test=self.is_test_mode)

    def as_jdl(self) -> dict[str, Any]:
        """The cluster's entry in the expanded JDL (booleans as "true"/"false", lines as lists)."""
        out: dict[str, Any] = {
            "exec_file": self.exec_file,
            "exec_directory": self.exec_directory,
            "resources": self.resources,
            "walltime": self.walltime,
            "type": self.type,
            "properties": self.properties,
            "project": self.project,
            "cluster_job_type": self.cluster_job_type,
            "test_mode": _bool_text(self.is_test_mode),
            "temporal_grouping": self.temporal_grouping,
            "dimensional_grouping": _bool_text(self.has_dimensional_grouping),
            "checkpointing_type": self.checkpointing_type,
            "output_gathering_method": self.output_gathering_method,
        }
        optional: dict[str, Any] = {
            "prologue": list(self.prologue) or None,
            "epilogue": list(self.epilogue) or None,
            "prologue_walltime": self.prologue_walltime,
            "epilogue_walltime": self.epilogue_walltime,
            "max_jobs": self.max_jobs,
            "output_file": self.output_file,
            "output_destination": self.output_destination,
        }
        out.update({key: value for key, value in optional.items() if value is not None})
        return out

    def property_row(self) -> dict[str, str]:
        """The `campaign_properties` of this cluster as v3 stores them: every value a string."""
        entry = self.as_jdl()
        row: dict[str, str] = {}
        for key in PROPERTY_KEYS:
            value = entry.get(key)
            if value is None:
                continue
            row[key] = "\n".join(value) if isinstance(value, list) else str(value)
        return row


@dataclass(frozen=True, kw_only=True)
class CampaignSpec:
    """A validated, expanded JDL. Parameters are a source, expanded lazily by `parameter_lines`."""

    name: str
    jobs_type: str
    max_resubmissions: int
    clusters: tuple[ClusterSpec, ...]
    params: tuple[str, ...] | None = None  # inline `params`, which win over the others
    nb_jobs: int | None = None
    param_file: str | None = None  # a path the client reads; never opened by the server
    warnings: tuple[str, ...] = field(default=())

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(cluster.name for cluster in self.clusters)

    @property
    def needs_param_file(self) -> bool:
        return self.params is None and self.nb_jobs is None and self.param_file is not None

    @property
    def jdl(self) -> dict[str, Any]:
        """The expanded JDL for storage: defaults filled, globals pushed into the clusters, and
        no parameters (they live in the `parameters` table; `nb_jobs` and `param_file` are gone)."""
        return {
            "name": self.name,
            "jobs_type": self.jobs_type,
            "max_resubmissions": self.max_resubmissions,
            "clusters": {cluster.name: cluster.as_jdl() for cluster in self.clusters},
        }

    def campaign_properties(self) -> dict[str | None, dict[str, str]]:
        """Property rows by cluster name; the `None` key holds the campaign-wide ones."""
        rows: dict[str | None, dict[str, str]] = {
            None: {"max_resubmissions": str(self.max_resubmissions)}}
        rows.update({cluster.name: cluster.property_row() for cluster in self.clusters})
        return rows

    def parameter_lines(self, param_file_lines: Iterable[str] | None = None) -> Iterator[str]:
        """The parameter lines, lazily: `params`, else `nb_jobs`, else the (client-read) file.

        `param_file_lines` are the raw lines of `param_file`; each is stripped, as v3 does.
        """
        if self.params is not None:
            return iter(self.params)
        if self.nb_jobs is not None:
            return (str(index) for index in range(self.nb_jobs))
        if self.param_file is not None:
            if param_file_lines is None:
                raise JDLError(f"param_file: '{self.param_file}' must be read by the client and "
                               "its lines sent as parameters; the server never opens user paths")
            return (line.strip() for line in param_file_lines)
        return iter(())


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


def parse_jdl(
    source: str | bytes | Mapping[str, Any],
    *,
    defaults: JDLDefaults,
    known_clusters: Collection[str] | None = None,
) -> CampaignSpec:
    """Parse, validate and expand a JDL (JSON text or an already-decoded mapping).

    `known_clusters` are the cluster names of this grid (`None`: do not check). Every problem is
    collected; if there is any, raises `JDLError` whose `.errors` name each one and where it is.
    """
    errors: list[str] = []
    document = _decode(source, errors)
    if document is None:
        raise JDLError(errors)
    top = _lowercase_keys(document, errors)
    _check_top_level_keys(top, errors)

    name = _campaign_name(top, errors)
    jobs_type = _jobs_type(top, errors)
    max_resubmissions = _max_resubmissions(top, defaults, errors)
    params, nb_jobs, param_file = _parameter_source(top, jobs_type, errors)

    globals_ = {key: value for key, value in top.items() if key in CLUSTER_KEYS}
    clusters = _clusters(top, globals_, defaults, known_clusters, errors)
    warnings: tuple[str, ...] = ()  # every documented type is implemented

    if errors:
        raise JDLError(errors)
    return CampaignSpec(name=name, jobs_type=jobs_type, max_resubmissions=max_resubmissions,
                        clusters=tuple(clusters), params=params, nb_jobs=nb_jobs,
                        param_file=param_file, warnings=warnings)


def _decode(source: str | bytes | Mapping[str, Any], errors: list[str]) -> Mapping[str, Any] | None:
    if isinstance(source, Mapping):
        return source
    try:
        document = json.loads(source, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as error:
        errors.append(f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}")
        return None
    except _DuplicateKey as error:
        errors.append(f"JDL badly defined: key '{error.args[0]}' appears twice in one object")
        return None
    except (UnicodeDecodeError, RecursionError) as error:
        errors.append(f"JDL badly defined: {error}")
        return None
    if not isinstance(document, dict):
        errors.append(f"JDL badly defined: the JDL must be a JSON object, not {_kind(document)}")
        return None
    return document


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _lowercase_keys(document: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """v3 lowercases top-level keys (only those); two spellings of one key are an error."""
    top: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in document.items():
        lowered = str(key).lower()
        if lowered in top:
            errors.append(f"key '{lowered}' is given twice (as '{spelled[lowered]}' and '{key}')")
            continue
        top[lowered] = value
        spelled[lowered] = str(key)
    return top


def _check_top_level_keys(top: Mapping[str, Any], errors: list[str]) -> None:
    if len(top) > MAX_TOP_LEVEL_KEYS:
        errors.append(f"the JDL has {len(top)} top-level keys; at most {MAX_TOP_LEVEL_KEYS} "
                      "are allowed")
        return
    for key in top:
        if key not in GLOBAL_KEYS and key not in CLUSTER_KEYS:
            errors.append(f"unknown key '{key}'{_suggest(key, GLOBAL_KEYS | CLUSTER_KEYS)}")


def _campaign_name(top: Mapping[str, Any], errors: list[str]) -> str:
    if "name" not in top:
        errors.append("JDL file does not contain mandatory field 'name'")
        return ""
    name = top["name"]
    if not isinstance(name, str) or not name.strip():
        errors.append(f"name: must be a non-empty string, not {_kind(name)}")
        return ""
    if len(name) > MAX_NAME_LENGTH:
        errors.append(f"name: longer than {MAX_NAME_LENGTH} characters")
    return name


def _jobs_type(top: Mapping[str, Any], errors: list[str]) -> str:
    jobs_type = top.get("jobs_type", "normal")
    if not isinstance(jobs_type, str) or jobs_type not in JOBS_TYPES:
        errors.append(f"jobs_type: must be one of {_listing(JOBS_TYPES)}, not {_show(jobs_type)}")
        return "normal"
    if jobs_type == "desktop_computing":
        errors.append("jobs_type: desktop_computing campaigns are not supported")
    return jobs_type


def _max_resubmissions(top: Mapping[str, Any], defaults: JDLDefaults, errors: list[str]) -> int:
    if "max_resubmissions" not in top:
        return defaults.max_resubmissions
    value = _non_negative_integer(top["max_resubmissions"])
    if value is not None and value > MAX_RESUBMISSIONS:
        errors.append(f"max_resubmissions: must be at most {MAX_RESUBMISSIONS}, not {value}")
        return defaults.max_resubmissions
    if value is None:
        errors.append("max_resubmissions: must be an integer >= 0, not "
                      f"{_show(top['max_resubmissions'])}")
        return defaults.max_resubmissions
    return value


def _parameter_source(
    top: Mapping[str, Any], jobs_type: str, errors: list[str],
) -> tuple[tuple[str, ...] | None, int | None, str | None]:
    params: tuple[str, ...] | None = None
    nb_jobs: int | None = None
    param_file: str | None = None
    if "params" in top:
        params = _params(top["params"], errors)
    if "nb_jobs" in top:
        raw = top["nb_jobs"]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            errors.append(f"nb_jobs: must be a JSON integer >= 0, not {_show(raw)}")
        else:
            nb_jobs = raw
    if "param_file" in top:
        raw = top["param_file"]
        if not isinstance(raw, str) or not raw.strip():
            errors.append(f"param_file: must be a non-empty string (a path), not {_show(raw)}")
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


def _params(raw: Any, errors: list[str]) -> tuple[str, ...] | None:
    if not isinstance(raw, list):
        errors.append(f"params: must be an array of strings, not {_kind(raw)}")
        return None
    lines: list[str] = []
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            errors.append(f"params[{index}]: must be a string, not {_kind(item)}")
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


def _clusters(
    top: Mapping[str, Any],
    globals_: Mapping[str, Any],
    defaults: JDLDefaults,
    known_clusters: Collection[str] | None,
    errors: list[str],
) -> list[ClusterSpec]:
    if "clusters" not in top:
        errors.append("JDL file does not contain mandatory field 'clusters'")
        return []
    raw = top["clusters"]
    if not isinstance(raw, Mapping):
        errors.append(f"clusters: must be an object {{cluster name: settings}}, not {_kind(raw)}")
        return []
    if not raw:
        errors.append('You must define at least one cluster in the "clusters" field')
        return []
    if len(raw) > MAX_TOP_LEVEL_KEYS:
        errors.append(f"clusters: {len(raw)} clusters; at most {MAX_TOP_LEVEL_KEYS} are allowed")
        return []
    global_settings = _validated_settings(globals_, "", errors)
    clusters: list[ClusterSpec] = []
    for cluster_name, settings in raw.items():
        path = f"clusters.{cluster_name}"
        if known_clusters is not None and cluster_name not in known_clusters:
            errors.append(f"{path}: unknown cluster '{cluster_name}'"
                          f"{_suggest(cluster_name, known_clusters)}; known clusters: "
                          f"{_listing(known_clusters) or 'none'}")
        if not isinstance(settings, Mapping):
            errors.append(f"{path}: must be an object of cluster settings, not {_kind(settings)}")
            continue
        if len(settings) > MAX_TOP_LEVEL_KEYS:
            errors.append(f"{path}: {len(settings)} keys; at most {MAX_TOP_LEVEL_KEYS} are allowed")
            continue
        for key in settings:
            if key in GLOBAL_KEYS:
                errors.append(f"{path}.{key}: '{key}' is campaign-wide; set it at the top level")
            elif key not in CLUSTER_KEYS:
                errors.append(f"{path}: unknown key '{key}'{_suggest(key, CLUSTER_KEYS)}")
        own = _validated_settings(
            {k: v for k, v in settings.items() if k in CLUSTER_KEYS}, f"{path}.", errors)
        merged = {**_BUILTIN_DEFAULTS, "resources": defaults.resources,
                  "walltime": defaults.walltime, **global_settings, **own}
        if "exec_file" not in merged:
            errors.append(f"{path}: mandatory key 'exec_file' is missing (set it in the cluster "
                          "or at the top level)")
            continue
        clusters.append(_cluster_spec(str(cluster_name), merged))
    return clusters


def _validated_settings(raw: Mapping[str, Any], prefix: str, errors: list[str]) -> dict[str, Any]:
    """Check and normalise per-cluster values: strings, walltimes, booleans, lines, max_jobs."""
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if key in STRING_KEYS:
            if not isinstance(value, str):
                errors.append(f"{where}: must be a string, not {_kind(value)}")
            elif key in {"exec_file", "resources"} and not value.strip():
                errors.append(f"{where}: must not be empty")
            elif key == "type" and value not in (
                    BEST_EFFORT_TYPES | TIMED_TYPES | {NORMAL_TYPE}):
                errors.append(f"{where}: must be one of "
                              f"{_listing(BEST_EFFORT_TYPES | TIMED_TYPES | {NORMAL_TYPE})}"
                              f", not {_show(value)}")
            else:
                settings[key] = value
        elif key in WALLTIME_KEYS:
            text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
            if not isinstance(text, str) or not _WALLTIME_RE.match(text.strip()):
                errors.append(f"{where}: must be a walltime such as \"01:30:00\" or \"300\" "
                              f"(seconds), not {_show(value)}")
            elif _walltime_seconds(text.strip()) > MAX_WALLTIME_SECONDS:
                errors.append(f"{where}: must be at most {MAX_WALLTIME_SECONDS} seconds (366 "
                              f"days), not {_show(value)}")
            else:
                settings[key] = text.strip()
        elif key in BOOLEAN_KEYS:
            flag = _boolean(value)
            if key == "temporal_grouping" and str(value).strip().lower() == "auto":
                settings[key] = "auto"  # grouped once it pays (cigri.domain.batches)
            elif flag is None:
                errors.append(f"{where}: must be true or false (a JSON boolean or the string "
                              f"\"true\"/\"false\"), not {_show(value)}")
            else:
                settings[key] = _bool_text(flag)
        elif key in LINES_KEYS:
            lines = _lines(value)
            if lines is None:
                errors.append(f"{where}: must be a string or an array of strings, not "
                              f"{_kind(value)}")
            else:
                settings[key] = lines
        elif key == "max_jobs":
            number = _non_negative_integer(value)
            if number is None:
                errors.append(f"{where}: must be an integer >= 0 (or a numeric string), not "
                              f"{_show(value)}")
            elif number > MAX_JOBS_LIMIT:
                errors.append(f"{where}: must be at most {MAX_JOBS_LIMIT}, not {_show(value)}")
            else:
                settings[key] = number
    return settings


def _cluster_spec(name: str, merged: Mapping[str, Any]) -> ClusterSpec:
    """Apply the macros (§1.7) to validated, merged settings and build the ClusterSpec."""
    return ClusterSpec(
        name=name,
        exec_file=_expand_command(merged["exec_file"]),
        exec_directory=_expand_home(merged["exec_directory"], "$HOME"),
        resources=merged["resources"],
        walltime=merged["walltime"],
        type=merged["type"],
        properties=merged["properties"],
        project=merged["project"],
        cluster_job_type=merged["cluster_job_type"],
        prologue=tuple(_expand_script_line(line) for line in merged.get("prologue", ())),
        epilogue=tuple(_expand_script_line(line) for line in merged.get("epilogue", ())),
        prologue_walltime=merged.get("prologue_walltime"),
        epilogue_walltime=merged.get("epilogue_walltime"),
        max_jobs=merged.get("max_jobs"),
        is_test_mode=merged["test_mode"] == _TRUE,
        has_temporal_grouping=merged["temporal_grouping"] == _TRUE,
        temporal_grouping=merged["temporal_grouping"],
        has_dimensional_grouping=merged["dimensional_grouping"] == _TRUE,
        checkpointing_type=merged["checkpointing_type"],
        output_gathering_method=merged["output_gathering_method"],
        output_file=merged.get("output_file"),
        output_destination=merged.get("output_destination"),
    )


def _expand_home(text: str, home: str) -> str:
    return text.replace("{HOME}", home).replace("~", home)


def _expand_command(text: str) -> str:
    # v3: `{CAMPAIGN_ID}` in exec_file becomes the escaped variable, expanded on the cluster from
    # the `export CIGRI_CAMPAIGN_ID=<id>;` prefix of the command.
    return _expand_home(text, "$HOME").replace("{CAMPAIGN_ID}", "\\$CIGRI_CAMPAIGN_ID")


def _expand_script_line(line: str) -> str:
    return (_expand_home(line, "\\$HOME")
            .replace("{CAMPAIGN_ID}", "\\$CIGRI_CAMPAIGN_ID")
            .replace("{OAR_JOB_ID}", "\\$OAR_JOB_ID"))


def _walltime_seconds(text: str) -> int:
    """Seconds of a walltime as OAR reads it: hours, hours:minutes or hours:minutes:seconds."""
    fields = [int(part) for part in text.split(":")]
    seconds = 0
    for value in fields:
        seconds = seconds * 60 + value
    return seconds * {1: 3600, 2: 60}.get(len(fields), 1)  # OAR: "h", "h:m", "h:m:s"


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {_TRUE, _FALSE}:
        return value.strip().lower() == _TRUE
    return None


def _bool_text(flag: bool) -> str:
    return _TRUE if flag else _FALSE


def _lines(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return tuple(value.splitlines())
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return tuple(value)
    return None


def _non_negative_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else _kind(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _listing(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word.lower(), list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
