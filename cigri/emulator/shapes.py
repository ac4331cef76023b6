"""The JSON shapes of the emulated OAR API's answers: links, the root and version documents,
jobs (item, full, detailed, their resources) and resources as OAR 2.5.9 writes them (or OAR 3
when the app speaks it), and the pagination envelope of collections. A mixin of `OarApp`, which
provides the cluster, the path prefix and the flavour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from cigri.emulator.http import Request, Response, json_response
from cigri.emulator.jobs import Job
from cigri.emulator.model import Cluster

DEFAULT_LIMIT = 500
AVAILABLE_UPTO = 2147483647
STATE_NUM = {"Alive": 1, "Absent": 2, "Suspected": 3, "Dead": 4}


class Shapes:
    """The shapes of one app's answers."""

    cluster: Cluster
    prefix: str
    oar3: bool

    def link(self, rel: str, href: str, title: str | None = None) -> dict[str, str]:
        result = {"rel": rel, "href": f"{self.prefix}/{href}"}
        if title is not None:
            result["title"] = title
        return result

    def version(self, now: int) -> dict[str, Any]:
        return {
            "oar_version": self.cluster.version_string,
            "api_version": "1.0.2",
            "apilib_version": "1.0.2",
            "api_timestamp": now,
            "api_timezone": "UTC",
        }

    def root(self, now: int) -> dict[str, Any]:
        data = self.version(now)
        data["links"] = [
            {"rel": "self", "href": f"{self.prefix}/./"},
            self.link("collection", "resources", "resources"),
            self.link("collection", "resources/details", "full_resources"),
            self.link("collection", "jobs", "jobs"),
            self.link("collection", "jobs/details", "detailed_jobs"),
            self.link("collection", "jobs/table", "jobs_table"),
            self.link("collection", "config", "config"),
            self.link("collection", "admission_rules", "admission_rules"),
        ]
        return data

    def job_links(self, job_id: int) -> list[dict[str, str]]:
        return [
            self.link("self", f"jobs/{job_id}"),
            self.link("collection", f"jobs/{job_id}/resources", "resources"),
            self.link("collection", f"jobs/{job_id}/nodes", "nodes"),
        ]

    def job_item(self, job: Job, now: int) -> dict[str, Any]:
        return {
            "id": job.id,
            "name": job.name,
            "owner": job.owner,
            "queue": job.queue,
            "state": job.state,
            "submission": job.submission_time,
            "api_timestamp": now,
            "links": self.job_links(job.id),
        }

    def job_full(self, job: Job, now: int, viewer: str | None) -> dict[str, Any]:
        data = self._job_full(job, now, viewer)
        if self.oar3:  # OAR 3 model column names, next to the 2.5 ones
            data["user"], data["queue_name"] = job.owner, job.queue
        return data

    def _job_full(self, job: Job, now: int, viewer: str | None) -> dict[str, Any]:
        show_request = viewer in (job.owner, "oar", "root")
        return {
            "id": job.id,
            "array_id": job.array_id,
            "array_index": job.array_index,
            "name": job.name,
            "owner": job.owner,
            "state": job.state,
            "queue": job.queue,
            "command": job.command,
            "launching_directory": job.launching_directory,
            "type": "PASSIVE",
            "types": list(job.types),
            "properties": job.properties,
            "reservation": "None",
            "walltime": job.walltime,  # set when the job is scheduled, null before (as OAR 2.5.9)
            "submission_time": job.submission_time,
            "start_time": job.start_time,
            "stop_time": job.stop_time,
            "scheduled_start": job.scheduled_start,
            "message": job.message,
            "resubmit_job_id": job.resubmit_job_id,
            "events": [
                {
                    "event_id": e.event_id,
                    "type": e.type,
                    "job_id": e.job_id,
                    "date": e.date,
                    "description": e.description,
                    "to_check": e.to_check,
                }
                for e in job.events
            ],
            "wanted_resources": job.request.wanted(),
            "project": job.project,
            "cpuset_name": None,
            "dependencies": [],
            "exit_code": job.exit_code,
            "stdout_file": job.stdout_file,
            "stderr_file": job.stderr_file,
            "initial_request": job.initial_request if show_request else "",
            "links": self.job_links(job.id),
            "api_timestamp": now,
        }

    def job_resources(self, job: Job, now: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        resources = []
        nodes: dict[str, dict[str, Any]] = {}
        for rid in job.resources:
            row = self.resource_row(rid, now, full=True)
            row["cpuset"] = str(row["cpuset"])
            row["status"] = "assigned"
            resources.append(row)
            address = row["network_address"]
            nodes.setdefault(
                address,
                {
                    "network_address": address,
                    "status": "assigned",
                    "api_timestamp": now,
                    "links": [{"rel": "self", "href": f"{self.prefix}/resources/nodes/{address}"}],
                },
            )
        return resources, list(nodes.values())

    def job_detailed(self, job: Job, now: int, viewer: str | None, listing: bool) -> dict[str, Any]:
        data = self.job_full(job, now, viewer)
        data["resources"], data["nodes"] = self.job_resources(job, now)
        if listing:
            data["array_index"] = None
            data["resubmit_job_id"] = None
        return data

    def resource_row(self, rid: int, now: int, *, full: bool) -> dict[str, Any]:
        cluster = self.cluster
        node_index = cluster.node_of(rid)
        node = cluster.node_names[node_index]
        links = [
            self.link("member", f"resources/nodes/{node}", "node"),
            self.link("self", f"resources/{rid}"),
            self.link("collection", f"resources/{rid}/jobs", "jobs"),
        ]
        row: dict[str, Any] = {
            "id": rid,
            "state": cluster.node_state[node_index],
            "available_upto": AVAILABLE_UPTO,
            "network_address": node,
            "links": links,
            "api_timestamp": now,
        }
        if full:
            row.update(
                {
                    "type": "default",
                    "next_state": "UnChanged",
                    "finaud_decision": "NO",
                    "next_finaud_decision": "NO",
                    "state_num": STATE_NUM[cluster.node_state[node_index]],
                    "suspended_jobs": "NO",
                    "scheduler_priority": 0,
                    "cpuset": (rid - 1) % cluster.config.cores,
                    "besteffort": "YES",
                    "deploy": "NO",
                    "desktop_computing": "NO",
                    "drain": "NO",
                    "expiry_date": 0,
                    "last_job_date": cluster.last_job_date.get(rid, 0),
                    "last_available_upto": 0,
                    "host": node,
                    "cpu": node_index + 1,
                    "core": rid,
                }
            )
        return row

    # ---- collections -------------------------------------------------------------------------

    def paginate(
        self,
        request: Request,
        total: int,
        offset: int,
        limit: int,
        build: Callable[[int, int], list[dict[str, Any]]],
        now: int,
    ) -> Response:
        if total == 0:
            return json_response(200, {"items": [], "total": 0, "offset": 0, "links": []})
        items = build(offset, limit) if offset < total else []
        if self.oar3:  # no links: OAR 3 clients page by offset and total
            return json_response(200, {"items": items, "total": total, "offset": offset})
        base = [(k, v) for k, v in request.query if k != "offset"]
        path = request.raw_path

        def href(at: int) -> str:
            pairs = base if limit == 0 else [*base, ("offset", str(at))]
            query = urlencode(pairs, quote_via=quote)
            return f"{path}?{query}" if query else path

        links = [{"rel": "self", "href": href(offset)}]
        if limit and offset + limit < total:
            links.append({"rel": "next", "href": href(offset + limit)})
        if limit and offset - limit >= 0:
            links.append({"rel": "previous", "href": href(offset - limit)})
        return json_response(
            200, {"items": items, "total": total, "offset": offset, "links": links, "api_timestamp": now}
        )

    def envelope(self, request: Request, items: list[dict[str, Any]], now: int) -> Response:
        if self.oar3:
            return json_response(200, {"items": items, "total": len(items), "offset": 0})
        return json_response(
            200,
            {
                "items": items,
                "total": len(items),
                "offset": 0,
                "links": [{"rel": "self", "href": request.raw_path}],
                "api_timestamp": now,
            },
        )
