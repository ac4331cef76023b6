"""The OpenAPI 3 description of the REST API, served at `/openapi.json`.

Written by hand next to the routes; `tests/integration/test_api_openapi.py` checks that every Flask
rule is described here and every path here is a rule, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Final

from cigri import __version__
from cigri.domain.automations import ACTION_KINDS, CLUSTER_CODES, METRICS, TRIGGER_KINDS

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
    ("/campaigns/{campaign_id}/outputs", "delete", "Ask for the removal of the stdout/stderr "
     "files of a finished campaign's jobs on their clusters (the collector does it, through OAR "
     "as the owner); answers the request", 202, None),
    ("/campaigns/{campaign_id}/outputs/{purge_id}", "get", "A removal request: its state "
     "(pending, running, done, failed) and counts", 200, None),
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
    ("/notifications/{kind}", "post", "Subscribe (kind: mail, jabber, webhook, apprise, log; an "
     "apprise identity is an Apprise URL, checked here, listed masked)", 201, "subscription"),
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
    ("/rules", "get", "My automation rules (admins: ?all=1 everyone's)", 200, None),
    ("/rules", "post", "Add an automation rule (JSON definition, docs/automations.md); "
     "?admin=1: an admin's grid-wide rule", 201, "rule"),
    ("/rules/{rule_id}", "get", "A rule and its latest firings", 200, None),
    ("/rules/{rule_id}", "put", "Enable or disable a rule: {\"enabled\": true|false}", 202,
     "rule_state"),
    ("/rules/{rule_id}", "delete", "Remove a rule", 202, None),
    ("/rules/{rule_id}/test", "get", "Dry run: what the rule would have done over the last "
     "day", 200, None),
    ("/schedules", "get", "My campaign schedules (admins: ?all=1 everyone's)", 200, None),
    ("/schedules", "post", "Schedule a campaign: a JDL (with params or nb_jobs) and cron, "
     "every_minutes or start_at (docs/automations.md)", 201, "schedule"),
    ("/schedules/{schedule_id}", "get", "A schedule, its next run and its runs", 200, None),
    ("/schedules/{schedule_id}", "put", "Pause or resume a schedule: {\"enabled\": "
     "true|false}", 202, "rule_state"),
    ("/schedules/{schedule_id}", "delete", "Remove a schedule", 202, None),
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
        "identity": {"type": "string"}, "severity": {"enum": ["low", "medium", "high"]},
        "format": {"enum": ["json"]}}}}},
    "cluster_token": {"application/json": {"schema": {"type": "object", "properties": {
        "cluster_id": {"type": "integer"}, "token": {"type": "string"}}}}},
    "rule": {"application/json": {"schema": {"type": "object", "properties": {
        "name": {"type": "string"},
        "trigger": {"type": "object", "required": ["kind"], "properties": {
            "kind": {"enum": list(TRIGGER_KINDS)}, "metric": {"enum": list(METRICS)},
            "on": {"enum": ["open", "close", *CLUSTER_CODES]},
            "above": {"type": "number"}, "below": {"type": "number"},
            "after": {"type": "string", "format": "date-time"}}},
        "actions": {"type": "array", "items": {"type": "object", "required": ["do"],
                                               "properties": {"do": {"enum": list(ACTION_KINDS)},
                                                              "cluster": {"type": "string"},
                                                              "params": {"type": "array"}}}},
        "scope": {"type": "object"}, "cooldown_minutes": {"type": "number"}}}}},
    "schedule": {"application/json": {"schema": {"type": "object", "required": ["jdl"],
                                                 "properties": {
        "jdl": {"type": "object"}, "cron": {"type": "string"},
        "every_minutes": {"type": "number"}, "start_at": {"type": "string"},
        "time_zone": {"type": "string"}, "skip_if_running": {"type": "boolean"}}}}},
    "rule_state": {"application/json": {"schema": {"type": "object", "required": ["enabled"],
                                                   "properties": {"enabled": {"type": "boolean"}}}}},
    "api_token": {"application/json": {"schema": {"type": "object", "properties": {
        "name": {"type": "string"}, "expires_in_days": {"type": "integer"}}}}},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _page_int(maximum: int = 10**15, minimum: int = 0) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


_FLAG: Final = {"type": "string"}  # present and not 0/false/no/off
_LIMIT: Final = _query("limit", _page_int(1000, 1), "page size")
_AFTER: Final = _query("after", _page_int(), "keyset cursor: the last id of the previous page")
_PRETTY: Final = _query("pretty", {"type": "string"}, "indent the JSON (any value but false)")

# Every query parameter a route reads, beyond `pretty` (which all take).
QUERY: Final[dict[tuple[str, str], list[dict[str, Any]]]] = {
    ("/campaigns", "get"): [
        _query("user", {"type": "string"}, "admins: this user's campaigns"),
        _query("state", {"type": "string"}, "comma-separated states"),
        _query("all", _FLAG, "every state"), _LIMIT, _AFTER],
    ("/campaigns/{campaign_id}", "put"): [
        _query("name", {"type": "string"}, "new name"),
        _query("state", {"enum": ["paused", "in_treatment"]}, "pause or resume")],
    ("/campaigns/{campaign_id}", "delete"): [
        _query("hold", _FLAG, "pause"), _query("resume", _FLAG, "resume"),
        _query("purge", _FLAG, "delete a finished campaign")],
    ("/campaigns/{campaign_id}/jobs", "get"): [
        _LIMIT, _query("offset", _page_int(), "v3 offset"), _AFTER],
    ("/campaigns/{campaign_id}/jobs/finished", "get"): [_LIMIT, _AFTER],
    ("/campaigns/{campaign_id}/events", "get"): [
        _LIMIT, _AFTER, _query("all", _FLAG, "the whole history")],
    ("/campaigns/{campaign_id}/events", "delete"): [
        _query("resubmit", _FLAG, "resubmit the failed jobs")],
    ("/events", "get"): [_LIMIT, _AFTER],
    ("/events/{event_id}", "delete"): [_query("resubmit", _FLAG, "resubmit the job")],
    ("/gridusage", "get"): [
        _query("from", _page_int(253_402_300_799), "epoch seconds, exclusive"),
        _query("to", _page_int(253_402_300_799), "epoch seconds, inclusive")],
    ("/notifications", "get"): [_query("admin", _FLAG, "admins: the admin channel")],
    ("/notifications/{kind}", "post"): [_query("admin", _FLAG, "admins: the admin channel")],
    ("/notifications/{kind}", "delete"): [
        _query("identity", {"type": "string"}, "the subscription to remove"),
        _query("admin", _FLAG, "admins: the admin channel")],
    ("/tokens", "get"): [_query("admin", _FLAG, "admins: the oar login's tokens")],
    ("/tokens", "post"): [_query("admin", _FLAG, "admins: the oar login's tokens")],
    ("/tokens/{cluster_id}", "delete"): [_query("admin", _FLAG, "admins: the oar login's tokens")],
    ("/rules", "get"): [_query("all", _FLAG, "admins: everyone's rules")],
    ("/rules", "post"): [_query("admin", _FLAG, "admins: a grid-wide rule")],
    ("/schedules", "get"): [_query("all", _FLAG, "admins: everyone's schedules")],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _items(name: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": _ref(name)}}}


# The success body of each route (the `Status` body when not listed).
SUCCESS: Final[dict[tuple[str, str], dict[str, Any]]] = {
    ("/", "get"): _ref("Links"),
    ("/openapi.json", "get"): {"type": "object", "required": ["openapi", "paths"]},
    ("/metrics", "get"): {"type": "string"},
    ("/whoami", "get"): _ref("WhoAmI"),
    ("/campaigns", "get"): _items("Campaign"),
    ("/campaigns", "post"): _ref("Campaign"),
    ("/campaigns/{campaign_id}", "get"): _ref("CampaignDetail"),
    ("/campaigns/{campaign_id}", "put"): _ref("Campaign"),
    ("/campaigns/{campaign_id}/outputs", "delete"): _ref("OutputsRemoved"),
    ("/campaigns/{campaign_id}/outputs/{purge_id}", "get"): _ref("OutputsRemoved"),
    ("/campaigns/{campaign_id}/stats", "get"): _ref("Stats"),
    ("/campaigns/{campaign_id}/jdl", "get"): {"type": "object"},
    ("/campaigns/{campaign_id}/jobs", "get"): _items("Task"),
    ("/campaigns/{campaign_id}/jobs", "post"): _ref("Campaign"),
    ("/campaigns/{campaign_id}/jobs/finished", "get"): _items("Job"),
    ("/campaigns/{campaign_id}/jobs/{task_id}", "get"): _ref("TaskDetail"),
    ("/campaigns/{campaign_id}/events", "get"): _items("Event"),
    ("/events", "get"): _items("Event"),
    ("/events/{event_id}", "get"): _ref("Event"),
    ("/jobs/{job_id}", "get"): _ref("Job"),
    ("/jobs/{job_id}/stdout", "get"): _ref("Output"),
    ("/jobs/{job_id}/stderr", "get"): _ref("Output"),
    ("/jobs/{job_id}/cinfos", "get"): {"type": "object"},
    ("/clusters", "get"): _items("ClusterItem"),
    ("/clusters/{cluster_id}", "get"): _ref("Cluster"),
    ("/gridusage", "get"): _items("GridUsage"),
    ("/notifications", "get"): _items("Subscription"),
    ("/tokens", "get"): _items("ClusterToken"),
    ("/api-tokens", "get"): _items("ApiToken"),
    ("/api-tokens", "post"): _ref("ApiTokenCreated"),
    ("/rules", "get"): _items("Rule"),
    ("/rules", "post"): _ref("Rule"),
    ("/rules/{rule_id}", "get"): _ref("RuleDetail"),
    ("/rules/{rule_id}/test", "get"): _items("RuleDryRun"),
    ("/schedules", "get"): _items("Schedule"),
    ("/schedules", "post"): _ref("Schedule"),
    ("/schedules/{schedule_id}", "get"): _ref("Schedule"),
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _operation(path: str, method: str, summary: str, status: int, body: str | None
               ) -> dict[str, Any]:
    parameters = [{"name": part[1:-1], "in": "path", "required": True,
                   "schema": {"type": "string"} if part == "{kind}" else
                   {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}}
                  for part in path.split("/") if part.startswith("{")]
    parameters += [*QUERY.get((path, method), []), _PRETTY]
    success = SUCCESS.get((path, method), _ref("Status"))
    # Prometheus' text exposition format, not JSON.
    content_type = "text/plain" if path == "/metrics" else "application/json"
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters,
        "responses": {
            str(status): {"description": "success",
                          "content": {content_type: {"schema": success}}},
            "400": _error("bad request or refused action"),
            "401": _error("bad, expired or revoked token"),
            "403": _error("not authenticated, not yours, admins only, or over a site limit"),
            "404": _error("no such object"),
            "405": _error("method not allowed"),
            "503": _error("the request's work took longer than API_STATEMENT_TIMEOUT"),
        },
    }
    if path.startswith("/jobs/{job_id}/"):
        operation["responses"]["502"] = _error("the cluster failed")
    if path in {"/", "/openapi.json"}:
        operation["security"] = []
    if body:
        operation["requestBody"] = {"content": _BODIES[body]}
        operation["responses"]["413"] = _error("JSON body over API_MAX_JSON_BYTES")
    return operation


def _document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, method, summary, status, body in ROUTES:
        paths.setdefault(path, {})[method] = _operation(path, method, summary, status, body)
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
                **_SCHEMAS,
            },
        },
        "security": [{"bearer": []}, {"proxy": []}],
    }


_STATUS_SCHEMA: Final[dict[str, Any]] = {"type": "object", "required": ["status", "title", "message"],
                         "properties": {"status": {"type": "integer"},
                                        "title": {"type": "string"},
                                        "message": {"type": "string"}}}


def _object(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required),
            "properties": {**required, **optional}}


_INT: Final = {"type": "integer"}
_STR: Final = {"type": "string"}
_NUM: Final = {"type": "number"}
_BOOL: Final = {"type": "boolean"}
_N_INT: Final = {"type": "integer", "nullable": True}
_N_STR: Final = {"type": "string", "nullable": True}
_N_NUM: Final = {"type": "number", "nullable": True}
_LINKS: Final = {"type": "array", "items": _object({"rel": _STR, "href": _STR}, title=_STR)}

_CAMPAIGN: Final = {
    "id": _INT, "name": _STR, "user": _STR, "state": _STR, "type": _STR, "has_events": _BOOL,
    "submission_time": _N_INT, "submission_date": _N_STR, "completion_date": _N_STR,
    "total_jobs": _INT, "finished_jobs": _INT, "links": _LINKS}
_CLUSTER_STATS: Final = _object({
    "cluster_id": _N_INT, "cluster_name": _N_STR, "terminated": _INT, "active": _INT,
    "failures": _INT, "resubmissions": _INT, "average_duration": _N_NUM,
    "stddev_duration": _N_NUM, "jobs_per_hour": _NUM, "failure_rate": _N_NUM,
    "resubmit_rate": _N_NUM})

_RULE: Final = {
    "id": _INT, "name": _STR, "owner": _STR, "admin": _BOOL, "enabled": _BOOL, "trigger": _STR,
    "actions": _STR, "cooldown_minutes": _NUM, "definition": {"type": "object"}}

_SCHEMAS: Final[dict[str, Any]] = {
    "Links": _object({"links": _LINKS}),
    "WhoAmI": _object({"user": _STR, "is_admin": _BOOL, "method": _STR}),
    "Campaign": _object(_CAMPAIGN),
    "CampaignDetail": _object({**_CAMPAIGN, "clusters": {
        "type": "object", "additionalProperties": _object({
            "cluster_name": _STR, "active_jobs": _INT, "queued_jobs": _INT,
            "prologue_ok": _BOOL, "epilogue_ok": _BOOL})}}),
    "OutputsRemoved": _object({**_STATUS_SCHEMA["properties"], "id": _INT, "state": _STR,
                               "removed": _INT, "missing": _INT,
                               "errors": {"type": "array", "items": _STR}},
                              campaign_id=_INT, requested_at=_N_STR, finished_at=_N_STR,
                              links=_LINKS),
    "Stats": _object({
        "average_jobs_duration": _N_NUM, "stddev_jobs_duration": _N_NUM,
        "jobs_throughput": _N_NUM, "remaining_time": _N_NUM, "failures_rate": _N_NUM,
        "resubmit_rate": _N_NUM, "clusters": {"type": "array", "items": _CLUSTER_STATS},
        "campaign": {**_CLUSTER_STATS, "nullable": True},
        "forecast": _object({"total_tasks": _INT, "finished_tasks": _INT, "progress": _NUM,
                             "jobs_per_hour": _NUM, "eta_seconds": _N_NUM}),
        "collection": {"type": "object", "nullable": True}}),
    "Task": _object({"id": _INT, "name": _N_STR, "parameters": _N_STR, "cluster": _N_STR,
                     "cigri_job_id": _N_INT, "remote_id": _N_INT, "state": _STR,
                     "href": _STR}),
    "TaskDetail": _object({"id": _INT, "name": _N_STR, "parameters": _N_STR, "state": _STR,
                           "execution": {"type": "array", "items": {"type": "object"}}}),
    "Event": _object({"id": _INT, "class": _STR, "code": _STR, "state": _STR,
                      "job_id": _N_INT, "cluster_id": _N_INT, "campaign_id": _N_INT,
                      "checked": _BOOL, "notified": _BOOL, "date_open": _N_STR,
                      "message": _N_STR, "links": _LINKS},
                     cluster_name=_N_STR, parent=_N_INT, date_closed=_N_STR,
                     date_update=_N_STR),
    "Job": _object({"id": _INT, "campaign_id": _INT, "state": _STR},
                   param_id=_N_INT, cluster_id=_N_INT, remote_id=_N_INT, grid_user=_STR,
                   cluster_name=_N_STR),
    "Output": _object({"output": _STR}),
    "ClusterItem": _object({"id": _INT, "name": _STR, "links": _LINKS}),
    "Cluster": _object({"id": _INT, "name": _STR, "api_url": _STR, "enabled": _BOOL,
                        "blacklisted": _BOOL, "under_stress": _BOOL, "links": _LINKS}),
    "GridUsage": _object({"date": _N_INT, "clusters": {"type": "array", "items": _object({
        "cluster_id": _INT, "cluster_name": _N_STR, "max_resources": _N_INT,
        "used_resources": _N_INT, "used_by_cigri": _N_INT,
        "unavailable_resources": _N_INT})}}),
    "Subscription": _object({"id": _INT, "grid_user": _STR, "type": _STR, "identity": _STR,
                             "severity": _STR}, format=_N_STR),
    "ClusterToken": _object({"cluster_id": _INT, "token": _STR}),
    "ApiToken": _object({"id": _INT, "user": _STR, "name": _N_STR, "created_at": _N_STR,
                         "expires_at": _N_STR, "last_used_at": _N_STR, "revoked_at": _N_STR}),
    "ApiTokenCreated": _object({"id": _INT, "user": _STR, "token": _STR}),
    "Rule": _object(_RULE),
    "RuleDetail": _object({**_RULE, "firings": {"type": "array", "items": _object({
        "id": _INT, "campaign_id": _N_INT, "trigger": _STR, "fired_at": _STR, "state": _STR,
        "outcome": _N_STR})}}),
    "Schedule": _object({"id": _INT, "name": _STR, "owner": _STR, "enabled": _BOOL,
                         "when": _STR, "next_run_at": _N_STR, "last_campaign_id": _N_INT,
                         "runs": _INT, "skipped": _INT, "last_error": _N_STR,
                         "definition": {"type": "object"}}),
    "RuleDryRun": _object({"at": _STR, "campaign_id": _INT, "trigger": _STR, "actions": _STR}),
}

DOCUMENT: Final = _document()
