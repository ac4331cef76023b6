"""`cigri.app.build_oar_factory`, the one OAR-client factory of the daemons: clients cached per
cluster (rebuilt when the cluster's API fields change), JWT tokens of `jwt` clusters read from
`users_mapping` (the `oar` login's token as the admin identity, new tokens seen without a
restart), and the mapped login of `oar` as the admin identity elsewhere. Driven over HTTP against
the emulator in its OAR 3 shapes, on both databases."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cigri.app import build_oar_factory
from cigri.config import build_settings
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarRejected, OarState, SubmitRequest
from cigri.emulator import Emulator, ManualClock, run_in_thread
from cigri.oar.client import OarClient
from cigri.storage.clusters import add_cluster
from cigri.storage.users import set_user_mapping

T0 = 1_800_000_000


def bearer(user: str) -> str:
    """`Bearer <JWT>` whose `user` claim is `user` (the emulator does not check signatures)."""
    claims = base64.urlsafe_b64encode(json.dumps({"user": user}).encode()).decode().rstrip("=")
    return f"Bearer eyJhbGciOiJIUzI1NiJ9.{claims}.signature"


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Emulator]:
    with run_in_thread(allow_root_jobs=True, mode="simulate", clock=ManualClock(T0), workdir=str(tmp_path),
                       api="oar3", nodes=2, cores=2) as emulator:
        yield emulator


def _jwt_cluster(engine: Engine, url: str) -> Cluster:
    with engine.begin() as conn:
        return add_cluster(conn, name="jwt1", api_url=url, api_auth_type="jwt", batch="oar3")


def test_jwt_clusters_use_the_tokens_of_users_mapping(engine: Engine, emu: Emulator,
                                                      tmp_path: Path) -> None:
    cluster = _jwt_cluster(engine, emu.urls[0])
    with engine.begin() as conn:
        set_user_mapping(conn, grid_login="alice", cluster_id=cluster.id,
                         cluster_login=bearer("alice"))
    ticks = Ticks()
    factory = build_oar_factory(build_settings({}), engine, monotonic=ticks)
    oar = factory(cluster)
    assert factory(cluster) is oar  # cached per cluster

    # the runner passes the mapped login, which on a jwt cluster is `Bearer <token>`
    job = oar.submit(SubmitRequest(command="sleep 60", resources="/core=1", walltime="00:05:00"),
                     user=bearer("alice")).job_ids[0]
    assert oar.get_job(job, user="alice").owner == "alice"  # or the grid login, via the tokens
    with pytest.raises(OarRejected) as refused:
        oar.get_job(job, user="bob")
    assert refused.value.code == "JWT_TOKEN_NOT_FOUND"

    # bulk status and grid usage need the `oar` login's token: none yet
    with pytest.raises(OarRejected) as no_admin:
        oar.get_running_jobs()
    assert no_admin.value.code == "JWT_TOKEN_NOT_FOUND"
    with engine.begin() as conn:
        set_user_mapping(conn, grid_login="oar", cluster_id=cluster.id, cluster_login=bearer("oar"))
    ticks.now += 1.5  # a missing login re-reads users_mapping (at most once a second)
    running = oar.get_running_jobs()
    assert [(j.id, j.state, j.owner) for j in running] == [(job, OarState.RUNNING, "alice")]
    assert len(running[0].resource_ids) == 1
    assert factory(cluster) is oar  # the same client saw the new token

    # stat_file through the oar3 flavour, as the owner
    home = tmp_path / "home" / "alice"  # where the emulator homes alice
    home.mkdir(parents=True, exist_ok=True)
    (home / "result.txt").write_bytes(b"0123456789")
    assert oar.stat_file(str(home / "result.txt"), user="alice") == 10
    assert oar.stat_file(str(home / "absent.txt"), user="alice") is None


def test_a_changed_cluster_gets_a_new_client(engine: Engine, emu: Emulator) -> None:
    cluster = _jwt_cluster(engine, emu.urls[0])
    factory = build_oar_factory(build_settings({"REST_QUERIES_TIMEOUT": 7}), engine)
    first = factory(cluster)
    assert isinstance(first, OarClient) and first.http.timeout_seconds == 7
    assert factory(dataclasses.replace(cluster, stress_factor=0.5)) is first
    moved = factory(dataclasses.replace(cluster, api_limit=3))
    assert moved is not first and isinstance(moved, OarClient) and moved.page_limit == 3


def test_header_clusters_act_as_the_mapped_login_of_oar(engine: Engine) -> None:
    with engine.begin() as conn:
        plain = add_cluster(conn, name="plain", api_url="http://127.0.0.1:9/oarapi/")
        mapped = add_cluster(conn, name="mapped", api_url="http://127.0.0.1:9/oarapi/")
        set_user_mapping(conn, grid_login="oar", cluster_id=mapped.id, cluster_login="oaradmin")
    factory = build_oar_factory(build_settings({}), engine)
    clients = factory(plain), factory(mapped)
    assert all(isinstance(c, OarClient) for c in clients)
    assert [c.admin_user for c in clients] == ["oar", "oaradmin"]  # type: ignore[attr-defined]
    # without a database: no tokens, `oar` as the admin login
    alone = build_oar_factory(build_settings({}))(mapped)
    assert isinstance(alone, OarClient) and alone.admin_user == "oar"


def test_nikita_and_the_collector_build_their_clients_with_the_tokens(engine: Engine) -> None:
    from cigri.daemons import collector, nikita
    from cigri.daemons.base import DaemonContext

    cluster = _jwt_cluster(engine, "http://127.0.0.1:9/oarapi/")
    with engine.begin() as conn:
        set_user_mapping(conn, grid_login="oar", cluster_id=cluster.id, cluster_login=bearer("oar"))
    context = DaemonContext.for_process(build_settings({"REST_QUERIES_TIMEOUT": 3}), engine)
    for daemon in (nikita.Nikita(context), collector.Collector(context)):
        client = daemon.oar(cluster)
        assert isinstance(client, OarClient) and client.http.timeout_seconds == 3
        assert client.http.auth.headers_for("oar") == {"Authorization": bearer("oar")}
