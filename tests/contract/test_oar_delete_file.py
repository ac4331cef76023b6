"""Contract: `delete_file` (OAR's `DELETE media/<path>`) removes a job's output file as its user
on the emulator and on real OAR 2.5.9; a missing file is `OarNotFound`; a user without an
identity is refused."""

from __future__ import annotations

import pytest

from cigri.domain.oar import OarNotFound, OarRejected, SubmitRequest
from cigri.oar.client import OarClient

from .conftest import RUN, USER, Target, home_path, wait_for

pytestmark = pytest.mark.timeout(400)


def test_delete_file_removes_a_jobs_output_and_then_it_is_gone(target: Target,
                                                               oar: OarClient) -> None:
    job = oar.submit(SubmitRequest(
        command="echo to be removed", resources="/core=1", walltime="00:01:00",
        directory=target.home, name=f"ct-{RUN}-delfile", stdout=target.out("delfile"),
        stderr=target.out("delfile-err")), user=USER).job_ids[0]
    wait_for(oar, [job])
    stdout = home_path(target, target.out("delfile").replace("%jobid%", str(job)))
    stderr = home_path(target, target.out("delfile-err").replace("%jobid%", str(job)))
    assert oar.read_file(stdout, user=USER) == b"to be removed\n"
    oar.delete_file(stdout, user=USER)
    oar.delete_file(stderr, user=USER)
    for path in (stdout, stderr):
        with pytest.raises(OarNotFound):
            oar.read_file(path, user=USER)
        with pytest.raises(OarNotFound):
            oar.delete_file(path, user=USER)


def test_delete_file_without_identity_is_refused(target: Target, oar: OarClient) -> None:
    with pytest.raises(OarRejected) as caught:
        oar.delete_file(home_path(target, f"ct-{RUN}-{target.label}-nothing"), user="")
    assert caught.value.status in (401, 403)
