"""Output-gathering rules: which campaigns ask for it, macro expansion of output_file, where each
file goes locally (never outside the result directory), and the destination policy."""

from __future__ import annotations

from pathlib import PurePosixPath

from cigri.domain import collection as rules
from cigri.domain.collection import FinishedJob, RemoteFile

JOB = FinishedJob(id=12, campaign_id=3, cluster_id=1, remote_id=4567, param_id=88,
                  task_name="render-7")


def test_gathering_needs_a_method_and_a_file() -> None:
    assert rules.gathering_method({"output_gathering_method": "Collector",
                                   "output_file": "x"}) == "collector"
    assert rules.gathering_method({"output_gathering_method": "None", "output_file": "x"}) is None
    assert rules.gathering_method({"output_gathering_method": "collector"}) is None
    assert rules.gathering_method({"output_gathering_method": "irods", "output_file": "x"}) is None


def test_macros_and_relative_paths() -> None:
    properties = {"output_file": "out_{TASK}.txt, /scratch/{CAMPAIGN_ID}/%jobid%.log "
                                 "{HOME}/res/{JOB_ID}-{PARAM_ID}.dat OAR.{OAR_JOB_ID}.stdout",
                  "exec_directory": "~/runs/{CAMPAIGN_ID}"}
    assert rules.remote_paths(properties, JOB) == [
        RemoteFile(path="~/runs/3/out_render-7.txt", is_flat=True),
        RemoteFile(path="/scratch/3/4567.log", is_flat=True),
        RemoteFile(path="~/res/12-88.dat", is_flat=True),
        RemoteFile(path="~/runs/3/OAR.4567.stdout", is_flat=True),
    ]
    shared = rules.remote_paths({"output_file": "result.csv"}, JOB)
    assert shared == [RemoteFile(path="~/result.csv", is_flat=False)]


def test_local_paths_stay_inside_the_result_directory() -> None:
    assert rules.local_relative_path("~/a/out.txt", JOB, flat=True) == PurePosixPath("out.txt")
    assert rules.local_relative_path("~/result.csv", JOB, flat=False) == PurePosixPath(
        "render-7/result.csv")
    odd = FinishedJob(id=1, campaign_id=1, cluster_id=1, remote_id=1, param_id=1,
                      task_name="../../etc")
    assert ".." not in rules.local_relative_path("/x/..", odd, flat=False).parts


def test_destination_only_when_allowed_and_absolute() -> None:
    kwargs = {"collector_directory": "/var/lib/cigri/results", "campaign_id": 3}
    assert rules.result_directory(destination="/data/me/{CAMPAIGN_ID}", allow_destination=True,
                                  **kwargs) == "/data/me/3"
    assert rules.result_directory(destination="/data/me", allow_destination=False,
                                  **kwargs) == "/var/lib/cigri/results/3"
    assert rules.result_directory(destination="relative/dir", allow_destination=True,
                                  **kwargs) == "/var/lib/cigri/results/3"


def test_user_destination_is_left_for_the_collector_to_resolve() -> None:
    """`..` is not collapsed on the string (with a symlink before it, the kernel would land
    elsewhere): the collector resolves the path on disk and checks where it really goes."""
    assert rules.user_destination("/home/a/link/../x/{CAMPAIGN_ID}", campaign_id=4,
                                  allow_destination=True) == "/home/a/link/../x/4"
    assert rules.user_destination("/home/a", campaign_id=4, allow_destination=False) is None
    assert rules.user_destination("a/b", campaign_id=4, allow_destination=True) is None
