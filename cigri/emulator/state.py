"""The emulator's optional state file: jobs, events and counters as JSON, so a restarted emulator
remembers every job. Jobs that were running in execute mode lost their process and end in Error."""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import os
from typing import Any

from cigri.emulator.jobs import Event, Job
from cigri.emulator.model import Cluster
from cigri.emulator.resources import Group, ResourceRequest

log = logging.getLogger(__name__)


def _job_to_dict(job: Job) -> dict[str, Any]:
    data = dataclasses.asdict(job)
    data["request"] = {
        "walltime": job.request.walltime,
        "groups": [
            {"levels": [list(lv) for lv in g.levels], "properties": g.properties} for g in job.request.groups
        ],
    }
    return data


def _job_from_dict(data: dict[str, Any]) -> Job:
    request = data.pop("request")
    events = [Event(**e) for e in data.pop("events")]
    job = Job(
        **data,
        events=events,
        request=ResourceRequest(
            walltime=request["walltime"],
            groups=tuple(
                Group(levels=tuple((lv[0], lv[1]) for lv in g["levels"]), properties=g["properties"])
                for g in request["groups"]
            ),
        ),
    )
    return job


def save_state(path: str, clusters: list[Cluster]) -> None:
    """Write every cluster's jobs atomically."""
    payload = []
    for cluster in clusters:
        with cluster.lock:
            payload.append(
                {
                    "name": cluster.config.name,
                    "next_job_id": cluster.next_job_id,
                    "next_event_id": cluster.next_event_id,
                    "stress": cluster.stress,
                    "jobs": [_job_to_dict(j) for j in cluster.jobs.values()],
                    "completions": [[a, i, n] for (a, i), n in cluster.completions.items()],
                }
            )
            cluster.dirty = False
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, path)


def load_state(path: str, clusters: list[Cluster]) -> None:
    """Restore jobs saved by `save_state` into freshly built clusters (matched by name)."""
    with open(path) as f:
        payload = json.load(f)
    by_name = {c.config.name: c for c in clusters}
    for saved in payload:
        cluster = by_name.get(saved["name"])
        if cluster is None:
            continue
        with cluster.lock:
            cluster.next_job_id = saved["next_job_id"]
            cluster.next_event_id = saved["next_event_id"]
            cluster.stress = saved.get("stress", "0")
            for a, i, n in saved.get("completions", []):
                cluster.completions[(a, i)] = n
            now = cluster.now()
            for data in saved["jobs"]:
                job = _job_from_dict(data)
                cluster.jobs[job.id] = job
                cluster.arrays.setdefault(job.array_id, []).append(job.id)
                if job.state in ("Terminated", "Error"):
                    continue
                cluster.active.add(job.id)
                if job.state in ("Launching", "toLaunch"):  # not started yet: schedule it again
                    job.state, job.resources, job.scheduled_start, job.walltime = "Waiting", [], None, None
                if job.state == "Waiting":
                    cluster.queues[job.queue].append(job.id)
                elif job.state in ("Running", "Finishing"):
                    _resume_running(cluster, job, now)
            for ids in cluster.arrays.values():
                ids.sort()
            for queue in cluster.queues.values():
                ordered = sorted(queue)
                queue.clear()
                queue.extend(ordered)
            cluster.dirty = True
    log.info("emulator state restored from %s", path)


def _resume_running(cluster: Cluster, job: Job, now: int) -> None:
    """A job running when the emulator stopped: simulated ones go on, executed ones are lost."""
    rids = [r for r in job.resources if r in cluster.free]
    for rid in rids:
        cluster.free.discard(rid)
        cluster.node_free[cluster.node_of(rid)].discard(rid)
    if cluster.config.mode == "simulate" and job.state == "Running":
        if job.queue == "besteffort":
            cluster.running_besteffort.add(job.id)
        seconds, status = cluster.config.workload.draw(job.command, cluster.rng)
        job.pending_exit = status << 8
        end = max(float(now), job.start_time + seconds)
        cluster._push(end, "end", job.id, job.token)
        cluster._push(job.start_time + (job.walltime or job.wanted_walltime), "walltime", job.id, job.token)
        heapq.heapify(cluster.heap)
        return
    job.kill_reason = "lost"
    if job.state == "Finishing":
        cluster.releasing += len(job.resources)
    cluster._event(job, "EXTERMINATE_JOB", f"[Leon] Job {job.id} was lost when the emulator restarted", now)
    cluster._finish(job, exit_code=None, at=now)
