"""OAR 3 (JWT) clusters and their tokens, end to end: a real database, the emulator answering in
OAR 3 shapes and reading the identity from the bearer token, the composition root's OAR clients
(tokens read live from `users_mapping`), the meta-scheduler, runner, updater and notifier.

A missing or refused cluster-admin token is an open cluster event naming the command that fixes
it (with a whole-cluster blacklist), seen by gridevents/gridstat's queries and the notifier; once
the admin token is set with `cigri cluster token` the campaign goes on without a restart. A user
whose own token is missing gets an event naming `gridtoken -i ID -t TOKEN`, and their campaign
resumes once they have registered one."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from cigri.app import build_oar_factory
from cigri.config import build_settings
from cigri.daemons.cluster_runner import ClusterRunner
from cigri.daemons.metascheduler import MetaScheduler
from cigri.daemons.notifier import NotifierDaemon
from cigri.daemons.updater import Updater
from cigri.domain.clock import FakeClock
from cigri.domain.cluster_tokens import ADMIN_LOGIN
from cigri.domain.states import EventState, NotificationType
from cigri.notify.webhook import WebhookNotifier
from cigri.storage import cluster_tokens as token_store
from cigri.storage import events as event_store
from cigri.storage import queries
from cigri.storage.clusters import get_cluster, set_cluster_fields
from cigri.storage.tables import campaigns
from tests.integration.engine_helpers import (
    USER,
    Grid,
    event_rows,
    new_campaign,
    start_grid,
    states,
)
from tests.integration.notify_helpers import HttpReceiver, subscribe


def jwt(user: str) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"user": user}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{claims}.signature-of-{user}"


class Monotonic:
    """The clock the token cache is refreshed by, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def grid(pg_engine: Engine, clock: FakeClock) -> Iterator[Grid]:
    with start_grid(pg_engine, clock, clusters=1, nodes=2, cores=2, api="oar3") as grid:
        with pg_engine.begin() as conn:
            set_cluster_fields(conn, grid.clusters[0].id, batch="oar3", api_auth_type="jwt")
            grid.clusters[0] = get_cluster(conn, grid.clusters[0].id)
        yield grid


class Engine3:
    """The daemons of one grid sharing the composition root's OAR factory (live tokens)."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.monotonic = Monotonic()
        context = grid.context(oar_factory=build_oar_factory(grid.settings, grid.engine,
                                                             monotonic=self.monotonic))
        self.runner = ClusterRunner(context, cluster=grid.clusters[0], interval=timedelta(0),
                                    owner="test-runner")
        self.updater = Updater(context, interval=timedelta(0), owner="test-updater")
        self.scheduler = MetaScheduler(engine=grid.engine, settings=grid.settings,
                                       clock=grid.clock, stop=grid.stop, interval=timedelta(0),
                                       owner="test-metascheduler")

    def cycle(self, seconds: float = 15) -> None:
        """Schedule, submit, let the emulated jobs (10 s) run, follow them; a second passes on
        the token cache's clock."""
        self.scheduler.run(loops=1)
        self.runner.run(loops=1)
        self.grid.advance(seconds)
        self.monotonic.now += 2
        self.updater.run(loops=1)


def _campaign_state(grid: Grid, campaign: int) -> str:
    with grid.engine.begin() as conn:
        return str(conn.execute(select(campaigns.c.state)
                                .where(campaigns.c.id == campaign)).scalar_one())


def _cigri(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    env["CIGRI_DATABASE_URL"] = database_url
    return subprocess.run([shutil.which("cigri") or "cigri", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def _set_user_token(grid: Grid) -> None:
    with grid.engine.begin() as conn:
        token_store.set_token(conn, grid_login=USER, cluster_id=grid.clusters[0].id,
                              token=jwt(USER))


def test_missing_admin_token_is_an_open_event_naming_the_fix_and_setting_it_resumes(
        grid: Grid, pg_url: str) -> None:
    receiver = HttpReceiver()
    receiver.start()
    request_cleanup = receiver.stop
    subscribe(grid.engine, user="%%admin%%", type_="webhook", identity=f"{receiver.url}/admin",
              severity="high")
    _set_user_token(grid)
    engine = Engine3(grid)
    cluster = grid.clusters[0]
    campaign = new_campaign(grid, ["a 1", "b 2"], type="normal")
    # submitted with the user's token; then nothing can follow the jobs
    engine.cycle()
    engine.cycle()
    assert states(grid.engine, campaign) == {"submitted": 2}
    [missing] = event_rows(grid.engine, "ADMIN_TOKEN_MISSING")
    assert missing.state == "open" and missing.class_ == "cluster"
    assert f"cigri cluster token {cluster.name} --set" in missing.message
    assert f"gridtoken --admin -i {cluster.id} -t TOKEN" in missing.message
    with grid.engine.begin() as conn:
        assert event_store.is_cluster_blacklisted(conn, cluster.id)
        assert [e["code"] for e in queries.list_global_events(conn)] == [
            "ADMIN_TOKEN_MISSING", "BLACKLIST"]  # gridevents -g
        assert "ADMIN_TOKEN_MISSING" in [
            e["code"] for e in queries.list_campaign_events(conn, campaign)]  # gridevents -c
        assert queries.get_campaign_summary(conn, campaign).has_events  # gridstat "(events)"
    NotifierDaemon(engine=grid.engine, settings=build_settings({"ADMINS": "root"}),
                   clock=grid.clock, stop=threading.Event(), interval=timedelta(0),
                   channels={NotificationType.WEBHOOK: WebhookNotifier()}).run(loops=1)
    sent = [(r.body.get("subject", ""), r.body.get("body", "")) for r in receiver.received
            if r.path == "/admin"]
    request_cleanup()
    assert any("ADMIN_TOKEN_MISSING" in subject and f"cigri cluster token {cluster.name}" in body
               for subject, body in sent), sent

    # The documented command, on the server: the token from stdin, never echoed.
    secret = jwt(ADMIN_LOGIN)
    done = _cigri(pg_url, "cluster", "token", cluster.name, "--set", "-", stdin=secret + "\n")
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr and secret[-6:] in done.stdout
    shown = _cigri(pg_url, "cluster", "token", cluster.name, "--show")
    assert shown.returncode == 0 and secret not in shown.stdout
    assert f"admin token ...{secret[-6:]} (user oar)" in shown.stdout

    # No restart: the same daemons go on.
    engine.cycle()
    with grid.engine.begin() as conn:
        assert not event_store.is_cluster_blacklisted(conn, cluster.id)
    assert [e.state for e in event_rows(grid.engine, "ADMIN_TOKEN_MISSING")] == ["closed"]
    assert states(grid.engine, campaign) == {"terminated": 2}
    assert _campaign_state(grid, campaign) == "terminated"


def test_a_refused_admin_token_is_an_open_event_closed_once_oar_accepts_it(grid: Grid) -> None:
    _set_user_token(grid)
    with grid.engine.begin() as conn:
        token_store.set_token(conn, grid_login=ADMIN_LOGIN, cluster_id=grid.clusters[0].id,
                              token=jwt(ADMIN_LOGIN))
    engine = Engine3(grid)
    campaign = new_campaign(grid, ["a 1"], type="normal")
    engine.scheduler.run(loops=1)
    engine.runner.run(loops=1)
    grid.advance(15)
    grid.control(0).fail_next(401)  # the bulk poll: OAR refuses the token (expired, say)
    engine.updater.run(loops=1)
    [refused] = event_rows(grid.engine, "ADMIN_TOKEN_REJECTED")
    assert refused.state == "open" and "HTTP 401" in refused.message
    assert f"cigri cluster token {grid.clusters[0].name} --set" in refused.message
    assert states(grid.engine, campaign) == {"submitted": 1}
    engine.cycle()  # OAR accepts it again (a replaced token would do the same)
    assert [e.state for e in event_rows(grid.engine, "ADMIN_TOKEN_REJECTED")] == ["closed"]
    assert _campaign_state(grid, campaign) == "terminated"


def test_a_user_without_token_gets_an_event_naming_gridtoken_and_resumes_once_set(
        grid: Grid) -> None:
    cluster = grid.clusters[0]
    with grid.engine.begin() as conn:
        token_store.set_token(conn, grid_login=ADMIN_LOGIN, cluster_id=cluster.id,
                              token=jwt(ADMIN_LOGIN))
    engine = Engine3(grid)
    campaign = new_campaign(grid, ["a 1", "b 2"], type="normal")
    engine.cycle()
    engine.cycle()
    found = event_rows(grid.engine, "RUNNER_SUBMIT_TOKEN_NOT_FOUND")
    assert found and {e.state for e in found} == {EventState.OPEN.value}
    assert f"gridtoken -i {cluster.id} -t TOKEN" in found[0].message
    assert USER in found[0].message
    with grid.engine.begin() as conn:
        assert event_store.is_campaign_blacklisted(conn, campaign_id=campaign,
                                                   cluster_id=cluster.id)
    _set_user_token(grid)  # what `gridtoken -i ID -t TOKEN` stores
    for _ in range(3):
        engine.cycle()
    assert {e.state for e in event_rows(grid.engine, "RUNNER_SUBMIT_TOKEN_NOT_FOUND")} == {
        "closed"}
    assert _campaign_state(grid, campaign) == "terminated"


def test_a_cluster_that_stops_using_jwt_is_no_longer_blacklisted_for_its_admin_token(
        grid: Grid) -> None:
    engine = Engine3(grid)
    engine.updater.run(loops=1)
    cluster = grid.clusters[0]
    assert [e.state for e in event_rows(grid.engine, "ADMIN_TOKEN_MISSING")] == ["open"]
    with grid.engine.begin() as conn:
        set_cluster_fields(conn, cluster.id, api_auth_type="header")
    engine.updater.run(loops=1)
    assert [e.state for e in event_rows(grid.engine, "ADMIN_TOKEN_MISSING")] == ["closed"]
    with grid.engine.begin() as conn:
        assert not event_store.is_cluster_blacklisted(conn, cluster.id)
