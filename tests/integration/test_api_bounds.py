"""Issue 16 points 1 and 3: one request cannot do unbounded work, and no input shape gets a 500.

Site limits on tasks (per campaign, per user in the bag), JDL numbers bounded, a statement
timeout on request work, ingestion rolled back when the client goes, JSON bodies capped, ids
beyond the columns 404, bad text and shapes 400 with a JSON message, bounded error bodies, and
authentication before any body is read.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from cigri.api.server import serve_tcp
from cigri.domain.clock import FakeClock
from cigri.storage.db import set_statement_timeout
from cigri.storage.tables import bag_of_tasks, campaigns
from tests.integration.api_helpers import Api, jdl, make_api


@pytest.fixture
def api(pg_engine: Engine, clock: FakeClock) -> Iterator[Api]:
    yield make_api(pg_engine, clock, MAX_TASKS_PER_CAMPAIGN=100, MAX_TASKS_PER_USER=150,
                   API_MAX_JSON_BYTES=20_000)


def _campaign_count(api: Api) -> int:
    with api.engine.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(campaigns)).scalar_one())


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body["status"] == status and isinstance(body["message"], str)
    return str(body["message"])


# ---------------------------------------------------------------- point 1: bounded work


def test_a_billion_nb_jobs_is_refused_naming_the_site_limit(api: Api) -> None:
    started = time.monotonic()
    message = _error(api.call("POST", "/campaigns", json=jdl(nb_jobs=1_000_000_000)), 400)
    assert "MAX_TASKS_PER_CAMPAIGN" in message and "100" in message
    assert time.monotonic() - started < 5 and _campaign_count(api) == 0


def test_streamed_lines_past_the_campaign_limit_roll_back(api: Api) -> None:
    header = json.dumps({"name": "s", "clusters": {"dahu": {"exec_file": "e"}}})
    body = header + "\n" + "".join(f"t{i}\n" for i in range(101))
    response = api.call("POST", "/campaigns", data=body, content_type="text/plain")
    assert "MAX_TASKS_PER_CAMPAIGN" in _error(response, 400)
    assert _campaign_count(api) == 0


def test_the_users_tasks_in_the_bag_are_bounded(api: Api) -> None:
    api.submit(jdl(nb_jobs=100))
    message = _error(api.call("POST", "/campaigns", json=jdl(nb_jobs=60)), 403)
    assert "MAX_TASKS_PER_USER" in message and "150" in message
    assert _error(api.call("POST", "/campaigns", json=jdl(params=[f"p{i}" for i in range(51)])),
                  403)
    api.submit(jdl(nb_jobs=10), user="bob")  # another user's bag is their own
    with api.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(bag_of_tasks)).scalar_one() == 110


def test_adding_tasks_counts_the_campaigns_tasks_and_rolls_back(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=90))
    response = api.call("POST", f"/campaigns/{campaign_id}/jobs",
                        data="".join(f"x{i}\n" for i in range(11)), content_type="text/plain")
    assert "MAX_TASKS_PER_CAMPAIGN" in _error(response, 400)
    response = api.call("POST", f"/campaigns/{campaign_id}/jobs", json=[f"y{i}" for i in range(11)])
    assert "MAX_TASKS_PER_CAMPAIGN" in _error(response, 400)
    assert api.call("GET", f"/campaigns/{campaign_id}").get_json()["total_jobs"] == 90


@pytest.mark.parametrize(("extra", "where"), [
    ({"max_resubmissions": 10**20}, "max_resubmissions"),
    ({"max_jobs": 10**20}, "max_jobs"),
    ({"walltime": "100000000000000000000"}, "walltime"),
    ({"walltime": 10**20}, "walltime"),
    ({"walltime": "9000:00:00"}, "walltime"),
])
def test_unbounded_jdl_numbers_are_refused(api: Api, extra: dict[str, Any], where: str) -> None:
    message = _error(api.call("POST", "/campaigns", json=jdl(**extra)), 400)
    assert where in message and "at most" in message
    assert _campaign_count(api) == 0


def test_a_year_of_walltime_is_still_accepted(api: Api) -> None:
    api.submit(jdl(walltime="8000:00:00", max_resubmissions=1000, max_jobs=2**31 - 1))


def test_request_statements_are_bounded_by_the_statement_timeout(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        set_statement_timeout(conn, 0.2)
        assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "200ms"
        with pytest.raises(OperationalError, match="statement timeout"):
            conn.execute(select(func.pg_sleep(2)))
    with pg_engine.begin() as conn:  # SET LOCAL: gone with the transaction
        assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "0"


def test_a_statement_over_the_timeout_is_a_503_and_creates_nothing(pg_engine: Engine,
                                                                   clock: FakeClock) -> None:
    api = make_api(pg_engine, clock, API_STATEMENT_TIMEOUT=0.001)
    response = api.call("POST", "/campaigns", json=jdl(nb_jobs=300_000))
    assert "API_STATEMENT_TIMEOUT" in _error(response, 503)
    assert _campaign_count(api) == 0


def test_ingestion_stops_and_rolls_back_when_the_client_goes(pg_engine: Engine,
                                                             clock: FakeClock) -> None:
    api = make_api(pg_engine, clock, MAX_TASKS_PER_CAMPAIGN=50_000_000,
                   MAX_TASKS_PER_USER=50_000_000)
    server = serve_tcp(api.app, "127.0.0.1:0", threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        body = json.dumps(jdl(nb_jobs=20_000_000)).encode()
        with socket.create_connection(("127.0.0.1", server.effective_port)) as client:
            client.sendall(b"POST /campaigns HTTP/1.1\r\nHost: x\r\nX-Cigri-User: alice\r\n"
                           b"Content-Type: application/json\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(1.0)  # ingestion is under way
        deadline = time.monotonic() + 15
        busy = 1
        while time.monotonic() < deadline and busy:
            time.sleep(0.2)
            with pg_engine.begin() as conn:
                busy = int(conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state <> 'idle'")).scalar_one())
        assert busy == 0, "the ingestion went on after the client had gone"
        assert _campaign_count(api) == 0
    finally:
        server.close()
        thread.join(timeout=30)


# ---------------------------------------------------------------- point 3: size and shape


def test_json_bodies_are_capped_with_a_413_and_streams_are_not(api: Api) -> None:
    big = jdl(params=[f"p{i} {'x' * 200}" for i in range(100)])
    message = _error(api.call("POST", "/campaigns", json=big), 413)
    assert "API_MAX_JSON_BYTES" in message
    campaign_id = api.submit(jdl(nb_jobs=1))
    response = api.call("POST", f"/campaigns/{campaign_id}/jobs", json=[f"p{i} {'x' * 300}"
                                                                         for i in range(80)])
    assert _error(response, 413)
    header = json.dumps({"name": "s", "clusters": {"dahu": {"exec_file": "e"}}})
    streamed = header + "\n" + "".join(f"q{i} {'x' * 300}\n" for i in range(90))
    response = api.call("POST", "/campaigns", data=streamed, content_type="text/plain")
    assert response.status_code == 201, response.get_json()


_ID_ROUTES = [
    ("GET", "/campaigns/{}"), ("PUT", "/campaigns/{}?name=x"), ("DELETE", "/campaigns/{}"),
    ("GET", "/campaigns/{}/stats"), ("GET", "/campaigns/{}/jdl"), ("GET", "/campaigns/{}/jobs"),
    ("POST", "/campaigns/{}/jobs"), ("GET", "/campaigns/{}/jobs/finished"),
    ("GET", "/campaigns/{}/events"), ("DELETE", "/campaigns/{}/events"),
    ("DELETE", "/campaigns/{}/outputs"), ("GET", "/clusters/{}"), ("DELETE", "/tokens/{}"),
    ("DELETE", "/api-tokens/{}"), ("GET", "/campaigns/1/jobs/{}"), ("GET", "/events/{}"),
    ("DELETE", "/events/{}"), ("GET", "/jobs/{}"), ("DELETE", "/jobs/{}"),
    ("GET", "/jobs/{}/stdout"), ("GET", "/jobs/{}/stderr"), ("GET", "/jobs/{}/cinfos"),
]


@pytest.mark.parametrize("number", [2**31, 10**12, 10**18 - 1])
def test_ids_beyond_any_column_are_404_on_every_route(api: Api, number: int) -> None:
    api.submit(jdl())
    for method, pattern in _ID_ROUTES:
        kwargs: dict[str, Any] = {"json": ["a"]} if method == "POST" else {}
        response = api.call(method, pattern.format(number), user="root", **kwargs)
        assert response.status_code == 404, (method, pattern, response.get_json())
        assert response.get_json()["status"] == 404


_REST = '"nb_jobs": 1, "clusters": {"dahu": {"exec_file": "e"}}}'


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/campaigns", '{"name": "a\\u0000b", ' + _REST),
    ("POST", "/campaigns", '{"name": "a\\ud800b", ' + _REST),
    ("POST", "/campaigns", '{"name": "' + "n" * 300 + '", ' + _REST),
    ("POST", "/campaigns", "[" * 1000 + "]" * 1000),
    ("POST", "/campaigns", '{"name": ' + "[" * 1000 + "]" * 1000 + "}"),
    ("POST", "/campaigns", '{"name": ["a"], ' + _REST),
    ("POST", "/campaigns/{cid}/jobs", '["a\\u0000b"]'),
    ("POST", "/campaigns/{cid}/jobs", '["\\udc00"]'),
    ("POST", "/campaigns/{cid}/jobs", "[" * 1000 + "]" * 1000),
    ("PUT", "/campaigns/{cid}", '{"name": "a\\u0000"}'),
    ("PUT", "/campaigns/{cid}", '{"name": "\\ud800"}'),
    ("PUT", "/campaigns/{cid}", '{"name": "' + "n" * 300 + '"}'),
    ("PUT", "/campaigns/{cid}", '{"name": ["x"]}'),
    ("POST", "/notifications/mail", '{"identity": "a\\u0000@x", "severity": "low"}'),
    ("POST", "/notifications/mail", '{"identity": "\\ud800", "severity": "low"}'),
    ("POST", "/notifications/mail", '{"identity": ["x"], "severity": "low"}'),
    ("POST", "/notifications/mail", '{"identity": "x", "severity": "low", "format": "\\ud800"}'),
    ("POST", "/api-tokens", '{"name": "a\\u0000"}'),
    ("POST", "/api-tokens", '{"name": "\\ud800"}'),
    ("POST", "/api-tokens", '{"name": "' + "n" * 300 + '"}'),
    ("POST", "/tokens", '{"cluster_id": 99999999999, "token": "t"}'),
    ("POST", "/events", '{"class": "cluster", "code": "C", "cluster_id": 99999999999}'),
    ("POST", "/events", '{"class": "cluster", "code": "C\\u0000", "cluster_id": 1}'),
    ("POST", "/events", '{"class": "cluster", "code": "' + "c" * 300 + '", "cluster_id": 1}'),
    ("GET", "/gridusage?from=1000000000000000", None),
    ("GET", "/gridusage?to=1000000000000000", None),
    ("GET", "/campaigns?after=99999999999999", None),
    ("GET", "/campaigns/{cid}/jobs?after=99999999999999999999", None),
])
def test_bad_text_and_shapes_are_400_with_a_json_message(api: Api, method: str, path: str,
                                                         body: str | None) -> None:
    campaign_id = api.submit(jdl())
    response = api.call(method, path.format(cid=campaign_id), user="root", data=body,
                        content_type="application/json")
    assert response.status_code in {400, 404}, (response.status_code, response.get_data()[:300])
    assert response.get_json()["message"]


def test_error_bodies_give_the_first_errors_and_a_count(api: Api) -> None:
    document = jdl(params=[1] * 1000)
    message = _error(api.call("POST", "/campaigns", json=document), 400)
    assert "params[0]" in message and "1000 in all" in message and len(message) < 2000
    many = {f"k{i}": 1 for i in range(1000)} | jdl()
    message = _error(api.call("POST", "/campaigns", json=many), 400)
    assert "top-level keys" in message and len(message) < 2000


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/campaigns"), ("POST", "/campaigns/1/jobs"), ("PUT", "/campaigns/1"),
    ("POST", "/events"), ("POST", "/notifications/mail"), ("POST", "/tokens"),
    ("POST", "/api-tokens")])
def test_a_bad_body_from_nobody_is_403(api: Api, method: str, path: str) -> None:
    response = api.call(method, path, user=None, data="{not json", content_type="application/json")
    assert _error(response, 403) == "Access denied: not authenticated"
