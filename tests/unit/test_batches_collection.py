"""Output gathering for the sub-jobs of a temporal-grouping batch (pure rules of
`cigri.domain.collection`): their own `cigri_batch_std*_<job id>` files, not the shared OAR ones."""

from __future__ import annotations

from cigri.domain.collection import FinishedJob, RemoteFile, output_name, remote_paths

ORDINARY = FinishedJob(id=5, campaign_id=3, cluster_id=1, remote_id=4567, param_id=9,
                       task_name="t9", oar_name="cigri.3.abcd")
SUB_JOB = FinishedJob(id=6, campaign_id=3, cluster_id=1, remote_id=4567, param_id=10,
                      task_name="t10", tag="batch", oar_name="cigri.3.abcd")


def test_the_own_output_of_a_job_and_of_a_sub_job() -> None:
    assert output_name(ORDINARY, "stdout") == "OAR.cigri.3.abcd.4567.stdout"
    assert output_name(ORDINARY, "stderr") == "OAR.cigri.3.abcd.4567.stderr"
    assert output_name(SUB_JOB, "stdout") == "cigri_batch_stdout_6"
    assert output_name(SUB_JOB, "stderr") == "cigri_batch_stderr_6"
    unnamed = FinishedJob(id=1, campaign_id=1, cluster_id=1, remote_id=8, param_id=1,
                          task_name=None)
    assert output_name(unnamed, "stdout") == "OAR.8.stdout"


def test_stdout_and_stderr_macros() -> None:
    properties = {"exec_directory": "/scratch/{CAMPAIGN_ID}", "output_file": "{STDOUT},{STDERR}"}
    assert remote_paths(properties, ORDINARY) == [
        RemoteFile(path="/scratch/3/OAR.cigri.3.abcd.4567.stdout", is_flat=True),
        RemoteFile(path="/scratch/3/OAR.cigri.3.abcd.4567.stderr", is_flat=True)]
    assert remote_paths(properties, SUB_JOB) == [
        RemoteFile(path="/scratch/3/cigri_batch_stdout_6", is_flat=True),
        RemoteFile(path="/scratch/3/cigri_batch_stderr_6", is_flat=True)]


def test_a_declared_oar_output_is_the_sub_jobs_own() -> None:
    properties = {"output_file": "OAR.%jobid%.stdout logs/OAR.cigri.{OAR_JOB_ID}.stderr "
                                 "res_{OAR_JOB_ID}.dat OAR.notes.txt"}
    assert remote_paths(properties, SUB_JOB) == [
        RemoteFile(path="~/cigri_batch_stdout_6", is_flat=True),
        RemoteFile(path="~/logs/cigri_batch_stderr_6", is_flat=True),
        # shared by the batch: one folder per task keeps the sub-jobs' copies apart
        RemoteFile(path="~/res_4567.dat", is_flat=False),
        RemoteFile(path="~/OAR.notes.txt", is_flat=False)]
    assert remote_paths(properties, ORDINARY)[:3] == [
        RemoteFile(path="~/OAR.4567.stdout", is_flat=True),
        RemoteFile(path="~/logs/OAR.cigri.4567.stderr", is_flat=True),
        RemoteFile(path="~/res_4567.dat", is_flat=True)]
