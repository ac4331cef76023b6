"""The JDL (campaign description): parsing, defaults, precedence, macros, and the specs built.

Owns the rules of `cigri-v3-user.md` §1, with the fixes of issue 2: booleans may be JSON booleans
or strings, `prologue`/`epilogue` a string or a list, unknown keys and clusters are errors named
with their key path, duplicate task names are reported with their line numbers, and every problem
is collected before one `JDLError` is raised. Pure: the server never opens a path a user names, so
a `param_file` is read by the client, which hands its lines to `parse_param_lines`.

The keys and the check of each per-cluster value live in `cigri.domain.jdl_settings`, parameter
lines and the parameter source in `cigri.domain.parameters`; their public names are importable
from here too. Does not own storage of campaigns (`cigri.storage.campaigns`) or admission rules.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cigri.domain.errors import JDLError
from cigri.domain.jdl_settings import (
    BEST_EFFORT_TYPES,
    BOOLEAN_KEYS,
    CLUSTER_KEYS,
    FALSE,
    GLOBAL_KEYS,
    LINES_KEYS,
    MAX_JOBS_LIMIT,
    MAX_WALLTIME_SECONDS,
    NORMAL_TYPE,
    STRING_KEYS,
    TIMED_TYPES,
    TRUE,
    WALLTIME_KEYS,
    bool_text,
    kind,
    listing,
    non_negative_integer,
    show,
    suggest,
    validated_settings,
)
from cigri.domain.night import may_submit_normal_jobs
from cigri.domain.parameters import (
    MAX_NAME_LENGTH,
    ParamRecord,
    check_unique_task_names,
    duplicate_message,
    duplicate_task_name_errors,
    parameter_source,
    parse_param_lines,
    resolve_param_file_path,
    task_name,
)

# Importers of `cigri.domain.jdl` find the keys and the parameter-line helpers here too.
__all__ = [
    "BEST_EFFORT_TYPES", "BOOLEAN_KEYS", "CAMPAIGN_PROPERTY_KEYS", "CLUSTER_KEYS", "GLOBAL_KEYS",
    "JOBS_TYPES", "LINES_KEYS", "MAX_JOBS_LIMIT", "MAX_NAME_LENGTH", "MAX_RESUBMISSIONS",
    "MAX_TOP_LEVEL_KEYS", "MAX_WALLTIME_SECONDS", "NORMAL_TYPE", "PROPERTY_KEYS", "STRING_KEYS",
    "TIMED_TYPES", "WALLTIME_KEYS", "CampaignSpec", "ClusterSpec", "JDLDefaults", "ParamRecord",
    "check_unique_task_names", "duplicate_message", "duplicate_task_name_errors", "parse_jdl",
    "parse_param_lines", "resolve_param_file_path", "task_name",
]

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

MAX_RESUBMISSIONS: Final = 1000  # a bound on what a user gives (issue 16)
MAX_TOP_LEVEL_KEYS: Final = 200


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
    "dimensional_grouping": FALSE,
    "temporal_grouping": FALSE,
    "checkpointing_type": "None",
    "test_mode": FALSE,
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
    temporal_grouping: str = FALSE  # "true", "false" or "auto"
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
            "test_mode": bool_text(self.is_test_mode),
            "temporal_grouping": self.temporal_grouping,
            "dimensional_grouping": bool_text(self.has_dimensional_grouping),
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
    params, nb_jobs, param_file = parameter_source(top, jobs_type, errors)

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
        errors.append(f"JDL badly defined: the JDL must be a JSON object, not {kind(document)}")
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
            errors.append(f"unknown key '{key}'{suggest(key, GLOBAL_KEYS | CLUSTER_KEYS)}")


def _campaign_name(top: Mapping[str, Any], errors: list[str]) -> str:
    if "name" not in top:
        errors.append("JDL file does not contain mandatory field 'name'")
        return ""
    name = top["name"]
    if not isinstance(name, str) or not name.strip():
        errors.append(f"name: must be a non-empty string, not {kind(name)}")
        return ""
    if len(name) > MAX_NAME_LENGTH:
        errors.append(f"name: longer than {MAX_NAME_LENGTH} characters")
    return name


def _jobs_type(top: Mapping[str, Any], errors: list[str]) -> str:
    jobs_type = top.get("jobs_type", "normal")
    if not isinstance(jobs_type, str) or jobs_type not in JOBS_TYPES:
        errors.append(f"jobs_type: must be one of {listing(JOBS_TYPES)}, not {show(jobs_type)}")
        return "normal"
    if jobs_type == "desktop_computing":
        errors.append("jobs_type: desktop_computing campaigns are not supported")
    return jobs_type


def _max_resubmissions(top: Mapping[str, Any], defaults: JDLDefaults, errors: list[str]) -> int:
    if "max_resubmissions" not in top:
        return defaults.max_resubmissions
    value = non_negative_integer(top["max_resubmissions"])
    if value is not None and value > MAX_RESUBMISSIONS:
        errors.append(f"max_resubmissions: must be at most {MAX_RESUBMISSIONS}, not {value}")
        return defaults.max_resubmissions
    if value is None:
        errors.append("max_resubmissions: must be an integer >= 0, not "
                      f"{show(top['max_resubmissions'])}")
        return defaults.max_resubmissions
    return value


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
        errors.append(f"clusters: must be an object {{cluster name: settings}}, not {kind(raw)}")
        return []
    if not raw:
        errors.append('You must define at least one cluster in the "clusters" field')
        return []
    if len(raw) > MAX_TOP_LEVEL_KEYS:
        errors.append(f"clusters: {len(raw)} clusters; at most {MAX_TOP_LEVEL_KEYS} are allowed")
        return []
    global_settings = validated_settings(globals_, "", errors)
    clusters: list[ClusterSpec] = []
    for cluster_name, settings in raw.items():
        path = f"clusters.{cluster_name}"
        if known_clusters is not None and cluster_name not in known_clusters:
            errors.append(f"{path}: unknown cluster '{cluster_name}'"
                          f"{suggest(cluster_name, known_clusters)}; known clusters: "
                          f"{listing(known_clusters) or 'none'}")
        if not isinstance(settings, Mapping):
            errors.append(f"{path}: must be an object of cluster settings, not {kind(settings)}")
            continue
        if len(settings) > MAX_TOP_LEVEL_KEYS:
            errors.append(f"{path}: {len(settings)} keys; at most {MAX_TOP_LEVEL_KEYS} are allowed")
            continue
        for key in settings:
            if key in GLOBAL_KEYS:
                errors.append(f"{path}.{key}: '{key}' is campaign-wide; set it at the top level")
            elif key not in CLUSTER_KEYS:
                errors.append(f"{path}: unknown key '{key}'{suggest(key, CLUSTER_KEYS)}")
        own = validated_settings(
            {k: v for k, v in settings.items() if k in CLUSTER_KEYS}, f"{path}.", errors)
        merged = {**_BUILTIN_DEFAULTS, "resources": defaults.resources,
                  "walltime": defaults.walltime, **global_settings, **own}
        if "exec_file" not in merged:
            errors.append(f"{path}: mandatory key 'exec_file' is missing (set it in the cluster "
                          "or at the top level)")
            continue
        clusters.append(_cluster_spec(str(cluster_name), merged))
    return clusters


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
        is_test_mode=merged["test_mode"] == TRUE,
        has_temporal_grouping=merged["temporal_grouping"] == TRUE,
        temporal_grouping=merged["temporal_grouping"],
        has_dimensional_grouping=merged["dimensional_grouping"] == TRUE,
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
