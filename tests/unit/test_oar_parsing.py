"""The OAR answer parsing and the flavour payloads, against answers recorded on a real OAR 2.5.9."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cigri.domain.oar import OarState, SubmitRequest
from cigri.oar.flavours import OAR2_5, OAR3, flavour_for
from cigri.oar.parsing import (
    array_id_from_cmd_output,
    collection_items,
    epoch_to_datetime,
    error_detail,
    job_ids_from_cmd_output,
    next_link,
    parse_job,
    parse_resource,
    parse_state,
    parse_stress_factor,
)

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "oar-samples"
if not SAMPLES.is_dir():
    SAMPLES = Path("/work/shared/reference/oar-samples")


def sample(prefix: str) -> Any:
    (path,) = SAMPLES.glob(f"{prefix}-*.json")
    return json.loads(path.read_text())["response"]["json"]


def test_array_submission_ids_come_from_cmd_output_in_order() -> None:
    answer = sample("19")
    assert answer["id"] == 2
    assert job_ids_from_cmd_output(answer["cmd_output"]) == [2, 3, 4]
    assert array_id_from_cmd_output(answer["cmd_output"]) == 2


def test_simple_submission_has_one_id_and_no_array_line() -> None:
    answer = sample("07")
    assert job_ids_from_cmd_output(answer["cmd_output"]) == [answer["id"]]
    assert array_id_from_cmd_output(answer["cmd_output"]) is None


def test_negative_ids_of_a_failed_oarsub_are_not_jobs() -> None:
    assert job_ids_from_cmd_output(sample("43")["message"]) == []


def test_terminated_job() -> None:
    job = parse_job(sample("11"))
    assert job.id == 1 and job.state is OarState.TERMINATED and job.exit_code == 0
    assert job.array_id == 1 and job.array_index == 1
    assert job.owner == "testuser" and job.name == "simple"
    assert job.start_time == datetime.fromtimestamp(1795700975, tz=UTC)
    assert job.stop_time is not None and job.stop_time.tzinfo is UTC
    assert job.walltime_seconds == 120
    assert job.stdout_file == "simple.1.out" and job.launching_directory == "/home/testuser"
    assert [e.type for e in job.events] == ["SWITCH_INTO_TERMINATE_STATE"]
    assert job.events[0].date == datetime.fromtimestamp(1795700980, tz=UTC)


def test_waiting_array_element_has_no_times_and_no_exit_code() -> None:
    job = parse_job(sample("20"))
    assert job.state is OarState.WAITING
    assert job.start_time is None and job.stop_time is None  # OAR's 0
    assert job.exit_code is None and job.walltime_seconds is None
    assert job.array_index == 2 and job.command == "echo param a2 y"


def test_besteffort_kill_events_in_order() -> None:
    job = parse_job(sample("30"))
    assert job.state is OarState.ERROR and job.types == ("besteffort",)
    assert [e.type for e in job.events][1:3] == ["BESTEFFORT_KILL", "FRAG_JOB_REQUEST"]
    assert job.events[1].description == "[MetaSched] kill the besteffort job 9"
    assert "BESTEFFORT_KILL" in job.event_types and job.is_final


def test_details_collection_items_have_null_array_index() -> None:
    answer = sample("22")
    jobs = [parse_job(item) for item in collection_items(answer)]
    assert [job.id for job in jobs] == [2, 3, 4]
    assert all(job.array_index is None and job.array_id == 2 for job in jobs)


def test_details_of_a_finished_job_carry_its_resource_ids() -> None:
    job = parse_job(sample("12"))
    assert job.resource_ids and all(isinstance(i, int) for i in job.resource_ids)


def test_job_list_items_parse_with_submission_time() -> None:
    items = collection_items(sample("45"))
    jobs = [parse_job(item) for item in items]
    assert jobs[0].submission_time == datetime.fromtimestamp(1795700974, tz=UTC)
    assert jobs[4].name is None


def test_next_link_of_a_paged_collection() -> None:
    answer = sample("46")
    assert next_link(answer) == "/oarapi/jobs.json?state=Terminated&user=testuser&limit=3&offset=5"
    assert next_link(sample("24")) is None


def test_empty_collection_and_garbage() -> None:
    assert collection_items({"items": [], "total": 0, "offset": 0, "links": []}) == []
    with pytest.raises(ValueError):
        collection_items({"total": 3})
    with pytest.raises(ValueError):
        collection_items([1, 2])
    with pytest.raises(ValueError):
        parse_job({"state": "Running"})
    with pytest.raises(ValueError):
        parse_job("not a job")


def test_resources() -> None:
    resources = [parse_resource(item) for item in collection_items(sample("05"))]
    assert [r.id for r in resources] == list(range(1, 9))
    assert resources[0].state == "Alive" and resources[0].network_address == "node1"
    assert resources[0].available_upto == 2147483647
    assert resources[0].properties["besteffort"] == "YES"
    assert "links" not in resources[0].properties


def test_states_any_case_and_unknown() -> None:
    assert parse_state("Terminated") is OarState.TERMINATED
    assert parse_state("toLaunch") is OarState.TO_LAUNCH
    assert parse_state("running") is OarState.RUNNING  # g5k spells states in lower case
    assert parse_state("Zombie") is OarState.UNKNOWN


def test_integers_as_strings_and_epoch_zero() -> None:
    job = parse_job({"id": "7", "state": "Running", "exit_code": "256", "start_time": "0"})
    assert job.id == 7 and job.exit_code == 256 and job.exit_status == 1 and job.start_time is None
    assert epoch_to_datetime(None) is None


def test_oar3_job_field_names() -> None:
    job = parse_job({"id": 5, "user": "alice", "queue_name": "default", "state": "Waiting",
                     "array_id": 5, "array_index": 1, "exit_code": None})
    assert job.owner == "alice" and job.state is OarState.WAITING


def test_stress_factor() -> None:
    assert parse_stress_factor({"GLOBAL_STRESS": "0.42", "api_timestamp": 1}) == 0.42
    assert parse_stress_factor({"api_timestamp": 1}) == 0.0
    with pytest.raises(ValueError):
        parse_stress_factor({"GLOBAL_STRESS": "lots"})


def test_error_details_of_both_flavours() -> None:
    assert error_detail(sample("44")) == "Job not found"
    assert error_detail({"detail": "Could not validate credentials !!! "}) == \
        "Could not validate credentials !!! "
    assert error_detail("<html>") is None


REQUEST = SubmitRequest(command="export CIGRI_CAMPAIGN_ID=3;\\$HOME/run.sh", resources="core=1",
                        walltime="01:00:00", params=("a 1", "b 2"), name="cigri.3",
                        directory="/home/u/c3", types=("idempotent", "besteffort"),
                        project="p", properties="cluster='x'")


def test_oar2_5_payload() -> None:
    assert OAR2_5.payload(REQUEST) == {
        "command": "export CIGRI_CAMPAIGN_ID=3;\\$HOME/run.sh", "resource": "core=1,walltime=01:00:00",
        "type": ["idempotent", "besteffort"], "param_file": "a 1\nb 2\n", "name": "cigri.3",
        "directory": "/home/u/c3", "property": "cluster='x'", "project": "p"}


def test_oar3_payload_is_reshaped() -> None:
    body = OAR3.payload(REQUEST)
    assert body["resource"] == ["core=1,walltime=01:00:00"]
    assert body["type"] == ["idempotent", "besteffort"]
    assert body["command"] == "export CIGRI_CAMPAIGN_ID=3;$HOME/run.sh"
    assert body["param_file"] == "a 1\nb 2\n"


def test_single_parameter_is_folded_into_the_command_and_one_type_is_a_string() -> None:
    body = OAR2_5.payload(SubmitRequest(command="run.sh", resources="core=1", params=("x 1",),
                                        types=("besteffort", "")))
    assert body == {"command": "run.sh x 1", "resource": "core=1", "type": "besteffort"}


def test_parameter_lines_oar_would_drop_are_refused() -> None:
    for bad in ("", "   ", "# comment", "two\nlines"):
        with pytest.raises(ValueError):
            OAR2_5.payload(SubmitRequest(command="c", resources="core=1", params=("ok", bad)))


def test_routes_per_flavour() -> None:
    assert OAR2_5.jobs_by_ids([1, 2, 3]).params == (("ids", "1:2:3"),)
    assert OAR3.jobs_by_ids([1, 2]).params == (("details", "1"), ("job_ids", "1"), ("job_ids", "2"))
    assert OAR2_5.media("/home/u/a b.txt", 5).path == "media/home/u/a%20b.txt"
    assert OAR3.media("/home/u/x", None).params == (("path_filename", "/home/u/x"),)
    assert OAR2_5.delete_array(4) == ("POST", OAR2_5.delete_array(4)[1])
    assert OAR2_5.delete_array(4)[1].path == "jobs/array/4/deletions/new"
    assert OAR3.delete_array(4)[0] == "DELETE"
    assert OAR2_5.resources().path == "resources/full"
    with pytest.raises(ValueError):
        OAR2_5.media("relative/path", None)
    with pytest.raises(ValueError):
        flavour_for("g5k")
