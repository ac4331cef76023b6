"""Contract: jobs through `OarClient` on the emulator and on real OAR 2.5.9 behave the same.

One batch per target is submitted up front (a plain job, a failing job, a 3-element array, two
jobs to delete and a 2-element array to delete) and waited for together, to keep the suite fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from cigri.domain.oar import OarJob, OarNotFound, OarRejected, OarState, Submission, SubmitRequest
from cigri.oar.client import OarClient
from cigri.oar.http import OarAuth

from .conftest import RUN, USER, Target, home_path, wait_for

PARAMS = ("alpha 1", "beta 2", "gamma 3")

# the real clusters are shared: other engineers' jobs may make ours wait (see JOB_DEADLINE_SECONDS)
pytestmark = pytest.mark.timeout(400)


@dataclass(frozen=True, kw_only=True)
class Batch:
    started: datetime
    name: str
    simple: int
    failing: int
    array: Submission
    to_delete: int
    array_to_delete: Submission
    walltime: int
    killed: int
    no_directory: int
    escaped: int
    typed: int
    final: dict[int, OarJob]


def _request(target: Target, tag: str, command: str, **fields: object) -> SubmitRequest:
    return SubmitRequest(command=command, resources="/core=1", walltime="00:05:00",
                         directory=target.home, name=f"ct-{RUN}-{tag}", stdout=target.out(tag),
                         stderr=target.out(tag + "-err"), **fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def batch(target: Target, oar: OarClient) -> Batch:
    started = datetime.now(UTC) - timedelta(seconds=120)  # room for clock skew with OAR
    simple = oar.submit(_request(target, "simple", "echo first line; echo second line"), user=USER)
    failing = oar.submit(_request(target, "failing", "echo failing >&2; exit 66"), user=USER)
    array = oar.submit(_request(target, "array", "echo param", params=PARAMS), user=USER)
    to_delete = oar.submit(_request(target, "delete", "sleep 300"), user=USER)
    array_to_delete = oar.submit(_request(target, "delarray", "sleep 300", params=("x", "y")),
                                 user=USER)
    walltime = oar.submit(SubmitRequest(
        command="sleep 30", resources="/core=1", walltime="00:00:03", directory=target.home,
        name=f"ct-{RUN}-walltime", stdout=target.out("wall"), stderr=target.out("wall-err")),
        user=USER)
    # `\$` survives the API's shell expansion at submission: the job's own shell kills itself
    killed = oar.submit(_request(target, "killed", "echo dying; kill -9 \\$\\$"), user=USER)
    no_directory = oar.submit(SubmitRequest(
        command="true", resources="/core=1", walltime="00:01:00", name=f"ct-{RUN}-nodir",
        directory=home_path(target, f"ct-{RUN}-no-such-directory"), stdout=target.out("nodir"),
        stderr=target.out("nodir-err")), user=USER)
    # OAR 2.5 runs oarsub through a shell: `\$` delays a variable to the job's own shell
    escaped = oar.submit(_request(target, "escaped", "echo \\$OAR_JOB_ID"), user=USER)
    typed = oar.submit(_request(target, "typed", "true", types=("idempotent", "besteffort")),
                       user=USER)
    oar.delete_job(to_delete.job_ids[0], user=USER)
    oar.delete_array(array_to_delete.array_id, user=USER)
    ids = [simple.job_ids[0], failing.job_ids[0], *array.job_ids, to_delete.job_ids[0],
           *array_to_delete.job_ids, killed.job_ids[0], no_directory.job_ids[0],
           escaped.job_ids[0], typed.job_ids[0]]
    final = wait_for(oar, ids)  # not the walltime job: OAR's walltime checks can lag when busy
    return Batch(started=started, name=f"ct-{RUN}-array", simple=simple.job_ids[0],
                 failing=failing.job_ids[0], array=array, to_delete=to_delete.job_ids[0],
                 array_to_delete=array_to_delete, walltime=walltime.job_ids[0],
                 killed=killed.job_ids[0], no_directory=no_directory.job_ids[0],
                 escaped=escaped.job_ids[0], typed=typed.job_ids[0], final=final)


def test_simple_job_runs_to_terminated_with_exit_code_zero(oar: OarClient, batch: Batch) -> None:
    job = oar.get_job(batch.simple, user=USER)
    assert job.state is OarState.TERMINATED
    assert job.exit_code == 0 and job.exit_status == 0
    assert "SWITCH_INTO_TERMINATE_STATE" in job.event_types
    assert job.owner == USER and job.name == f"ct-{RUN}-simple"
    assert job.array_id == job.id and job.array_index == 1
    assert job.start_time is not None and job.stop_time is not None
    assert job.start_time.tzinfo is UTC and job.start_time <= job.stop_time
    assert job.submission_time is not None and job.submission_time >= batch.started
    assert job.walltime_seconds == 300


def test_failing_job_exit_code_is_the_raw_wait_status(oar: OarClient, batch: Batch) -> None:
    job = oar.get_job(batch.failing, user=USER)
    assert job.state is OarState.TERMINATED  # OAR: a non-zero exit status is still Terminated
    assert job.exit_code == 66 * 256
    assert job.exit_status == 66


def test_array_submission_returns_every_id_in_array_order(oar: OarClient, batch: Batch,
                                                          target: Target) -> None:
    assert len(batch.array.job_ids) == len(PARAMS)
    assert batch.array.array_id == batch.array.job_ids[0]
    for index, (job_id, param) in enumerate(zip(batch.array.job_ids, PARAMS, strict=True), 1):
        job = oar.get_job(job_id, user=USER)
        assert job.array_id == batch.array.array_id
        assert job.array_index == index
        assert job.command == f"echo param {param}"
        assert job.state is OarState.TERMINATED and job.exit_code == 0
        assert job.stdout_file == target.out("array").replace("%jobid%", str(job_id))


def test_bulk_status_goes_by_chunks_of_ids(target: Target, batch: Batch) -> None:
    client = target.client(chunk_size=2)
    ids = [batch.simple, batch.failing, *batch.array.job_ids]
    jobs = client.get_jobs(ids)
    assert sorted(job.id for job in jobs) == sorted(ids)
    assert client.request_count - client.retry_count == math.ceil(len(ids) / 2)
    by_id = {job.id: job for job in jobs}
    assert by_id[batch.failing].exit_code == 66 * 256
    assert all(by_id[i].array_id == batch.array.array_id for i in batch.array.job_ids)


def test_bulk_status_leaves_unknown_ids_out(oar: OarClient, batch: Batch) -> None:
    jobs = oar.get_jobs([batch.simple, 987654321])
    assert [job.id for job in jobs] == [batch.simple]


def test_array_jobs_are_listed_by_array_id_through_every_page(target: Target, batch: Batch) -> None:
    client = target.client(page_limit=1)
    jobs = client.get_array_jobs(batch.array.array_id)
    assert [job.id for job in jobs] == list(batch.array.job_ids)
    # one page per job, `next` followed to the end
    assert client.request_count - client.retry_count == len(PARAMS)
    assert all(job.state is OarState.TERMINATED for job in jobs)
    assert sorted(job.command or "" for job in jobs) == sorted(f"echo param {p}" for p in PARAMS)


def test_read_stdout_whole_and_tail(oar: OarClient, batch: Batch, target: Target) -> None:
    path = home_path(target, target.out("simple").replace("%jobid%", str(batch.simple)))
    assert oar.read_file(path, user=USER) == b"first line\nsecond line\n"
    assert oar.read_file(path, user=USER, tail=1) == b"second line\n"
    element = batch.array.job_ids[1]
    path = home_path(target, target.out("array").replace("%jobid%", str(element)))
    assert oar.read_file(path, user=USER) == f"param {PARAMS[1]}\n".encode()


def test_read_stderr_of_failing_job(oar: OarClient, batch: Batch, target: Target) -> None:
    path = home_path(target, target.out("failing-err").replace("%jobid%", str(batch.failing)))
    assert oar.read_file(path, user=USER, tail=5) == b"failing\n"


def test_missing_file_is_not_found(oar: OarClient, target: Target) -> None:
    with pytest.raises(OarNotFound) as caught:
        oar.read_file(home_path(target, f"ct-no-such-file-{target.label}"), user=USER)
    assert caught.value.status == 404
    assert "File not found" in (caught.value.body or "")


def test_deleted_job_ends_in_error_with_frag_event(oar: OarClient, batch: Batch) -> None:
    job = oar.get_job(batch.to_delete, user=USER)
    assert job.is_final  # Error; real OAR sometimes Terminated when the kill hits a running job
    assert "FRAG_JOB_REQUEST" in job.event_types


def test_deleting_a_killed_job_again_is_rejected(oar: OarClient, batch: Batch) -> None:
    with pytest.raises(OarRejected) as caught:
        oar.delete_job(batch.to_delete, user=USER)
    assert caught.value.status == 400
    assert caught.value.code == "CLUSTER_API_BAD_REQUEST_ERROR"
    assert "already killed" in (caught.value.body or "")


def test_deleted_array_ends_in_error(oar: OarClient, batch: Batch) -> None:
    jobs = oar.get_array_jobs(batch.array_to_delete.array_id)
    assert [job.id for job in jobs] == list(batch.array_to_delete.job_ids)
    # real OAR 2.5.9: running elements end Terminated (exit_code 256), queued ones Error
    assert all(job.is_final for job in jobs)
    assert all("FRAG_JOB_REQUEST" in job.event_types for job in jobs)


def test_find_jobs_by_name_finds_every_job_of_the_submission(oar: OarClient, batch: Batch) -> None:
    jobs = oar.find_jobs_by_name(batch.name, user=USER, since=batch.started)
    assert [job.id for job in jobs] == list(batch.array.job_ids)
    assert all(job.name == batch.name for job in jobs)
    assert oar.find_jobs_by_name(f"ct-nobody-{batch.simple}", user=USER, since=batch.started) == []


def test_unknown_job_is_not_found(oar: OarClient) -> None:
    with pytest.raises(OarNotFound) as caught:
        oar.get_job(987654321, user=USER)
    assert caught.value.status == 404
    assert "Job not found" in (caught.value.body or "")


def test_reading_a_job_without_identity_is_denied(oar: OarClient, batch: Batch) -> None:
    with pytest.raises(OarRejected) as caught:
        oar.get_job(batch.simple, user=None)
    assert caught.value.status == 401
    assert caught.value.code == "PERMISSION_DENIED"


def test_submitting_without_identity_is_denied(oar: OarClient, target: Target) -> None:
    body = {"resource": "/core=1", "command": "true", "directory": target.home}
    with pytest.raises(OarRejected) as caught:
        oar.http.post("jobs", user=None, body=body, code="SUBMIT_JOB")
    assert caught.value.status == 401
    assert caught.value.code == "PERMISSION_DENIED"
    assert "Permission denied" in (caught.value.body or "")


def test_too_large_resource_request_is_rejected_with_oars_message(oar: OarClient,
                                                                  target: Target) -> None:
    request = SubmitRequest(command="true", resources="/core=99", walltime="00:01:00",
                            directory=target.home)
    with pytest.raises(OarRejected) as caught:
        oar.submit(request, user=USER)
    assert caught.value.status == 400
    assert caught.value.code == "CLUSTER_API_BAD_REQUEST_ERROR"
    assert "not enough resources" in (caught.value.body or "")


def test_unparsable_resource_string_is_rejected_with_oars_message(oar: OarClient,
                                                                  target: Target) -> None:
    request = SubmitRequest(command="true", resources="/core=x", directory=target.home)
    with pytest.raises(OarRejected) as caught:
        oar.submit(request, user=USER)
    assert caught.value.status in (400, 500)  # 2.5.9 answers 500, 2.5.10 400
    assert "recognize" in (caught.value.body or "").lower()


def test_job_over_its_walltime_is_killed_with_walltime_event(oar: OarClient, batch: Batch) -> None:
    job = wait_for(oar, [batch.walltime])[batch.walltime]
    assert {"FRAG_JOB_REQUEST", "WALLTIME"} <= job.event_types
    # Error, normally; real OAR 2.5.9 under load was seen resending SEND_KILL_JOB for 90 s while
    # the command ran to its end: Terminated, exit code 0, events still FRAG_JOB_REQUEST + WALLTIME
    assert job.state is OarState.ERROR or (job.state is OarState.TERMINATED
                                          and "SEND_KILL_JOB" in job.event_types)


def test_job_whose_shell_is_killed_by_a_signal(batch: Batch) -> None:
    job = batch.final[batch.killed]
    assert job.state is OarState.TERMINATED
    assert job.exit_code == 9  # the raw wait status of a death by SIGKILL
    assert job.exit_status == 0


def test_missing_working_directory_fails_the_job_not_the_submission(batch: Batch) -> None:
    job = batch.final[batch.no_directory]  # 2.5.9 accepts it; 2.5.10 would refuse with a 500
    assert job.state is OarState.ERROR
    assert "WORKING_DIRECTORY" in job.event_types


def test_identity_header_with_underscores_is_accepted(target: Target, batch: Batch) -> None:
    client = target.client(auth=OarAuth(identity_header="X_REMOTE_IDENT"))
    assert client.get_job(batch.simple, user=USER).id == batch.simple


def test_basic_auth_names_the_user(target: Target, batch: Batch) -> None:
    client = OarClient(target.basic_auth_url, auth=OarAuth(basic=(USER, USER)), timeout_seconds=30)
    assert client.get_job(batch.simple, user=None).owner == USER


def test_basic_auth_with_a_wrong_password_is_denied(target: Target, batch: Batch) -> None:
    client = OarClient(target.basic_auth_url, auth=OarAuth(basic=(USER, "wrong")), timeout_seconds=30)
    with pytest.raises(OarRejected) as caught:
        client.get_job(batch.simple, user=None)
    assert caught.value.status == 401 and caught.value.code == "PERMISSION_DENIED"


def test_escaped_variable_reaches_the_job_shell(oar: OarClient, batch: Batch, target: Target) -> None:
    job = batch.final[batch.escaped]
    assert job.state is OarState.TERMINATED and job.exit_code == 0
    path = home_path(target, target.out("escaped").replace("%jobid%", str(batch.escaped)))
    assert oar.read_file(path, user=USER) == f"{batch.escaped}\n".encode()


def test_several_job_types_are_sent_as_a_list(oar: OarClient, batch: Batch) -> None:
    job = oar.get_job(batch.typed, user=USER)
    assert set(job.types) == {"idempotent", "besteffort"}
    assert job.is_final


def test_bulk_status_pages_inside_a_chunk(target: Target, batch: Batch) -> None:
    client = target.client(chunk_size=5, page_limit=2)
    ids = [batch.simple, batch.failing, *batch.array.job_ids]
    assert sorted(job.id for job in client.get_jobs(ids)) == sorted(ids)
    assert client.request_count - client.retry_count == 3  # one chunk of 5, pages of 2


def test_deleting_an_unknown_job_is_rejected(oar: OarClient) -> None:
    with pytest.raises(OarRejected) as caught:
        oar.delete_job(987654321, user=USER)
    assert caught.value.status == 400
    assert "not the right user" in (caught.value.body or "")
