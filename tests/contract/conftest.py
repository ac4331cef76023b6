"""The OAR targets of the contract suite: the emulator (always, once on its own port and once
behind a path prefix on a port shared by two clusters) and every real OAR listed in
`CIGRI_TEST_OAR_URLS` (marked `real_oar`, so tier 1 runs `-m "not real_oar"` and tier 2
`-m real_oar`). Each test module gets one target at a time (module scope), so a module can
submit its jobs once, together, and wait for them together.

Jobs run in the user's home (real OAR) or in a temporary directory (emulator), with stdout and
stderr names unique to this run and cluster: the real clusters share one home and number their
jobs from 1 after each reset (pitfall 6 of `oar/README.md`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cigri.domain.oar import OarJob
from cigri.oar.client import OarClient
from cigri.oar.http import OarAuth, RetryPolicy

REAL_URLS = [u.strip() for u in os.environ.get("CIGRI_TEST_OAR_URLS", "").split(",") if u.strip()]
RUN = uuid.uuid4().hex[:8]
USER = "testuser"
REAL_HOME = "/home/testuser"
# real OAR: ~2-3 s per job, sometimes 12 s; but the clusters are shared, and other engineers'
# campaigns can hold every core for minutes (seen: 90 s was not enough during an e2e run)
JOB_DEADLINE_SECONDS = 240.0


@dataclass(frozen=True, kw_only=True)
class Target:
    """One OAR API the suite runs against."""

    label: str  # unique per cluster, used in file names
    url: str
    user: str
    home: str  # an absolute directory where the user's jobs run and write
    real: bool
    cores: int = 8

    def client(self, **options: Any) -> OarClient:
        options.setdefault("timeout_seconds", 30.0)
        options.setdefault("retry", RetryPolicy(attempts=5, backoff_seconds=0.3))
        options.setdefault("auth", OarAuth())
        return OarClient(self.url, **options)

    @property
    def basic_auth_url(self) -> str:
        """Where HTTP basic auth names the user: the harness's `/oarapi-priv/` (password = login)."""
        return self.url.replace("/oarapi/", "/oarapi-priv/") if self.real else self.url

    def out(self, tag: str) -> str:
        """A stdout/stderr file name unique to this run, cluster and tag (`%jobid%` expanded by OAR)."""
        return f"ct-{RUN}-{self.label}-{tag}-%jobid%.out"


def _target_params() -> list[Any]:
    params: list[Any] = [pytest.param("emulator", id="emulator"),
                         pytest.param("emulator-prefix", id="emulator-prefix")]
    real = REAL_URLS or ["unset"]
    params.extend(pytest.param(url, id=f"real-{urlsplit(url).port or url}" if url != "unset"
                               else "real-unset", marks=pytest.mark.real_oar) for url in real)
    return params


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One emulated cluster of 4 nodes x 2 cores in execute mode, on an ephemeral port."""
    try:
        from cigri.emulator import run_in_thread
    except ImportError as exc:
        pytest.fail(f"the OAR emulator is not available (cigri.emulator.run_in_thread): {exc}")
    workdir = tmp_path_factory.mktemp("emulator")
    handle = run_in_thread(allow_root_jobs=True,
                           clusters=1, nodes=4, cores=2, mode="execute", workdir=str(workdir))
    handle.contract_home = str(workdir / "home" / USER)  # where the emulator homes the user
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def prefixed_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two emulated clusters of 4 nodes x 2 cores on one shared port (`/c1/oarapi/`,
    `/c2/oarapi/`); the suite runs on the second, so every link must carry `/c2`."""
    from cigri.emulator import run_in_thread

    workdir = tmp_path_factory.mktemp("emulator-prefix")
    handle = run_in_thread(allow_root_jobs=True,
                           clusters=2, nodes=4, cores=2, mode="execute", workdir=str(workdir),
                           single_port=0)
    handle.contract_home = str(workdir / "home" / USER)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module", params=_target_params())
def target(request: pytest.FixtureRequest) -> Target:
    if request.param in ("emulator", "emulator-prefix"):
        prefixed = request.param == "emulator-prefix"
        handle = request.getfixturevalue("prefixed_emulator" if prefixed else "emulator")
        home = Path(handle.contract_home)
        home.mkdir(parents=True, exist_ok=True)
        return Target(label="emup" if prefixed else "emu", url=handle.urls[-1], user=USER,
                      home=str(home), real=False)
    if request.param == "unset":
        pytest.fail("CIGRI_TEST_OAR_URLS is not set: the real-OAR tier has no clusters to test")
    url = str(request.param)
    return Target(label=f"p{urlsplit(url).port}", url=url, user=USER, home=REAL_HOME, real=True)


@pytest.fixture(scope="module")
def oar(target: Target) -> Iterator[OarClient]:
    client = target.client()
    yield client
    client.close()


def wait_for(client: OarClient, job_ids: Sequence[int], *, until: Any = None,
             deadline_seconds: float = JOB_DEADLINE_SECONDS) -> dict[int, OarJob]:
    """Poll (bulk status) until `until(job)` holds for every job (default: final state)."""
    check = until or (lambda job: job.is_final)
    limit = time.monotonic() + deadline_seconds
    jobs: dict[int, OarJob] = {}
    while True:
        jobs = {job.id: job for job in client.get_jobs(job_ids)}
        if len(jobs) == len(set(job_ids)) and all(check(job) for job in jobs.values()):
            return jobs
        if time.monotonic() > limit:
            states = {job_id: (jobs[job_id].state.value if job_id in jobs else "missing")
                      for job_id in job_ids}
            pytest.fail(f"jobs not done after {deadline_seconds:.0f}s on {client.base_url}: {states}")
        time.sleep(0.4)


def home_path(target: Target, name: str) -> str:
    return str(Path(target.home) / name)
