"""Who is calling and what they may touch: every identity method, every object of another user,
forged headers, tokens, and SQL-injection attempts in ids and filters."""

from __future__ import annotations

import http.client
import os
import pwd
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from cigri.api import create_app
from cigri.api.app import PEER_UID_KEY
from cigri.api.server import serve_tcp, serve_unix_socket
from cigri.config import build_settings
from cigri.domain.clock import FakeClock
from cigri.storage.tables import api_tokens, campaigns, events, parameters, user_notifications
from tests.integration.api_helpers import Api, jdl, make_api

OTHER_SYSTEM_USER = "nobody"


@pytest.fixture
def api(pg_engine: Engine, clock: FakeClock) -> Iterator[Api]:
    yield make_api(pg_engine, clock)


def _token(api: Api, user: str) -> str:
    response = api.call("POST", "/api-tokens", user=user, json={"name": "t"})
    assert response.status_code == 201
    return str(response.get_json()["token"])


Caller = Callable[..., Any]


def _callers(api: Api) -> dict[str, Caller]:
    """User B through each identity method: proxy header, bearer token, Unix-socket peer."""
    bob_token = _token(api, "bob")
    nobody_uid = pwd.getpwnam(OTHER_SYSTEM_USER).pw_uid

    def by_proxy(method: str, path: str, **kwargs: Any) -> Any:
        return api.call(method, path, user="bob", **kwargs)

    def by_token(method: str, path: str, **kwargs: Any) -> Any:
        return api.client.open(path, method=method,
                               headers={"Authorization": f"Bearer {bob_token}"}, **kwargs)

    def by_socket(method: str, path: str, **kwargs: Any) -> Any:
        return api.client.open(path, method=method, environ_base={PEER_UID_KEY: nobody_uid},
                               **kwargs)

    return {"proxy": by_proxy, "token": by_token, "socket": by_socket}


def _alice_world(api: Api) -> dict[str, int]:
    campaign_id = api.submit(jdl(nb_jobs=2))
    with api.engine.begin() as conn:
        task = conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == campaign_id).limit(1)).scalar_one()
        job = api.add_job(campaign_id, param_id=task, cluster_id=1, state="running",
                          remote_id=42)
        event = conn.execute(insert(events).values(
            class_="job", code="EXIT_ERROR", state="open", campaign_id=campaign_id, job_id=job,
            cluster_id=1).returning(events.c.id)).scalar_one()
    api.call("POST", "/notifications/mail", json={"identity": "alice@x", "severity": "low"})
    return {"campaign": campaign_id, "task": task, "job": job, "event": event}


def _snapshot(api: Api) -> tuple[Any, ...]:
    with api.engine.begin() as conn:
        return (
            tuple(conn.execute(select(campaigns.c.id, campaigns.c.state, campaigns.c.name,
                                      campaigns.c.nb_jobs).order_by(campaigns.c.id))),
            tuple(conn.execute(select(events.c.id, events.c.state).order_by(events.c.id))),
            conn.execute(select(func.count()).select_from(parameters)).scalar_one(),
            tuple(conn.execute(select(user_notifications.c.identity))),
        )


def _requests_on(ids: dict[str, int]) -> list[tuple[str, str, dict[str, Any]]]:
    c, t, j, e = ids["campaign"], ids["task"], ids["job"], ids["event"]
    return [
        ("GET", f"/campaigns/{c}", {}), ("GET", f"/campaigns/{c}/stats", {}),
        ("GET", f"/campaigns/{c}/jdl", {}), ("GET", f"/campaigns/{c}/jobs", {}),
        ("GET", f"/campaigns/{c}/jobs/finished", {}), ("GET", f"/campaigns/{c}/jobs/{t}", {}),
        ("GET", f"/campaigns/{c}/events", {}), ("GET", f"/campaigns/{c}/events?all=1", {}),
        ("PUT", f"/campaigns/{c}?name=stolen", {}), ("PUT", f"/campaigns/{c}?state=paused", {}),
        ("DELETE", f"/campaigns/{c}", {}), ("DELETE", f"/campaigns/{c}?hold=1", {}),
        ("DELETE", f"/campaigns/{c}?resume=1", {}), ("DELETE", f"/campaigns/{c}?purge=1", {}),
        ("POST", f"/campaigns/{c}/jobs", {"json": ["z 1"]}),
        ("DELETE", f"/campaigns/{c}/events", {}), ("DELETE", f"/campaigns/{c}/events?resubmit=1", {}),
        ("GET", f"/events/{e}", {}), ("DELETE", f"/events/{e}", {}),
        ("GET", f"/jobs/{j}", {}), ("DELETE", f"/jobs/{j}", {}),
        ("GET", f"/jobs/{j}/stdout", {}), ("GET", f"/jobs/{j}/stderr", {}),
        ("GET", f"/jobs/{j}/cinfos", {}),
        ("GET", "/campaigns?user=alice", {}),
        ("DELETE", "/notifications/mail?identity=alice@x", {}),
        ("POST", "/events", {"json": {"class": "job", "job_id": j, "code": "MANUAL_EVENT"}}),
    ]


@pytest.mark.parametrize("method_name", ["proxy", "token", "socket"])
def test_another_user_can_neither_read_nor_change_my_objects(api: Api, method_name: str) -> None:
    ids = _alice_world(api)
    caller = _callers(api)[method_name]
    before = _snapshot(api)
    for method, path, kwargs in _requests_on(ids):
        response = caller(method, path, **kwargs)
        assert response.status_code in {403, 404}, (method, path, response.get_json())
        body = response.get_json()
        assert set(body) == {"status", "title", "message"}
    assert _snapshot(api) == before
    assert caller("GET", "/campaigns").get_json()["items"] == []
    assert caller("GET", "/notifications").get_json()["items"] == []


def test_the_owner_and_an_admin_may(api: Api) -> None:
    ids = _alice_world(api)
    for user in ("alice", "root"):
        assert api.call("GET", f"/campaigns/{ids['campaign']}", user=user).status_code == 200
        assert api.call("GET", f"/jobs/{ids['job']}", user=user).status_code == 200
        assert api.call("GET", f"/events/{ids['event']}", user=user).status_code == 200


def test_a_forged_identity_header_from_a_non_proxy_address_is_ignored(api: Api) -> None:
    response = api.client.get("/campaigns", headers={"X-Cigri-User": "root"},
                              environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert response.status_code == 403
    assert response.get_json()["message"] == "Access denied: not authenticated"


def test_the_identity_header_name_is_configurable_v3_style(pg_engine: Engine,
                                                            clock: FakeClock) -> None:
    app = create_app(build_settings({"API_TRUSTED_PROXIES": "127.0.0.1",
                                     "API_HEADER_USERNAME": "HTTP_X_REMOTE_USER"}),
                     pg_engine, clock=clock)
    client = app.test_client()
    assert client.get("/whoami", headers={"X-Remote-User": "carol"}).get_json()["user"] == "carol"
    assert client.get("/whoami", headers={"X-Cigri-User": "carol"}).status_code == 403


def test_tokens_are_stored_hashed_and_can_be_revoked_or_expire(api: Api) -> None:
    response = api.call("POST", "/api-tokens", json={"name": "ci", "expires_in_days": 1})
    token, token_id = response.get_json()["token"], response.get_json()["id"]
    with api.engine.begin() as conn:
        stored = conn.execute(select(api_tokens.c.token_hash)).scalar_one()
    assert token not in stored and len(stored) == 64
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/whoami", headers=headers).get_json() == {
        "user": "alice", "is_admin": False, "method": "token"}
    listed = api.call("GET", "/api-tokens").get_json()["items"]
    assert [item["id"] for item in listed] == [token_id] and "token" not in listed[0]
    api.clock.advance(timedelta(days=2))
    assert api.client.get("/whoami", headers=headers).status_code == 401
    other = _token(api, "alice")
    other_id = api.call("GET", "/api-tokens").get_json()["items"][-1]["id"]
    assert api.call("DELETE", f"/api-tokens/{other_id}", user="bob").status_code == 404
    assert api.call("DELETE", f"/api-tokens/{other_id}").status_code == 202
    refused = api.client.get("/whoami", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 401
    assert api.client.get("/whoami", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_a_token_wins_over_a_proxy_header(api: Api) -> None:
    token = _token(api, "bob")
    response = api.call("GET", "/whoami", user="root", headers={"Authorization": f"Bearer {token}"})
    assert response.get_json()["user"] == "bob"


@pytest.mark.parametrize("attempt", [
    pytest.param("/campaigns/1%20OR%201=1", id="path-id"),
    pytest.param("/campaigns/1;DELETE%20FROM%20campaigns", id="path-id-statement"),
    pytest.param("/jobs/1'--", id="job-id"),
    pytest.param("/events/1)%20OR%20(1=1", id="event-id"),
    pytest.param("/campaigns?state=in_treatment'%20OR%20'1'='1", id="state-filter"),
    pytest.param("/campaigns?user=alice'%20OR%20'1'='1", id="user-filter"),
    pytest.param("/campaigns?limit=1%20OR%201=1", id="limit"),
    pytest.param("/campaigns?after=0;DROP%20TABLE%20campaigns", id="after"),
    pytest.param("/campaigns/1/jobs?offset=0;DROP%20TABLE%20jobs", id="offset"),
    pytest.param("/campaigns/1/events?limit=1'", id="events-limit"),
    pytest.param("/gridusage?from=0%20OR%201=1", id="gridusage-from"),
    pytest.param("/gridusage?to=1;DROP%20TABLE%20grid_usage", id="gridusage-to"),
])
def test_sql_injection_attempts_get_a_4xx_and_change_nothing(api: Api, attempt: str) -> None:
    _alice_world(api)
    before = _snapshot(api)
    methods = ("GET",) if "?" in attempt else ("GET", "DELETE", "PUT")
    for method in methods:
        response = api.call(method, attempt)
        assert 400 <= response.status_code < 500, (method, attempt, response.status_code)
    assert _snapshot(api) == before


def test_injection_in_a_notification_identity_is_just_data(api: Api) -> None:
    _alice_world(api)
    hostile = "x'); DROP TABLE user_notifications; --"
    response = api.call("DELETE", "/notifications/mail", query_string={"identity": hostile})
    assert response.status_code == 404
    assert api.call("POST", "/notifications/mail",
                    json={"identity": hostile, "severity": "low"}).status_code == 201
    items = api.call("GET", "/notifications").get_json()["items"]
    assert {item["identity"] for item in items} == {"alice@x", hostile}


# ---------------------------------------------------------------- over real sockets


@pytest.fixture
def served(pg_engine: Engine, clock: FakeClock) -> Iterator[dict[str, Any]]:
    api = make_api(pg_engine, clock)
    directory = Path(tempfile.mkdtemp(prefix="cigri-sock-"))
    directory.chmod(0o755)
    socket_path = str(directory / "api.sock")
    tcp = serve_tcp(api.app, "127.0.0.1:0", threads=2)
    unix = serve_unix_socket(api.app, socket_path, threads=2)
    threads = [threading.Thread(target=server.run, daemon=True) for server in (tcp, unix)]
    for thread in threads:
        thread.start()
    try:
        yield {"api": api, "port": tcp.effective_port, "socket": socket_path}
    finally:
        tcp.close()
        unix.close()
        Path(socket_path).unlink(missing_ok=True)
        directory.rmdir()


def _whoami_over_socket(path: str, *, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    connection = http.client.HTTPConnection("localhost")
    connection.sock = sock
    connection.request("GET", "/whoami", headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def test_the_unix_socket_names_the_connecting_user_and_ignores_headers(
        served: dict[str, Any]) -> None:
    status, body = _whoami_over_socket(served["socket"], headers={"X-Cigri-User": "alice"})
    me = pwd.getpwuid(os.getuid()).pw_name
    assert status == 200
    assert f'"user": "{me}"'.encode() in body and b'"method": "socket"' in body


def test_the_unix_socket_names_another_system_user(served: dict[str, Any]) -> None:
    other = pwd.getpwnam(OTHER_SYSTEM_USER)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child becomes `nobody` and asks who it is
        try:
            os.close(read_end)
            os.setgid(other.pw_gid)
            os.setuid(other.pw_uid)
            status, body = _whoami_over_socket(served["socket"])
            os.write(write_end, f"{status} ".encode() + body)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer.startswith(b"200 ")
    assert f'"user": "{OTHER_SYSTEM_USER}"'.encode() in answer
    assert b'"is_admin": false' in answer


def test_tcp_peers_get_no_socket_identity_and_forged_headers_are_ignored(
        pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock, API_TRUSTED_PROXIES="10.1.2.3")
    tcp = serve_tcp(api.app, "127.0.0.1:0", threads=2)
    thread = threading.Thread(target=tcp.run, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", tcp.effective_port, timeout=10)
        connection.request("GET", "/whoami", headers={"X-Cigri-User": "root"})
        response = connection.getresponse()
        assert response.status == 403
        assert b"not authenticated" in response.read()
    finally:
        tcp.close()
