"""The OpenAPI 3 description of the REST API, served at `/openapi.json`.

Written by hand next to the routes; `tests/integration/test_api_openapi.py` checks that every Flask
rule is described here and every path here is a rule, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Final

from cigri import __version__

_ERROR: Final = {"$ref": "#/components/schemas/Error"}


# (path, method, summary, success status, request body kind or None)
ROUTES: Final[list[tuple[str, str, str, int, str | None]]] = [
    ("/", "get", "Links to the collections", 200, None),
    ("/openapi.json", "get", "This description", 200, None),
    ("/metrics", "get", "Prometheus metrics of the grid (docs/metrics.md)", 200, None),
    ("/whoami", "get", "The caller's identity as the API sees it", 200, None),
    ("/campaigns", "get", "My campaigns (admins: everyone's); in_treatment and paused unless "
     "state=... or all=1; keyset pages with after/limit", 200, None),
    ("/campaigns", "post", "Submit a campaign: a JDL (application/json), or a text/plain body "
     "whose first line is the JDL and whose other lines are parameters (streamed)", 201, "jdl"),
    ("/campaigns/{campaign_id}", "get", "A campaign with per-cluster counts", 200, None),
    ("/campaigns/{campaign_id}", "put", "Rename (name) or pause/resume (state=paused|"
     "in_treatment); never revives a finished campaign", 202, "form"),
    ("/campaigns/{campaign_id}", "delete", "Cancel; or ?hold=1 pause, ?resume=1 resume, "
     "?purge=1 delete a finished campaign", 202, None),
    ("/campaigns/{campaign_id}/outputs", "delete", "Remove the stdout/stderr files of a finished "
     "campaign's jobs on their clusters, through OAR as the owner; answers the counts", 202,
     None),
    ("/campaigns/{campaign_id}/stats", "get", "Duration, throughput, remaining time, rates; "
     "per-cluster figures, the forecast (progress, ETA) and the collected files' counts", 200,
     None),
    ("/campaigns/{campaign_id}/jdl", "get", "The stored, expanded JDL", 200, None),
    ("/campaigns/{campaign_id}/jobs", "get", "Tasks with their latest job; limit, offset, after "
     "(keyset: follow the next link)", 200, None),
    ("/campaigns/{campaign_id}/jobs", "post", "Add tasks: a JSON array of parameter lines or a "
     "streamed text/plain body", 201, "params"),
    ("/campaigns/{campaign_id}/jobs/finished", "get", "Jobs in terminated or event state", 200,
     None),
    ("/campaigns/{campaign_id}/jobs/{task_id}", "get", "A task and each of its jobs", 200, None),
    ("/campaigns/{campaign_id}/events", "get", "Open events (all=1: the whole history)", 200,
     None),
    ("/campaigns/{campaign_id}/events", "delete", "Close the campaign's events but BLACKLIST and "
     "USER_FRAG; ?resubmit=1 puts their jobs back", 202, None),
    ("/events", "get", "Open global (cluster-wide) events", 200, None),
    ("/events", "post", "Admin: create an event (CLUSTER_MANUALLY_DISABLED, MANUAL_EVENT)", 201,
     "event"),
    ("/events/{event_id}", "get", "One event", 200, None),
    ("/events/{event_id}", "delete", "Close an event; ?resubmit=1 puts its job back", 202, None),
    ("/jobs/{job_id}", "get", "One job", 200, None),
    ("/jobs/{job_id}", "delete", "Cancel one job (nikita kills it)", 202, None),
    ("/jobs/{job_id}/stdout", "get", "The job's stdout, read on its cluster as its owner", 200,
     None),
    ("/jobs/{job_id}/stderr", "get", "The job's stderr, read on its cluster as its owner", 200,
     None),
    ("/jobs/{job_id}/cinfos", "get", "The cluster's details of the job", 200, None),
    ("/clusters", "get", "Enabled clusters", 200, None),
    ("/clusters/{cluster_id}", "get", "One cluster (no credentials)", 200, None),
    ("/gridusage", "get", "Grid usage snapshots (from exclusive, to inclusive, epoch)", 200, None),
    ("/notifications", "get", "My notification subscriptions", 200, None),
    ("/notifications/{kind}", "post", "Subscribe (kind: mail, jabber, webhook, log)", 201,
     "subscription"),
    ("/notifications/{kind}", "delete", "Unsubscribe ?identity=...", 202, None),
    ("/tokens", "get", "My OAR 3 JWT cluster tokens (masked); for an admin the clusters' "
     "admin tokens (?mine=1: the admin's own; ?admin=1: admins only)", 200, None),
    ("/tokens", "post", "Register (or replace) an OAR 3 JWT for a jwt cluster; an admin's is the "
     "cluster-admin token (?mine=1: the admin's own)", 201, "cluster_token"),
    ("/tokens/{cluster_id}", "delete", "Remove my JWT (an admin: the cluster-admin token) for a "
     "cluster", 202, None),
    ("/api-tokens", "get", "My API bearer tokens (never the secret)", 200, None),
    ("/api-tokens", "post", "Create an API bearer token; the secret is shown once", 201,
     "api_token"),
    ("/api-tokens/{token_id}", "delete", "Revoke an API bearer token", 202, None),
]

_BODIES: Final[dict[str, dict[str, Any]]] = {
    "jdl": {"application/json": {"schema": {"type": "object"}},
            "text/plain": {"schema": {"type": "string"}}},
    "params": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}},
               "text/plain": {"schema": {"type": "string"}}},
    "form": {"application/json": {"schema": {"type": "object", "properties": {
        "name": {"type": "string"}, "state": {"enum": ["paused", "in_treatment"]}}}}},
    "event": {"application/json": {"schema": {"type": "object", "required": ["class", "code"]}}},
    "subscription": {"application/json": {"schema": {"type": "object", "properties": {
        "identity": {"type": "string"}, "severity": {"enum": ["low", "medium", "high"]}}}}},
    "cluster_token": {"application/json": {"schema": {"type": "object", "properties": {
        "cluster_id": {"type": "integer"}, "token": {"type": "string"}}}}},
    "api_token": {"application/json": {"schema": {"type": "object", "properties": {
        "name": {"type": "string"}, "expires_in_days": {"type": "integer"}}}}},
}


def _operation(path: str, summary: str, status: int, body: str | None) -> dict[str, Any]:
    parameters = [{"name": part[1:-1], "in": "path", "required": True,
                   "schema": {"type": "string" if part == "{kind}" else "integer"}}
                  for part in path.split("/") if part.startswith("{")]
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters,
        "responses": {
            str(status): {"description": "success"},
            "400": {"description": "bad request", "content": {"application/json": {"schema": _ERROR}}},
            "403": {"description": "not authenticated or not yours",
                    "content": {"application/json": {"schema": _ERROR}}},
            "404": {"description": "no such object",
                    "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if path in {"/", "/openapi.json", "/metrics"}:
        operation["security"] = []
    if body:
        operation["requestBody"] = {"content": _BODIES[body]}
    return operation


def _document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, method, summary, status, body in ROUTES:
        paths.setdefault(path, {})[method] = _operation(path, summary, status, body)
    return {
        "openapi": "3.0.3",
        "info": {"title": "cigri REST API", "version": __version__,
                 "description": "CiGri v3 paths and shapes; see docs/api.md."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "proxy": {"type": "apiKey", "in": "header", "name": "X-Cigri-User",
                          "description": "only from API_TRUSTED_PROXIES"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["status", "title", "message"],
                          "properties": {"status": {"type": "integer"},
                                         "title": {"type": "string"},
                                         "message": {"type": "string"}}},
                "Status": _STATUS_SCHEMA,
            },
        },
        "security": [{"bearer": []}, {"proxy": []}],
    }


_STATUS_SCHEMA: Final = {"type": "object", "properties": {
    "status": {"type": "integer"}, "title": {"type": "string"}, "message": {"type": "string"}}}

DOCUMENT: Final = _document()
