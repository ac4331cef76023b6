"""The OAR 2.5 REST API of one emulated cluster, as a WSGI application: routing, content
negotiation, identity, the jobs and media endpoints of the real OAR 2.5.9 (or OAR 3's), with the
fault knobs applied to every answer. The WSGI plumbing (request, response, fault knobs) is
`cigri.emulator.http`, the JSON shapes `cigri.emulator.shapes`; the admin API under
`/_emulator/` is in `cigri.emulator.server`."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from cigri.accounts import UnixAccount
from cigri.emulator import control, userfs
from cigri.emulator.http import (
    APACHE_401,
    JSON_TYPE,
    Faults,
    Request,
    Response,
    StartResponse,
    basic_credentials,
    error,
    json_response,
    send,
)
from cigri.emulator.jobs import ApiError
from cigri.emulator.model import Cluster
from cigri.emulator.shapes import DEFAULT_LIMIT, Shapes

log = logging.getLogger(__name__)


def _apache_401() -> Response:
    return Response(401, APACHE_401, "text/html; charset=iso-8859-1",
                    [("WWW-Authenticate", 'Basic realm="OAR API Authentication"')])


class OarApp(Shapes):
    """WSGI application serving one cluster under `mount` + `prefix`: `/oarapi` on the cluster's
    own port, `/c1/oarapi` when the clusters share one port (`mount="/c1"`). Every link it writes
    carries the whole path, so a client following them stays on its cluster."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        prefix: str = "/oarapi",
        mount: str = "",
        faults: Faults | None = None,
        admin: Callable[[Request], Response] | None = None,
        passwords: dict[str, str] | None = None,
        api: str = "oar2.5",
        secret: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.mount = mount.rstrip("/")
        self.prefix = self.mount + prefix.rstrip("/")
        self.admin_path = self.mount + "/_emulator/"
        self.faults = faults or Faults()
        self.admin = admin
        self.requests = 0
        self.passwords = passwords  # login -> password for basic auth; None: the password is the login
        self.secret = secret  # when set, every request needs basic auth with this password
        if api not in ("oar2.5", "oar3"):
            raise ValueError(f"unknown API flavour {api!r}")
        self.oar3 = api == "oar3"  # answer in OAR 3 (FastAPI) shapes

    def password_ok(self, login: str, password: str) -> bool:
        if self.secret is not None:
            return hmac.compare_digest(password.encode(), self.secret.encode())
        if self.passwords is None:
            return bool(login) and password == login
        return self.passwords.get(login) == password

    # ---- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ, self.prefix)
        basic = basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if self.secret is not None and (basic is None or not self.password_ok(*basic)):
            response = _apache_401()
        elif request.raw_path.startswith(self.admin_path) and self.admin is not None:
            response = self.admin(request)
        elif basic is not None and not self.password_ok(*basic):
            # Apache's basic auth (the harness's /oarapi-priv): a bad password never reaches OAR
            response = _apache_401()
        else:
            self.requests += 1
            if self.faults.latency > 0:
                time.sleep(self.faults.latency)
            fault = self.faults.draw()
            if fault is not None and fault[1] == "error":
                response = Response(
                    fault[0],
                    b"<html><body><h1>Internal Server Error</h1></body></html>\n",
                    "text/html; charset=iso-8859-1",
                )
            else:
                try:
                    response = self.handle(request)
                except ApiError as failure:
                    response = error(failure.code, failure.title, failure.message)
                except Exception:
                    log.exception("emulator failure on %s %s", request.method, request.raw_path)
                    response = error(500, "Internal emulator error", "see the emulator log")
                if fault is not None and fault[1] == "truncated":
                    response.body = response.body[: max(1, len(response.body) // 2)]
                elif fault is not None and fault[1] == "nonjson":
                    response = Response(fault[0], b"<html><body>Proxy error</body></html>\n", "text/html")
        if self.oar3 and response.status >= 400 and response.content_type == JSON_TYPE:
            response = self.oar3_error(response)
        return send(response, start_response)

    def oar3_error(self, response: Response) -> Response:
        """OAR 3 (FastAPI) error bodies are `{"detail": ...}`."""
        try:
            body = json.loads(response.body)
        except ValueError:
            return response
        if isinstance(body, dict) and "message" in body:
            return json_response(response.status, {"detail": body["message"]}, response.headers)
        return response

    # ---- dispatch ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = self._negotiate(request)
        if isinstance(path, Response):
            return path
        request.environ["emulator.path_with_suffix"] = request.raw_path
        job_match = re.match(r"^/jobs/(\d+)(/details|/resources|/nodes)?$", path)
        route = {"GET": self._get, "POST": self._post, "DELETE": self._delete}.get(request.method)
        answer = route(request, path, job_match) if route is not None else None
        if answer is None:
            return error(404, "Not found", f"No way to handle your request {path}")
        return answer

    def _negotiate(self, request: Request) -> str | Response:
        """The route's path (format suffix taken off), or the refusal of an unknown format."""
        path = request.path
        if path is None:
            return error(404, "Not found", f"No way to handle your request {request.raw_path}")
        if path == "":
            path = "/"
        suffix = None
        match = re.match(r"^(.*?)\.(json|yaml|html)$", path)
        if match and not path.startswith("/media/"):
            path, suffix = match.group(1) or "/", match.group(2)
        if path == "/.":
            path = "/"
        accept = request.environ.get("HTTP_ACCEPT", "")
        content_type = request.environ.get("CONTENT_TYPE", "")
        if suffix is not None:
            if suffix != "json":
                return error(406, f"Unsupported format {suffix}", "the emulator only speaks JSON")
        elif not self.oar3 and "application/json" not in accept and "application/json" not in content_type:
            shown = accept or content_type or "*/*"
            return error(
                406,
                f"Invalid content type required {shown}",
                "Valid types are text/yaml, application/json or text/html",
            )
        return path

    def _get(self, request: Request, path: str, job_match: re.Match[str] | None) -> Response | None:
        cluster = self.cluster
        now = cluster.now()
        if path == "/":
            return json_response(200, self.root(now))
        if path == "/version":
            return json_response(200, self.version(now))
        if path == "/timezone":
            return json_response(200, {"timezone": "UTC", "api_timestamp": now})
        if path == "/whoami":
            return json_response(
                200, {"authenticated_user": request.identity or "", "api_timestamp": now}
            )
        if path in ("/jobs", "/jobs/details", "/jobs/table"):
            details = path == "/jobs/details" or "details" in request.args
            return self.list_jobs(request, details=details)
        if job_match:
            return self.get_job(request, int(job_match.group(1)), job_match.group(2))
        if path in ("/resources", "/resources/full", "/resources/details"):
            return self.list_resources(request, full=path != "/resources" or "detailed" in request.args)
        res_match = re.match(r"^/resources/(\d+)$", path)
        if res_match:
            rid = int(res_match.group(1))
            if not 1 <= rid <= cluster.total_cores:
                return error(404, "Resource not found", "Resource not found")
            return json_response(200, self.resource_row(rid, now, full=True))
        node_match = re.match(r"^/resources/nodes/([^/]+)$", path)
        if node_match:
            return self.node_resources(request, node_match.group(1))
        if path == "/stress_factor" or path == "/stress_factor/":
            return json_response(
                200,
                {
                    "GLOBAL_STRESS": cluster.stress,
                    "api_timestamp": now,
                    "links": [{"rel": "self", "href": f"{self.prefix}/stress_factor"}],
                },
            )
        if path.startswith("/media/ls/"):
            return self.media_ls(request, path[len("/media/ls") :])
        if path.startswith("/media/"):
            return self.media_get(request, path[len("/media") :])
        if path == "/media" and "path_filename" in request.args:
            return self.media_get(request, request.args["path_filename"])
        return None

    def _post(self, request: Request, path: str, job_match: re.Match[str] | None) -> Response | None:
        if path == "/jobs":
            return self.post_job(request)
        del_match = re.match(r"^/jobs/(array/)?(\d+)/deletions/new$", path)
        if del_match:
            return self.delete_jobs(
                request, int(del_match.group(2)), array=bool(del_match.group(1)), via_post=True
            )
        hold_match = re.match(r"^/jobs/(array/)?(\d+)/(holds|resumptions)/new$", path)
        if hold_match:
            return self.hold_or_resume(
                request,
                int(hold_match.group(2)),
                array=bool(hold_match.group(1)),
                hold=hold_match.group(3) == "holds",
            )
        if job_match and job_match.group(2) is None:
            return self.post_job_method(request, int(job_match.group(1)))
        return None

    def _delete(self, request: Request, path: str, job_match: re.Match[str] | None) -> Response | None:
        if job_match and job_match.group(2) is None:
            return self.delete_jobs(
                request,
                int(job_match.group(1)),
                array=request.args.get("array") in ("true", "1"),
                via_post=False,
            )
        if path.startswith("/media/"):
            return self.media_delete(request, path[len("/media") :])
        return None

    # ---- collections (shapes: cigri.emulator.shapes) ---------------------------------------

    def _int_arg(self, request: Request, key: str, default: int) -> int:
        value = request.args.get(key, "")
        return int(value) if value.isdigit() else default

    def list_jobs(self, request: Request, *, details: bool) -> Response:
        states_text = ",".join(request.all("state") + request.all("states"))
        states = [s for s in states_text.split(",") if s] or None
        ids: list[int] | None = None
        if "ids" in request.args or "job_ids" in request.args:
            ids = [
                int(x)
                for x in ":".join([*request.all("ids"), *request.all("job_ids")]).replace(",", ":").split(":")
                if x.strip().isdigit()
            ]
        array_text = request.args.get("array", "")
        array = int(array_text) if array_text.isdigit() else None
        since, until = request.args.get("from", ""), request.args.get("to", "")
        jobs = control.select_jobs(
            self.cluster,
            states=states,
            array=array,
            ids=ids,
            user=request.args.get("user") or None,
            since=int(since) if since.isdigit() else None,
            until=int(until) if until.isdigit() else None,
        )
        now = self.cluster.now()
        offset = self._int_arg(request, "offset", 0)
        limit = self._int_arg(request, "limit", DEFAULT_LIMIT)

        def build(start: int, count: int) -> list[dict[str, Any]]:
            page = jobs[start:] if count == 0 else jobs[start : start + count]
            with self.cluster.lock:
                if details:
                    return [self.job_detailed(j, now, request.login, listing=not self.oar3) for j in page]
                return [self.job_item(j, now) for j in page]

        return self.paginate(request, len(jobs), offset, limit, build, now)

    def list_resources(self, request: Request, *, full: bool) -> Response:
        now = self.cluster.now()
        offset = self._int_arg(request, "offset", 0)
        limit = self._int_arg(request, "limit", DEFAULT_LIMIT)
        total = self.cluster.total_cores

        def build(start: int, count: int) -> list[dict[str, Any]]:
            return [
                self.resource_row(rid, now, full=full)
                for rid in range(start + 1, min(total, start + count) + 1)
            ]

        return self.paginate(request, total, offset, limit, build, now)

    def node_resources(self, request: Request, node: str) -> Response:
        cluster = self.cluster
        if node not in cluster.node_names:
            return json_response(200, {"items": [], "total": 0, "offset": 0, "links": []})
        index = cluster.node_names.index(node)
        now = cluster.now()
        cores = cluster.config.cores
        items = [
            self.resource_row(rid, now, full=False)
            for rid in range(index * cores + 1, (index + 1) * cores + 1)
        ]
        return self.envelope(request, items, now)

    # ---- jobs --------------------------------------------------------------------------------

    def need_login(self, request: Request, action: str) -> str:
        if request.login is None:
            raise ApiError(
                401, "Permission denied", f"A suitable authentication must be done before {action}"
            )
        return request.login

    def get_job(self, request: Request, job_id: int, sub: str | None) -> Response:
        if sub in (None, "/details"):
            self.need_login(request, "looking at jobs")
        job = self.cluster.get(job_id)
        if job is None:
            return error(404, "Job not found", "Job not found")
        now = self.cluster.now()
        with self.cluster.lock:
            if sub is None:
                return json_response(200, self.job_full(job, now, request.login))
            if sub == "/details":
                return json_response(200, self.job_detailed(job, now, request.login, listing=False))
            resources, nodes = self.job_resources(job, now)
        return self.envelope(request, resources if sub == "/resources" else nodes, now)

    def post_job(self, request: Request) -> Response:
        login = self.need_login(request, "posting jobs")
        content_type = request.environ.get("CONTENT_TYPE", "").split(";")[0].strip()
        raw = request.body()
        if content_type == "application/json":
            try:
                body = json.loads(raw.decode() or "null")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return error(400, "JSON data not understood", "JSON data not understood")
        elif content_type == "application/x-www-form-urlencoded":
            body = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        else:
            return error(
                406,
                "Job description must be in YAML or JSON",
                "The correct format for a job request is text/yaml or application/json. ",
            )
        submitted = self.cluster.submit(login, body)
        first = submitted.ids[0]
        if self.oar3:  # 200 with the smallest id only, no cmd_output
            return json_response(200, {"id": first})
        return json_response(
            201,
            {
                "id": first,
                "links": [self.link("self", f"jobs/{first}")],
                "api_timestamp": self.cluster.now(),
                "cmd_output": submitted.cmd_output,
            },
            headers=[("Location", f"{self.prefix}/jobs/{first}")],
        )

    def post_job_method(self, request: Request, job_id: int) -> Response:
        login = self.need_login(request, "modifying jobs")
        try:
            body = json.loads(request.body().decode() or "null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or "method" not in body:
            return error(400, "Missing Required Field", "A method must be given")
        if body["method"] != "delete":
            return error(400, "Bad query", f"Unsupported method {body['method']}")
        output = self.cluster.delete(login, [job_id])
        return json_response(
            202,
            {
                "id": str(job_id),
                "status": "Delete request registered",
                "cmd_output": output,
                "api_timestamp": self.cluster.now(),
                "links": [self.link("self", f"jobs/{job_id}")],
            },
        )

    def delete_jobs(self, request: Request, job_id: int, *, array: bool, via_post: bool) -> Response:
        login = self.need_login(request, "deleting jobs")
        ids = [job_id]
        if array:
            with self.cluster.lock:
                ids = list(self.cluster.arrays.get(job_id, []))
            if not ids:
                raise ApiError(
                    400,
                    "Oardel error",
                    f"Oardel command exited with status 256: Cannot find array "
                    f"{job_id}. (Command was: oardel --array {job_id})",
                )
        if self.oar3:  # 200 {id, cmd_output, exit_status}, even when oardel fails
            try:
                output, status = self.cluster.delete(login, ids), 0
            except ApiError as failure:
                output, status = failure.message, 1
            return json_response(200, {"id": job_id, "cmd_output": output, "exit_status": status})
        output = self.cluster.delete(login, ids)
        now = self.cluster.now()
        if via_post:
            return json_response(
                202,
                {
                    "id": str(job_id),
                    "status": "Delete request registered",
                    "cmd_output": output,
                    "api_timestamp": now,
                    "links": [self.link("self", f"jobs/{job_id}")],
                },
            )
        return json_response(
            202,
            {
                "id": str(job_id),
                "status": "Delete request registered",
                "oardel_output": output,
                "api_timestamp": now,
            },
        )

    def hold_or_resume(self, request: Request, job_id: int, *, array: bool, hold: bool) -> Response:
        """oarhold (Waiting -> Hold) and oarresume (Hold -> Waiting)."""
        login = self.need_login(request, "modifying jobs")
        with self.cluster.lock:
            ids = list(self.cluster.arrays.get(job_id, [])) if array else [job_id]
        output = self.cluster.hold_or_resume(login, ids, hold=hold)
        action = "Hold" if hold else "Resume"
        return json_response(
            202,
            {
                "id": str(job_id),
                "status": f"{action} request registered",
                "cmd_output": output,
                "api_timestamp": self.cluster.now(),
                "links": [self.link("self", f"jobs/{job_id}")],
            },
        )

    # ---- media -------------------------------------------------------------------------------

    def media_path(self, request: Request, rest: str, action: str) -> tuple[str, UnixAccount | None]:
        """The file a `/media` path names (`~` is the login's home) and who reads it: the Unix
        user of the login when the emulator runs jobs as their logins, else the emulator."""
        login = self.need_login(request, action)
        home = self.cluster.home_of(login)
        user = self.cluster.unix_user_of(login)
        if self.cluster.config.run_as == "login" and (home is None or user is None):
            raise ApiError(
                401,
                "Permission denied",
                "Oardodo error: 52: [OARDODO] ERROR: Cannot get information regarding the target user "
                "(Success)\n\n",
            )
        path = rest if rest.startswith("/") else "/" + rest
        if path.startswith("/~/"):
            path = path.replace("/~/", (home or "/nonexistent").rstrip("/") + "/", 1)
        return path, user

    def media_get(self, request: Request, rest: str) -> Response:
        path, user = self.media_path(request, rest, "getting files")
        data = userfs.read_file(path, user)
        tail = request.args.get("tail", "")
        if tail.isdigit() and int(tail) > 0:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail) :])
        return Response(200, data, "application/octet-stream; charset=ISO-8859-1")

    def media_ls(self, request: Request, rest: str) -> Response:
        path, user = self.media_path(request, rest, "getting files")
        items = userfs.list_dir(path, user)
        return (
            self.envelope(request, items, self.cluster.now())
            if items
            else json_response(200, {"items": [], "total": 0, "offset": 0, "links": []})
        )

    def media_delete(self, request: Request, rest: str) -> Response:
        path, user = self.media_path(request, rest, "deleting files")
        userfs.delete(path, user)
        return Response(204, b"")
