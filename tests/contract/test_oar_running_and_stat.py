"""Contract: `get_running_jobs` (every user's jobs holding resources, with their resources, all
pages, as the admin identity) and `stat_file` (a file's size from the `ls` of its directory) on
the emulator and on real OAR 2.5.9.

One running job (`sleep`) and one finished job that wrote a known file are submitted per target;
the running job is deleted when the module ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cigri.domain.oar import OarState, SubmitRequest
from cigri.oar.client import BUSY_OAR_STATES, OarClient

from .conftest import RUN, USER, Target, home_path, wait_for

pytestmark = pytest.mark.timeout(400)

CONTENT = "twelve bytes"  # printf'd without a newline: 12 bytes


@dataclass(frozen=True, kw_only=True)
class Jobs:
    running: int
    written: int
    written_name: str  # the file the written job printed to, in the target's home


@pytest.fixture(scope="module")
def jobs(target: Target, oar: OarClient) -> Iterator[Jobs]:
    written_name = f"ct-{RUN}-{target.label}-stat.txt"
    running = oar.submit(SubmitRequest(
        command="sleep 240", resources="/core=1", walltime="00:05:00", directory=target.home,
        name=f"ct-{RUN}-running", stdout=target.out("running"),
        stderr=target.out("running-err")), user=USER).job_ids[0]
    written = oar.submit(SubmitRequest(
        command=f"printf '{CONTENT}' > {written_name}", resources="/core=1",
        walltime="00:01:00", directory=target.home, name=f"ct-{RUN}-written",
        stdout=target.out("written"), stderr=target.out("written-err")), user=USER).job_ids[0]
    try:
        wait_for(oar, [running, written], until=lambda job: (
            job.state is OarState.RUNNING if job.id == running else job.is_final))
        yield Jobs(running=running, written=written, written_name=written_name)
    finally:
        oar.delete_job(running, user=USER)


def test_running_jobs_list_every_busy_job_with_its_resources(target: Target, jobs: Jobs) -> None:
    client = target.client(page_limit=1)  # one job per page: every page is followed
    found = {job.id: job for job in client.get_running_jobs()}
    assert jobs.running in found and jobs.written not in found
    mine = found[jobs.running]
    assert mine.state is OarState.RUNNING and mine.owner == USER
    assert len(mine.resource_ids) == 1 and 1 <= mine.resource_ids[0] <= target.cores
    assert all(job.state.value in BUSY_OAR_STATES for job in found.values())
    assert all(job.resource_ids for job in found.values() if job.state is OarState.RUNNING)
    assert list(found) == sorted(found)
    # pages of one: at least one request per job listed, retries aside
    assert client.request_count - client.retry_count >= len(found)


def test_running_jobs_resources_match_the_job(target: Target, oar: OarClient,
                                              jobs: Jobs) -> None:
    listed = {job.id: job for job in oar.get_running_jobs()}[jobs.running]
    held = {job.id: job for job in oar.get_jobs([jobs.running])}[jobs.running]
    assert listed.resource_ids == held.resource_ids
    busy = [rid for job in oar.get_running_jobs() for rid in job.resource_ids]
    assert len(busy) == len(set(busy)), "a resource is held by two running jobs"


def test_stat_file_gives_the_size_of_a_written_file(target: Target, oar: OarClient,
                                                    jobs: Jobs) -> None:
    path = home_path(target, jobs.written_name)
    assert oar.read_file(path, user=USER) == CONTENT.encode()
    assert oar.stat_file(path, user=USER) == len(CONTENT)
    assert oar.stat_file(f"~/{jobs.written_name}", user=USER) == len(CONTENT)


def test_stat_file_of_a_missing_file_or_directory_is_none(target: Target, oar: OarClient,
                                                          jobs: Jobs) -> None:
    assert oar.stat_file(home_path(target, f"ct-{RUN}-no-such-file"), user=USER) is None
    assert oar.stat_file(home_path(target, f"ct-{RUN}-no-such-dir/x.txt"), user=USER) is None
    # a directory is not a file
    assert oar.stat_file(str(Path(target.home)), user=USER) is None


def test_file_sizes_list_the_regular_files_of_a_directory(target: Target, oar: OarClient,
                                                          jobs: Jobs) -> None:
    sizes = oar.file_sizes(target.home, user=USER)
    assert sizes[jobs.written_name] == len(CONTENT)
    assert all(isinstance(size, int) and size >= 0 for size in sizes.values())
    assert oar.file_sizes("~", user=USER)[jobs.written_name] == len(CONTENT)  # home by `~`
    assert oar.file_sizes(home_path(target, f"ct-{RUN}-no-such-dir"), user=USER) == {}
    parent = oar.file_sizes(str(Path(target.home).parent), user=USER)
    assert Path(target.home).name not in parent  # directories are not files
