"""The collector's scp and rsync methods against a private OpenSSH server started by the test: the
declared files are copied into the result directory, a missing file is recorded with an event, and
an unreachable ssh server leaves the files pending for the next pass."""

from __future__ import annotations

import getpass
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from cigri.config import Settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.collector import Collector
from cigri.domain.clock import FakeClock
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi
from cigri.storage import collected as store
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import campaigns, jobs, parameters, users_mapping
from tests.integration.engine_helpers import event_rows, make_settings
from tests.integration.notify_helpers import SshServer, start_sshd
from tests.integration.unix_helpers import MakeUser, root, unix_user

__all__ = ["root", "unix_user"]  # fixtures


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def _campaign(engine: Engine, clock: FakeClock, remote: Path, method: str, *,
              ssh_host: str = "127.0.0.1") -> int:
    """A finished campaign whose two jobs wrote <remote>/<task>.out (task b's file is absent)."""
    (remote / "a.out").write_text("alpha\n")
    with engine.begin() as conn:
        cluster = add_cluster(conn, name=f"ssh-{method}-{ssh_host}", api_url="http://127.0.0.1:9/",
                              ssh_host=ssh_host, now=clock.now())
        campaign = create_campaign(
            conn, grid_user=getpass.getuser(), name="ssh", jobs_type="normal", jdl={},
            properties={cluster.id: {"exec_file": "true", "output_gathering_method": method,
                                     "output_file": f"{remote}/{{TASK}}.out"}},
            params=["a", "b"], now=clock.now())
        for param in conn.execute(select(parameters.c.id).where(
                parameters.c.campaign_id == campaign)).scalars():
            conn.execute(insert(jobs).values(campaign_id=campaign, param_id=param,
                                             cluster_id=cluster.id, state="terminated",
                                             remote_id=param))
    return campaign


def _no_oar(cluster: Cluster) -> OarApi:
    pytest.fail("no OAR call expected")


def _collector(engine: Engine, settings: Settings, clock: FakeClock) -> Collector:
    """The ssh methods copy without OAR: a collector whose OAR clients fail the test."""
    return Collector(DaemonContext(settings=settings, engine=engine, clock=clock,
                                   stop=threading.Event(), oar_factory=_no_oar), owner="test")


@pytest.mark.parametrize("method", ["scp", "rsync"])
def test_ssh_methods_copy_the_declared_files(pg_engine: Engine, clock: FakeClock, sshd: SshServer,
                                             tmp_path: Path, method: str) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    campaign = _campaign(pg_engine, clock, remote, method)
    settings = make_settings(COLLECTOR_DIRECTORY=str(tmp_path / "results"),
                             COLLECTOR_SSH_OPTIONS=sshd.options)
    _collector(pg_engine, settings, clock).run(loops=1)
    assert (tmp_path / "results" / str(campaign) / "a.out").read_text() == "alpha\n"
    with pg_engine.begin() as conn:
        summary = store.collection_summary(conn, campaign)
    assert (summary["collected"], summary["missing"], summary["bytes"]) == (1, 1, 6)
    [missing] = event_rows(pg_engine, "MISSING_OUTPUT_FILE")
    assert "b.out" in missing.message


def test_unreachable_ssh_host_keeps_files_pending(pg_engine: Engine, clock: FakeClock,
                                                  sshd: SshServer, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    campaign = _campaign(pg_engine, clock, remote, "scp")
    settings = make_settings(COLLECTOR_DIRECTORY=str(tmp_path / "results"),
                             COLLECTOR_SSH_OPTIONS=sshd.options.replace(
                                 f"Port={sshd.port}", "Port=1") + " -o ConnectTimeout=3")
    _collector(pg_engine, settings, clock).run(loops=1)
    with pg_engine.begin() as conn:
        files = store.list_collected_files(conn, campaign)
    assert {f.state for f in files} == {"pending"} and all(f.attempts <= 1 for f in files)
    assert event_rows(pg_engine, "MISSING_OUTPUT_FILE") == []


def test_ssh_copies_land_private_and_owned_by_the_campaign_owner(
        pg_engine: Engine, clock: FakeClock, sshd: SshServer, tmp_path: Path, root: Path,
        unix_user: MakeUser) -> None:
    """scp runs as cigri (its ssh key) into a private staging file; the result is written by
    the owner's account, 0600 in a 0700 directory, and the staging file is gone."""
    owner = unix_user()
    remote = tmp_path / "remote"
    remote.mkdir()
    campaign = _campaign(pg_engine, clock, remote, "scp")
    with pg_engine.begin() as conn:
        cluster_id = conn.execute(select(jobs.c.cluster_id).where(
            jobs.c.campaign_id == campaign).limit(1)).scalar_one()
        conn.execute(update(campaigns).where(campaigns.c.id == campaign)
                     .values(grid_user=owner.pw_name))
        conn.execute(insert(users_mapping).values(grid_login=owner.pw_name,
                                                  cluster_login=getpass.getuser(),
                                                  cluster_id=cluster_id))
    settings = make_settings(COLLECTOR_DIRECTORY=str(root / "results"),
                             COLLECTOR_SSH_OPTIONS=sshd.options)
    _collector(pg_engine, settings, clock).run(loops=1)

    results = root / "results" / str(campaign)
    copied = results / "a.out"
    assert copied.read_text() == "alpha\n"
    assert (copied.stat().st_mode & 0o777, copied.stat().st_uid) == (0o600, owner.pw_uid)
    assert (results.stat().st_mode & 0o777, results.stat().st_uid) == (0o700, owner.pw_uid)
    assert list((root / "results" / ".staging").iterdir()) == []
