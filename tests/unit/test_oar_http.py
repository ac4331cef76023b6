"""The OAR client's transport against a real local HTTP server that answers from a script:
retries, failure mapping to event codes, headers and auth, proxies, OAR 3 paging and submission."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from cigri.domain.clusters import Cluster
from cigri.domain.oar import (
    OarNotFound,
    OarRejected,
    OarUnavailable,
    SubmitRequest,
    split_media_path,
)
from cigri.domain.states import AuthType, ClusterAPI
from cigri.oar.client import OarClient, client_for_cluster
from cigri.oar.http import OarAuth, RetryPolicy


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    action: str = ""  # "reset": close without answering; "truncate": cut the body; "slow"


@dataclass
class Seen:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    replies: list[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        self.script.seen.append(Seen(self.command, url.path, parse_qsl(url.query),
                                     {k.lower(): v for k, v in self.headers.items()},
                                     json.loads(raw) if raw else None))
        reply = self.script.replies.pop(0) if self.script.replies else Reply(body={"ok": True})
        if reply.action == "reset":
            linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # RST on close
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()
            return
        if reply.action == "slow":
            time.sleep(1.0)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        with contextlib.suppress(OSError):  # a client that timed out hung up: nobody to answer
            self._answer(reply, body)

    def _answer(self, reply: Reply, body: bytes) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) + (100 if reply.action == "truncate" else 0)))
        self.end_headers()
        self.wfile.write(body)
        if reply.action == "truncate":
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_DELETE = _handle


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("Handler", (_Handler,), {"script": script})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/oarapi/", script
    httpd.shutdown()
    httpd.server_close()


def _client(url: str, **options: Any) -> tuple[OarClient, list[float]]:
    slept: list[float] = []
    options.setdefault("retry", RetryPolicy(attempts=3, backoff_seconds=0.1))
    return OarClient(url, timeout_seconds=options.pop("timeout", 5.0), sleep=slept.append,
                     **options), slept


def test_get_is_retried_on_500_with_backoff(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [Reply(500, {"code": 500, "title": "x", "message": "boom"}),
                      Reply(500, {"code": 500}), Reply(body={"GLOBAL_STRESS": "0.5"})]
    client, slept = _client(url)
    assert client.get_stress_factor() == 0.5
    assert client.request_count == 3 and client.retry_count == 2 and slept == [0.1, 0.2]


def test_get_gives_up_after_the_bounded_attempts(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [Reply(503, {"code": 503, "title": "t", "message": "down"})] * 3
    client, slept = _client(url)
    with pytest.raises(OarUnavailable) as caught:
        client.probe()
    assert caught.value.status == 503 and caught.value.code == "CLUSTER_API_SERVER_ERROR"
    assert "down" in (caught.value.body or "") and len(script.seen) == 3 and len(slept) == 2


def test_get_is_retried_on_connection_reset(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [Reply(action="reset"), Reply(body={"api_version": "1.0.2"})]
    client, _ = _client(url)
    client.probe()
    assert client.request_count == 2


def test_reset_without_retries_is_connection_reset(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [Reply(action="reset")]
    client, _ = _client(url, retry=RetryPolicy(attempts=1))
    with pytest.raises(OarUnavailable) as caught:
        client.probe()
    assert caught.value.code == "CONNECTION_RESET"


def test_post_is_never_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [Reply(500, {"code": 500, "title": "Oar server error", "message": "exit 9"})]
    client, _ = _client(url)
    with pytest.raises(OarUnavailable) as caught:
        client.submit(SubmitRequest(command="true", resources="/core=1"), user="u")
    assert caught.value.code == "CLUSTER_API_SERVER_ERROR" and len(script.seen) == 1


@pytest.mark.parametrize(("status", "output"), [
    pytest.param(255, "/!\\ Cannot recognize the resource description", id="bad-resource"),
    pytest.param(254, "# ADMISSION RULE: root and oar users are not allowed", id="admission-rule"),
    pytest.param(248, "/!\\ Queue nope does not exist", id="unknown-queue"),
])
def test_oarsub_refusal_answered_500_is_a_rejection(server: tuple[str, Script], status: int,
                                                     output: str) -> None:
    url, script = server
    message = f"Oarsub command exited with status {status}: {output}"
    script.replies = [Reply(500, {"code": 500, "title": "Oar server error", "message": message})]
    client, _ = _client(url)
    with pytest.raises(OarRejected) as caught:
        client.submit(SubmitRequest(command="true", resources="/core=x"), user="u")
    assert caught.value.status == 500 and f"status {status}" in (caught.value.body or "")


def test_non_json_and_truncated_answers_are_unavailable(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [Reply(body=b"<html>oops</html>")] * 3
    client, _ = _client(url)
    with pytest.raises(OarUnavailable) as caught:
        client.get_job(1, user="u")
    assert caught.value.code == "GET_JOB" and client.request_count == 3
    script.replies = [Reply(body={"id": 1, "state": "Running"}, action="truncate")]
    client, _ = _client(url, retry=RetryPolicy(attempts=1))
    with pytest.raises(OarUnavailable):
        client.get_job(1, user="u")


def test_timeouts_are_not_retried_and_post_has_its_own_code(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [Reply(action="slow"), Reply(action="slow")]
    client, _ = _client(url, timeout=0.2)
    with pytest.raises(OarUnavailable) as caught:
        client.probe()
    assert caught.value.code == "TIMEOUT" and client.request_count == 1
    with pytest.raises(OarUnavailable) as caught:
        client.submit(SubmitRequest(command="true", resources="/core=1"), user="u")
    assert caught.value.code == "POST_TIMEOUT"


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        client, _ = _client(f"http://127.0.0.1:{port}/oarapi/", retry=RetryPolicy(attempts=2))
        with pytest.raises(OarUnavailable) as caught:
            client.probe()
    assert caught.value.code == "CONNECTION_REFUSED" and client.request_count == 2


@pytest.mark.parametrize(("status", "kind", "code"), [
    (400, OarRejected, "CLUSTER_API_BAD_REQUEST_ERROR"), (401, OarRejected, "PERMISSION_DENIED"),
    (403, OarRejected, "FORBIDDEN"), (413, OarRejected, "REQUEST_TOO_LARGE"),
    (404, OarNotFound, None), (418, OarRejected, "DELETE_JOB"),
])
def test_4xx_are_rejections_with_their_event_code(server: tuple[str, Script], status: int,
                                                  kind: type[Exception], code: str | None) -> None:
    url, script = server
    script.replies = [Reply(status, {"code": status, "title": "t", "message": "why"})]
    client, _ = _client(url)
    with pytest.raises(kind) as caught:
        client.delete_job(3, user="u")
    assert caught.value.status == status and caught.value.code == code  # type: ignore[attr-defined]
    assert len(script.seen) == 1 and script.seen[0].method == "DELETE"


def test_headers_identity_and_proxies(server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    url, script = server
    client, _ = _client(url, auth=OarAuth(identity_header="X_REMOTE_IDENT"))
    client.probe()
    client.read_file("/home/u/out.txt", user="alice", tail=5)
    root, media = script.seen
    assert root.headers["accept"] == "application/json" and "x_remote_ident" not in root.headers
    assert media.path == "/oarapi/media/home/u/out.txt" and media.query == [("tail", "5")]
    assert media.headers["x_remote_ident"] == "alice"


def test_basic_auth_and_jwt(server: tuple[str, Script]) -> None:
    url, script = server
    client, _ = _client(url, auth=OarAuth(basic=("u", "pw")))
    client.probe()
    assert script.seen[-1].headers["authorization"] == "Basic " + base64.b64encode(b"u:pw").decode()
    client, _ = _client(url, flavour="oar3", auth=OarAuth(jwt=True, tokens={"alice": "t0k"}))
    client.read_file("/home/alice/x", user="alice")
    assert script.seen[-1].headers["authorization"] == "Bearer t0k"
    assert script.seen[-1].path == "/oarapi/media"
    assert script.seen[-1].query == [("path_filename", "/home/alice/x")]
    with pytest.raises(OarRejected) as caught:
        client.get_job(1, user="bob")
    assert caught.value.code == "JWT_TOKEN_NOT_FOUND"


def _page(items: list[dict[str, Any]], total: int, offset: int) -> Reply:
    return Reply(body={"items": items, "total": total, "offset": offset})


def test_oar3_pages_by_offset_and_total(server: tuple[str, Script]) -> None:
    url, script = server
    jobs = [{"id": i, "state": "Running", "array_id": 7, "array_index": i - 6} for i in (7, 8, 9)]
    script.replies = [_page(jobs[:2], 3, 0), _page(jobs[2:], 3, 2)]
    client, _ = _client(url, flavour="oar3", page_limit=2)
    assert [job.id for job in client.get_array_jobs(7)] == [7, 8, 9]
    first, second = script.seen
    assert first.path == "/oarapi/jobs"
    assert first.query == [("details", "1"), ("array", "7"), ("limit", "2")]
    assert ("offset", "2") in second.query


def test_oar2_5_follows_next_links_against_the_origin(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [
        Reply(body={"items": [{"id": 1, "state": "Alive"}], "total": 2, "offset": 0,
                    "links": [{"rel": "next", "href": "/oarapi/resources/full?limit=1&offset=1"}]}),
        Reply(body={"items": [{"id": 2, "state": "Alive"}], "total": 2, "offset": 1, "links": []}),
    ]
    client, _ = _client(url, page_limit=1)
    assert [r.id for r in client.get_resources()] == [1, 2]
    assert script.seen[1].path == "/oarapi/resources/full"
    assert script.seen[1].query == [("limit", "1"), ("offset", "1")]


def test_oar3_submission_finds_array_ids_by_array_index(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [Reply(200, {"id": 20}), _page([
        {"id": 21, "state": "Waiting", "array_id": 20, "array_index": 2},
        {"id": 20, "state": "Waiting", "array_id": 20, "array_index": 1}], 2, 0)]
    client, _ = _client(url, flavour="oar3")
    done = client.submit(SubmitRequest(command="run", resources="core=1", params=("a", "b")),
                         user="u")
    assert done.array_id == 20 and done.job_ids == (20, 21)
    assert script.seen[0].body["resource"] == ["core=1"]


def test_chunked_bulk_status_one_request_per_chunk(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [_page([{"id": i, "state": "Running"} for i in chunk], len(chunk), 0)
                      for chunk in ([1, 2], [3, 4], [5])]
    client, _ = _client(url, chunk_size=2, admin_user="oar")
    assert [job.id for job in client.get_jobs([1, 2, 3, 4, 5, 5])] == [1, 2, 3, 4, 5]
    assert [s.query[0] for s in script.seen] == [("ids", "1:2"), ("ids", "3:4"), ("ids", "5")]
    assert all(s.headers["x-remote-ident"] == "oar" for s in script.seen)


def test_client_for_cluster() -> None:
    cluster = Cluster(id=1, name="c1", api_url="http://h/oarapi/", api_auth_header="X_REMOTE_IDENT",
                      api_chunk_size=7, api_limit=11, api_timeout_seconds=4.0)
    client = client_for_cluster(cluster, timeout_seconds=30)
    assert client.chunk_size == 7 and client.page_limit == 11 and client.http.timeout_seconds == 4.0
    assert client.http.auth.identity_header == "X_REMOTE_IDENT"
    client = client_for_cluster({"api_url": "http://h/", "api_auth_type": "password",
                                 "api_username": "u", "api_password": "p"})
    assert client.http.session.auth == ("u", "p") and client.http.timeout_seconds == 30.0
    with pytest.raises(ValueError):
        client_for_cluster({"api_url": "http://h/", "api_auth_type": "cert"})
    with pytest.raises(ValueError):
        client_for_cluster(Cluster(id=2, name="c2", api_url="http://h/", api_auth_type=AuthType.JWT))
    jwt = client_for_cluster(Cluster(id=3, name="c3", api_url="http://h/", batch=ClusterAPI.OAR3,
                                     api_auth_type=AuthType.JWT), tokens={"u": "Bearer x"})
    assert jwt.http.auth.headers_for("u") == {"Authorization": "Bearer x"}
    cert = client_for_cluster({"api_url": "https://h/", "api_auth_type": "cert"},
                              cert_file="/c.pem", key_file="/k.pem", verify_ssl=False)
    assert cert.http.session.cert == ("/c.pem", "/k.pem") and cert.http.session.verify is False


def test_running_jobs_routes_identity_and_pages_in_both_flavours(
        server: tuple[str, Script]) -> None:
    url, script = server
    job = {"id": 5, "state": "Running", "owner": "bob", "resources": [{"id": 3}, {"id": 4}]}
    script.replies = [
        Reply(body={"items": [job], "total": 2, "offset": 0, "links": [
            {"rel": "next", "href": "/oarapi/jobs/details?state=Launching,Running,Finishing"
                                    "&limit=1&offset=1"}]}),
        Reply(body={"items": [{**job, "id": 2, "state": "Launching", "resources": []}],
                    "total": 2, "offset": 1, "links": []}),
        _page([{**job, "user": "bob", "owner": None}], 1, 0),
    ]
    client, _ = _client(url, page_limit=1, admin_user="oar")
    running = client.get_running_jobs()
    assert [(j.id, j.state.value, j.resource_ids) for j in running] == [
        (2, "Launching", ()), (5, "Running", (3, 4))]
    first = script.seen[0]
    assert first.path == "/oarapi/jobs/details"
    assert first.query == [("state", "Launching,Running,Finishing"), ("limit", "1")]
    assert first.headers["x-remote-ident"] == "oar"
    oar3, _ = _client(url, flavour="oar3", auth=OarAuth(jwt=True, tokens={"oar": "Bearer adm"}))
    assert [j.owner for j in oar3.get_running_jobs()] == ["bob"]
    third = script.seen[2]
    assert third.path == "/oarapi/jobs"
    assert third.query[:4] == [("details", "1"), ("states", "Launching"), ("states", "Running"),
                               ("states", "Finishing")]
    assert third.headers["authorization"] == "Bearer adm"


def _ls(*items: dict[str, Any]) -> Reply:
    return Reply(body={"items": list(items), "total": len(items), "offset": 0,
                       "links": [{"rel": "self", "href": "/oarapi/media/ls/~/"}]})


def test_stat_file_reads_the_listing_of_the_directory(server: tuple[str, Script]) -> None:
    url, script = server
    listing = _ls({"name": "out.txt", "type": "f", "size": "21", "mtime": 1, "mode": 33188},
                  {"name": "sub", "type": "d", "size": None, "mtime": 1, "mode": 16877},
                  {"name": "ln", "type": "l out.txt", "size": "7", "mtime": 1, "mode": 41471})
    not_found = Reply(404, {"code": 404, "title": "Not found", "message": "Path not found: /x"})
    script.replies = [listing, listing, listing, listing, listing, not_found,
                      Reply(403, {"code": 403, "title": "Forbidden", "message": "no"})]
    client, _ = _client(url)
    assert client.stat_file("/home/u/out.txt", user="u") == 21
    assert client.stat_file("~/out.txt", user="u") == 21
    assert client.stat_file("/home/u/sub", user="u") is None  # a directory
    assert client.stat_file("/home/u/ln", user="u") is None  # a link: ls gives the link's size
    assert client.stat_file("/home/u/other", user="u") is None  # not listed
    assert client.stat_file("/x/y", user="u") is None  # no such directory
    with pytest.raises(OarRejected) as refused:
        client.stat_file("/root/secret", user="u")
    assert refused.value.code == "FORBIDDEN"
    paths = [s.path for s in script.seen]
    assert paths == ["/oarapi/media/ls/home/u/", "/oarapi/media/ls/~/", *["/oarapi/media/ls/home/u/"] * 3,
                     "/oarapi/media/ls/x/", "/oarapi/media/ls/root/"]
    assert all(s.headers["x-remote-ident"] == "u" for s in script.seen)
    with pytest.raises(ValueError):
        client.stat_file("relative/path", user="u")


def test_jwt_users_given_as_their_bearer_value_are_sent_as_is() -> None:
    auth = OarAuth(jwt=True, tokens={"alice": "Bearer a"})
    assert auth.headers_for("Bearer zz.yy") == {"Authorization": "Bearer zz.yy"}
    assert auth.headers_for("alice") == {"Authorization": "Bearer a"}
    with pytest.raises(OarRejected):
        auth.headers_for("bob")


def test_split_media_path() -> None:
    assert split_media_path("/home/u/out.txt") == ("/home/u", "out.txt")
    assert split_media_path("~/out.txt") == ("~", "out.txt")
    assert split_media_path("/out.txt") == ("/", "out.txt")
    assert split_media_path("/home/u/sub/") == ("/home/u", "sub")
    assert [split_media_path(p)[1] for p in ("/", "~", "/a/..", "/a/.")] == [""] * 4
