"""The JDL rules of cigri-v3-user.md §1, with the fixes of issue 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cigri.domain.errors import JDLError
from cigri.domain.jdl import PROPERTY_KEYS, CampaignSpec, JDLDefaults, parse_jdl

DATA = Path(__file__).parent.parent / "data" / "jdl"
INVALID = json.loads((DATA / "invalid" / "expected.json").read_text())
DEFAULTS = JDLDefaults(resources="core=1", walltime="00:30:00", max_resubmissions=7)


def _jdl(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"name": "n", "nb_jobs": 2, "exec_file": "run",
                                "clusters": {"dahu": {}}}
    document.update(overrides)
    return {key: value for key, value in document.items() if value is not None}


def _parse(document: dict[str, Any] | str, **kwargs: Any) -> CampaignSpec:
    return parse_jdl(document, defaults=DEFAULTS, **kwargs)


def _errors(document: dict[str, Any] | str, **kwargs: Any) -> list[str]:
    with pytest.raises(JDLError) as caught:
        _parse(document, **kwargs)
    return caught.value.errors


def _cluster(document: dict[str, Any], name: str = "dahu") -> dict[str, Any]:
    return _parse(document).jdl["clusters"][name]


# ---------------------------------------------------------------- §1.12 examples


@pytest.mark.parametrize("filename", [
    pytest.param("povray_demo.json", id="documentation-example"),
    pytest.param("readme_example.json", id="readme-example"),
    pytest.param("minimal.json", id="minimal-api-test"),
])
def test_documented_examples_are_accepted(filename: str) -> None:
    spec = _parse((DATA / filename).read_text())
    assert spec.clusters


def test_documentation_example_expands_as_v3_does() -> None:
    spec = _parse((DATA / "povray_demo.json").read_text())
    luke, cecic = (spec.jdl["clusters"][name] for name in ("luke", "ceciccluster"))
    assert luke["walltime"] == "00:5:00" and cecic["walltime"] == "00:10:00"
    assert luke["properties"] == "host != 'luke20'" and cecic["properties"] == ""
    assert luke["project"] == "test" and cecic["project"] == ""
    assert cecic["resources"] == "core=1"
    assert luke["exec_file"] == "$HOME/povray/start.bash"
    assert luke["exec_directory"] == "$HOME/povray/{CAMPAIGN_ID}"
    assert luke["prologue"][3] == "mkdir -p \\$HOME/povray/\\$CIGRI_CAMPAIGN_ID"
    assert luke["epilogue"] == ["rm -rf \\$HOME/povray"]
    assert spec.needs_param_file and spec.param_file == "{HOME}/povray_params2.txt"
    assert "param_file" not in spec.jdl


def test_readme_example_keeps_per_cluster_settings() -> None:
    spec = _parse((DATA / "readme_example.json").read_text())
    by_name = {cluster.name: cluster for cluster in spec.clusters}
    assert by_name["fukushima"].max_jobs == 50
    assert by_name["tchernobyl"].exec_file == "$HOME/test2.sh"
    assert by_name["fukushima"].exec_file == "$HOME/test.sh"
    assert by_name["fukushima"].is_test_mode and not by_name["fukushima"].is_best_effort
    assert by_name["windscale"].has_temporal_grouping
    assert list(spec.parameter_lines()) == ["obiwan1 1", "obiwan2 2", "obiwan3 3"]


# ---------------------------------------------------------------- §1.11 malformed JDLs


@pytest.mark.parametrize("filename", [
    pytest.param(name, id=name.removesuffix(".json"))
    for name, case in INVALID.items() if not case.get("cli_only")
])
def test_malformed_jdl_is_rejected_with_a_message_naming_the_problem(filename: str) -> None:
    case = INVALID[filename]
    known = case["clusters"].split(",") if "clusters" in case else None
    errors = _errors((DATA / "invalid" / filename).read_text(), known_clusters=known)
    assert any(case["message"] in error for error in errors), errors


def test_every_error_is_reported_at_once() -> None:
    errors = _errors({"nb_jobs": "3", "foo": 1, "clusters": {"a": {"test_mode": 2}}})
    assert len(errors) == 5, errors
    assert {error.split(":")[0] for error in errors} >= {
        "nb_jobs", "clusters.a.test_mode", "clusters.a"}


# ---------------------------------------------------------------- §1.1 format and parsing


def test_top_level_keys_are_lowercased() -> None:
    spec = _parse({"Name": "n", "NB_JOBS": 1, "Exec_File": "e", "Clusters": {"dahu": {}}})
    assert (spec.name, spec.nb_jobs, spec.clusters[0].exec_file) == ("n", 1, "e")


def test_a_key_given_twice_with_different_case_is_an_error() -> None:
    assert "key 'name' is given twice (as 'name' and 'NAME')" in _errors(_jdl(NAME="m"))


def test_a_key_given_twice_in_json_is_an_error() -> None:
    errors = _errors('{"name": "a", "name": "b", "nb_jobs": 1, "clusters": {}}')
    assert errors == ["JDL badly defined: key 'name' appears twice in one object"]


def test_cluster_keys_are_not_lowercased() -> None:
    errors = _errors(_jdl(clusters={"dahu": {"Walltime": "1"}}))
    assert errors == ["clusters.dahu: unknown key 'Walltime' (did you mean 'walltime'?)"]


@pytest.mark.parametrize(("document", "expected"), [
    pytest.param(_jdl(walltim="1"), "unknown key 'walltim' (did you mean 'walltime'?)",
                 id="top-level-typo"),
    pytest.param(_jdl(clusters={"dahu": {"exec_dir": "/x"}}),
                 "clusters.dahu: unknown key 'exec_dir' (did you mean 'exec_directory'?)",
                 id="cluster-typo"),
    pytest.param(_jdl(clusters={"dahu": {"nb_jobs": 3}}),
                 "clusters.dahu.nb_jobs: 'nb_jobs' is campaign-wide; set it at the top level",
                 id="global-key-in-a-cluster"),
])
def test_unknown_keys_are_reported_by_name(document: dict[str, Any], expected: str) -> None:
    assert expected in _errors(document)


def test_global_setting_is_copied_into_every_cluster_that_lacks_it() -> None:
    spec = _parse(_jdl(walltime="00:05:00", project="p",
                       clusters={"a": {}, "b": {"walltime": "00:20:00"}}))
    walltimes = {cluster.name: cluster.walltime for cluster in spec.clusters}
    assert walltimes == {"a": "00:05:00", "b": "00:20:00"}
    assert {cluster.project for cluster in spec.clusters} == {"p"}
    assert "walltime" not in spec.jdl and "project" not in spec.jdl


@pytest.mark.parametrize(("document", "expected"), [
    pytest.param(_jdl(), "00:30:00", id="default-from-configuration"),
    pytest.param(_jdl(walltime="00:10:00"), "00:10:00", id="global-beats-default"),
    pytest.param(_jdl(walltime="00:10:00", clusters={"dahu": {"walltime": "00:02:00"}}),
                 "00:02:00", id="cluster-beats-global"),
])
def test_precedence_is_cluster_then_global_then_default(
        document: dict[str, Any], expected: str) -> None:
    assert _cluster(document)["walltime"] == expected


def test_unknown_clusters_are_reported_by_name() -> None:
    errors = _errors(_jdl(clusters={"dahu": {}, "lukee": {}}), known_clusters={"dahu", "luke"})
    assert errors == ["clusters.lukee: unknown cluster 'lukee' (did you mean 'luke'?); known "
                      "clusters: dahu, luke"]


def test_cluster_names_are_not_checked_when_none_are_known() -> None:
    assert _parse(_jdl(clusters={"anything": {}}), known_clusters=None).cluster_names == (
        "anything",)


def test_no_known_cluster_at_all() -> None:
    assert _errors(_jdl(), known_clusters=()) == [
        "clusters.dahu: unknown cluster 'dahu'; known clusters: none"]


@pytest.mark.parametrize(("source", "expected"), [
    pytest.param("[1, 2]", "JDL badly defined: the JDL must be a JSON object, not an array",
                 id="not-an-object"),
    pytest.param("", "invalid JSON at line 1, column 1: Expecting value", id="empty"),
    pytest.param('{"name": "n",\n "clusters": {}\n "nb_jobs": 1}',
                 "invalid JSON at line 3, column 2: Expecting ',' delimiter", id="syntax-error"),
    pytest.param(b"\xff\xfe{", "JDL badly defined:", id="not-utf8"),
])
def test_unparsable_jdl(source: str, expected: str) -> None:
    assert _errors(source)[0].startswith(expected)


# ---------------------------------------------------------------- §1.2 key reference


@pytest.mark.parametrize(("document", "expected"), [
    pytest.param(_jdl(name=None), "JDL file does not contain mandatory field 'name'",
                 id="name-missing"),
    pytest.param(_jdl(name=""), "name: must be a non-empty string, not a string", id="name-empty"),
    pytest.param(_jdl(name="x" * 256), "name: longer than 255 characters", id="name-too-long"),
    pytest.param(_jdl(clusters=None), "JDL file does not contain mandatory field 'clusters'",
                 id="clusters-missing"),
    pytest.param(_jdl(clusters=["dahu"]),
                 "clusters: must be an object {cluster name: settings}, not an array",
                 id="clusters-not-object"),
    pytest.param(_jdl(clusters={"dahu": "e"}),
                 "clusters.dahu: must be an object of cluster settings, not a string",
                 id="cluster-settings-not-object"),
    pytest.param(_jdl(exec_file=None), "clusters.dahu: mandatory key 'exec_file' is missing "
                 "(set it in the cluster or at the top level)", id="exec-file-missing"),
    pytest.param(_jdl(exec_file=" "), "exec_file: must not be empty", id="exec-file-empty"),
    pytest.param(_jdl(nb_jobs=None), "No parameters for your campaign are defined. You must "
                 "define params, param_file or nb_jobs", id="no-parameters"),
    pytest.param(_jdl(nb_jobs="10"), 'nb_jobs: must be a JSON integer >= 0, not "10"',
                 id="nb-jobs-string"),
    pytest.param(_jdl(nb_jobs=-1), "nb_jobs: must be a JSON integer >= 0, not -1",
                 id="nb-jobs-negative"),
    pytest.param(_jdl(nb_jobs=2.5), "nb_jobs: must be a JSON integer >= 0, not 2.5",
                 id="nb-jobs-float"),
    pytest.param(_jdl(nb_jobs=True), "nb_jobs: must be a JSON integer >= 0, not true",
                 id="nb-jobs-boolean"),
    pytest.param(_jdl(params="a b"), "params: must be an array of strings, not a string",
                 id="params-not-array"),
    pytest.param(_jdl(params=["a", 2]), "params[1]: must be a string, not an integer",
                 id="params-item-not-string"),
    pytest.param(_jdl(params=["a\nb"]),
                 "params[0]: a parameter is one line; it contains a line break",
                 id="params-line-break"),
    pytest.param(_jdl(param_file=3), "param_file: must be a non-empty string (a path), not 3",
                 id="param-file-not-string"),
    pytest.param(_jdl(jobs_type="huge"),
                 'jobs_type: must be one of desktop_computing, normal, not "huge"',
                 id="jobs-type-unknown"),
    pytest.param(_jdl(jobs_type="desktop_computing"),
                 "jobs_type: desktop_computing campaigns are not supported",
                 id="desktop-computing"),
    pytest.param(_jdl(resources=""), "resources: must not be empty", id="resources-empty"),
    pytest.param(_jdl(resources=1), "resources: must be a string, not an integer",
                 id="resources-not-string"),
    pytest.param(_jdl(walltime="one hour"), 'walltime: must be a walltime such as "01:30:00" or '
                 '"300" (seconds), not "one hour"', id="walltime-malformed"),
    pytest.param(_jdl(clusters={"dahu": {"prologue_walltime": "1h"}}),
                 "clusters.dahu.prologue_walltime: must be a walltime", id="prologue-walltime"),
    pytest.param(_jdl(type="whenever"), "type: must be one of best-effort, besteffort, nightly, "
                 'normal, semi-best-effort, not "whenever"', id="type-unknown"),
    pytest.param(_jdl(max_jobs=-2), "max_jobs: must be an integer >= 0 (or a numeric string), "
                 "not -2", id="max-jobs-negative"),
    pytest.param(_jdl(max_jobs="many"), "max_jobs: must be an integer >= 0", id="max-jobs-text"),
    pytest.param(_jdl(prologue=["ok", 1]), "prologue: must be a string or an array of strings, "
                 "not an array", id="prologue-mixed"),
    pytest.param(_jdl(epilogue={"a": 1}), "epilogue: must be a string or an array of strings",
                 id="epilogue-object"),
    pytest.param(_jdl(temporal_grouping="maybe"), "temporal_grouping: must be true or false",
                 id="boolean-bad-string"),
    pytest.param(_jdl(dimensional_grouping=1), "dimensional_grouping: must be true or false",
                 id="boolean-number"),
    pytest.param(_jdl(max_resubmissions=-1), "max_resubmissions: must be an integer >= 0, not -1",
                 id="max-resubmissions-negative"),
    pytest.param(_jdl(params=["a", "b", "a"]), "params: duplicate task name 'a': used by "
                 "parameter lines 1, 3", id="duplicate-task-name"),
    pytest.param(_jdl(params=["x" * 256]), "params: parameter line 1: task name", id="long-name"),
])
def test_invalid_value_is_reported_with_its_key(document: dict[str, Any], expected: str) -> None:
    errors = _errors(document)
    assert any(error.startswith(expected) for error in errors), errors


def test_params_win_over_nb_jobs_and_param_file() -> None:
    spec = _parse(_jdl(params=["a 1", "b 2"], nb_jobs=5, param_file="p.txt"))
    assert (spec.params, spec.nb_jobs, spec.param_file) == (("a 1", "b 2"), None, None)
    assert list(spec.parameter_lines()) == ["a 1", "b 2"]


def test_nb_jobs_wins_over_param_file() -> None:
    spec = _parse(_jdl(nb_jobs=3, param_file="p.txt"))
    assert not spec.needs_param_file
    assert list(spec.parameter_lines()) == ["0", "1", "2"]


def test_nb_jobs_zero_gives_an_empty_campaign() -> None:
    assert list(_parse(_jdl(nb_jobs=0)).parameter_lines()) == []


def test_nb_jobs_expands_lazily() -> None:
    lines = _parse(_jdl(nb_jobs=10**12)).parameter_lines()
    assert [next(lines), next(lines)] == ["0", "1"]


def test_param_file_is_read_by_the_client_and_stripped() -> None:
    spec = _parse(_jdl(nb_jobs=None, param_file="~/p.txt"))
    assert spec.needs_param_file
    assert list(spec.parameter_lines(["  a 1 \n", "\n", "b\t2\r\n"])) == ["a 1", "", "b\t2"]


def test_param_file_is_never_opened_by_the_server() -> None:
    spec = _parse(_jdl(nb_jobs=None, param_file="/etc/shadow"))
    with pytest.raises(JDLError, match="must be read by the client"):
        spec.parameter_lines()


def test_jobs_type_defaults_to_normal() -> None:
    assert _parse(_jdl()).jobs_type == "normal"


def test_builtin_defaults_fill_every_cluster() -> None:
    assert _cluster(_jdl()) == {
        "exec_file": "run", "exec_directory": "$HOME", "resources": "core=1",
        "walltime": "00:30:00", "type": "best-effort", "properties": "", "project": "",
        "cluster_job_type": "", "test_mode": "false", "temporal_grouping": "false",
        "dimensional_grouping": "false", "checkpointing_type": "None",
        "output_gathering_method": "None",
    }


@pytest.mark.parametrize(("value", "is_best_effort"), [
    pytest.param("best-effort", True, id="best-effort"),
    pytest.param("besteffort", True, id="besteffort"),
    pytest.param("normal", False, id="normal"),
    pytest.param("semi-best-effort", False, id="semi-best-effort-normal-at-night"),
    pytest.param("nightly", False, id="nightly-normal-at-night"),
])
def test_type(value: str, is_best_effort: bool) -> None:
    spec = _parse(_jdl(type=value))
    assert spec.clusters[0].is_best_effort is is_best_effort
    assert spec.clusters[0].needs_normal_authorisation is not is_best_effort
    assert spec.warnings == ()


def test_test_mode_needs_no_normal_authorisation() -> None:
    cluster = _parse(_jdl(type="normal", test_mode="true")).clusters[0]
    assert not cluster.is_best_effort and not cluster.needs_normal_authorisation


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(True, "true", id="json-true"),
    pytest.param(False, "false", id="json-false"),
    pytest.param("true", "true", id="string-true"),
    pytest.param("False", "false", id="string-false-any-case"),
])
@pytest.mark.parametrize("key", ["test_mode", "temporal_grouping", "dimensional_grouping"])
def test_booleans_accept_json_booleans_and_strings(key: str, value: Any, expected: str) -> None:
    assert _cluster(_jdl(**{key: value}))[key] == expected


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(["a", "b"], ["a", "b"], id="array"),
    pytest.param("a\nb", ["a", "b"], id="string-with-lines"),
    pytest.param("single command", ["single command"], id="string"),
])
@pytest.mark.parametrize("key", ["prologue", "epilogue"])
def test_prologue_and_epilogue_accept_a_string_or_a_list(
        key: str, value: Any, expected: list[str]) -> None:
    spec = _parse(_jdl(**{key: value}))
    assert _cluster(_jdl(**{key: value}))[key] == expected
    assert spec.campaign_properties()["dahu"][key] == "\n".join(expected)


def test_empty_prologue_is_no_prologue() -> None:
    spec = _parse(_jdl(prologue=[]))
    assert spec.clusters[0].prologue == ()
    assert "prologue" not in spec.campaign_properties()["dahu"]


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(50, 50, id="integer"),
    pytest.param("50", 50, id="numeric-string"),
    pytest.param(0, 0, id="zero"),
])
def test_max_jobs(value: Any, expected: int) -> None:
    spec = _parse(_jdl(max_jobs=value))
    assert spec.clusters[0].max_jobs == expected
    assert spec.campaign_properties()["dahu"]["max_jobs"] == str(expected)


def test_max_jobs_absent_means_unlimited() -> None:
    spec = _parse(_jdl())
    assert spec.clusters[0].max_jobs is None
    assert "max_jobs" not in spec.campaign_properties()["dahu"]


def test_integer_walltime_is_seconds() -> None:
    assert _cluster(_jdl(walltime=300))["walltime"] == "300"


def test_stored_only_keys_are_kept() -> None:
    document = _jdl(output_file="out", output_destination="host:/d", checkpointing_type="blcr",
                    output_gathering_method="collector")
    row = _parse(document).campaign_properties()["dahu"]
    assert (row["output_file"], row["output_destination"]) == ("out", "host:/d")
    assert (row["checkpointing_type"], row["output_gathering_method"]) == ("blcr", "collector")


def test_property_rows_hold_only_the_v3_property_keys_as_strings() -> None:
    rows = _parse(_jdl(test_mode=True, max_jobs=3, prologue=["a", "b"])).campaign_properties()
    assert set(rows["dahu"]) <= set(PROPERTY_KEYS)
    assert all(isinstance(value, str) for value in rows["dahu"].values())
    assert rows["dahu"]["test_mode"] == "true"
    assert rows["dahu"]["prologue"] == "a\nb"


@pytest.mark.parametrize(("document", "expected"), [
    pytest.param(_jdl(), 7, id="default-from-configuration"),
    pytest.param(_jdl(max_resubmissions=0), 0, id="zero-means-never"),
    pytest.param(_jdl(max_resubmissions="12"), 12, id="numeric-string"),
])
def test_max_resubmissions_is_a_campaign_wide_budget(
        document: dict[str, Any], expected: int) -> None:
    spec = _parse(document)
    assert spec.max_resubmissions == expected
    assert spec.jdl["max_resubmissions"] == expected
    assert spec.campaign_properties()[None] == {"max_resubmissions": str(expected)}


# ---------------------------------------------------------------- §1.3 the stored JDL


def test_stored_jdl_is_expanded_and_carries_no_parameters() -> None:
    stored = _parse(_jdl(walltime="00:01:00", nb_jobs=4)).jdl
    assert set(stored) == {"name", "jobs_type", "max_resubmissions", "clusters"}
    assert stored["clusters"]["dahu"]["walltime"] == "00:01:00"
    json.dumps(stored)  # storable as is


def test_a_mapping_is_accepted_as_well_as_text() -> None:
    assert _parse(json.dumps(_jdl())) == _parse(_jdl())


# ---------------------------------------------------------------- §1.7 macros


@pytest.mark.parametrize(("key", "value", "expected"), [
    pytest.param("exec_file", "{HOME}/run", "$HOME/run", id="exec-file-home"),
    pytest.param("exec_file", "~/a/~/b", "$HOME/a/$HOME/b", id="exec-file-every-tilde"),
    pytest.param("exec_file", "run {CAMPAIGN_ID}", "run \\$CIGRI_CAMPAIGN_ID",
                 id="exec-file-campaign-id"),
    pytest.param("exec_directory", "~/d/{CAMPAIGN_ID}", "$HOME/d/{CAMPAIGN_ID}",
                 id="exec-directory-keeps-campaign-id-for-submission"),
    pytest.param("prologue", ["cd {HOME}", "echo {CAMPAIGN_ID} {OAR_JOB_ID} ~"],
                 ["cd \\$HOME", "echo \\$CIGRI_CAMPAIGN_ID \\$OAR_JOB_ID \\$HOME"],
                 id="prologue-lines"),
    pytest.param("epilogue", ["rm -rf ~/x"], ["rm -rf \\$HOME/x"], id="epilogue-lines"),
    pytest.param("resources", "{HOME}~", "{HOME}~", id="not-in-resources"),
    pytest.param("properties", "x='~'", "x='~'", id="not-in-properties"),
    pytest.param("project", "{CAMPAIGN_ID}", "{CAMPAIGN_ID}", id="not-in-project"),
])
def test_macros(key: str, value: Any, expected: Any) -> None:
    assert _cluster(_jdl(**{key: value}))[key] == expected


def test_macros_do_not_touch_name_or_params() -> None:
    spec = _parse(_jdl(name="~{HOME}", params=["~ {CAMPAIGN_ID}"]))
    assert spec.name == "~{HOME}"
    assert list(spec.parameter_lines()) == ["~ {CAMPAIGN_ID}"]


# ---------------------------------------------------------------- §1.8 test mode


def test_test_mode_submits_normal_jobs() -> None:
    cluster = _parse(_jdl(test_mode="true", type="best-effort")).clusters[0]
    assert cluster.is_test_mode and not cluster.is_best_effort
