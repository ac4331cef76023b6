"""A campaign's tasks and the jobs that ran them: `/campaigns/<id>/jobs` (list, add tasks),
`/campaigns/<id>/jobs/finished`, `/campaigns/<id>/jobs/<task>`, and `/jobs/<id>` (show, cancel)
with its `stdout`, `stderr` and `cinfos` read from OAR as the owner's cluster login."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from cigri.api.access import now, own_campaign, own_job, tx
from cigri.api.inputs import (
    bounded,
    check_task_count,
    int_arg,
    is_text_body,
    json_body,
    lines,
    param_list,
)
from cigri.api.job_output import Stream, client, output_source, read_output
from cigri.api.shapes import (
    ApiError,
    bounded_errors,
    campaign_json,
    iso,
    job_row_json,
    json_response,
    link,
    self_link,
    status,
)
from cigri.domain.errors import JDLError
from cigri.storage import actions, queries
from cigri.storage.campaigns import add_parameters, tasks_in_bag

tasks = Blueprint("tasks", __name__)

OUTPUT_TAIL_LINES: Final = 100_000


@tasks.get("/campaigns/<id:campaign_id>/jobs")
def campaign_tasks(campaign_id: int) -> ResponseReturnValue:
    limit = int_arg("limit", 100, minimum=1, maximum=queries.MAX_PAGE)
    offset = int_arg("offset", 0)
    after = int_arg("after", 0)
    with tx() as conn:
        own_campaign(conn, campaign_id)
        total = queries.get_campaign_summary(conn, campaign_id).total_jobs
        rows = queries.list_tasks(conn, campaign_id, after=after,
                                  offset=0 if after else offset, limit=limit)
    base = f"/campaigns/{campaign_id}/jobs"
    links = [self_link(), link("parent", f"/campaigns/{campaign_id}")]
    if len(rows) == limit:
        # The keyset `after` is what makes the next page exact; `offset` is kept for v3 clients.
        next_offset = (offset if not after else 0) + limit
        links.append(link("next", f"{base}?limit={limit}&offset={next_offset}&after={rows[-1].id}"))
    items = [{"id": r.id, "name": r.name, "parameters": r.parameters, "cluster": r.cluster,
              "cigri_job_id": r.cigri_job_id, "remote_id": r.remote_id, "state": r.state,
              "href": f"{base}/{r.id}"} for r in rows]
    return json_response({"items": items, "total": total, "offset": offset, "limit": limit,
                          "links": links}, headers={"Allow": "GET,POST"})


@tasks.post("/campaigns/<id:campaign_id>/jobs")
def add_tasks(campaign_id: int) -> ResponseReturnValue:
    params: Any = lines(request.stream) if is_text_body() else param_list(json_body())
    with tx() as conn:
        owner, _state = own_campaign(conn, campaign_id)
        already = queries.get_campaign_summary(conn, campaign_id).total_jobs
        in_bag = tasks_in_bag(conn, owner)
        if isinstance(params, list):
            check_task_count(len(params), already=already, in_bag=in_bag)
        try:
            add_parameters(conn, campaign_id, bounded((line.strip() for line in params),
                                                      already=already, in_bag=in_bag),
                           now=now())
        except JDLError as error:
            raise ApiError(400, "Error", f"Error updating campaign {campaign_id}: "
                           f"{bounded_errors(error.errors)}") from error
        summary = queries.get_campaign_summary(conn, campaign_id)
    return json_response(campaign_json(summary), 201,
                         headers={"Location": f"/campaigns/{campaign_id}"})


@tasks.get("/campaigns/<id:campaign_id>/jobs/finished")
def finished_jobs(campaign_id: int) -> ResponseReturnValue:
    limit = int_arg("limit", queries.MAX_PAGE, minimum=1, maximum=queries.MAX_PAGE)
    after = int_arg("after", 0)
    with tx() as conn:
        own_campaign(conn, campaign_id)
        rows = queries.list_finished_jobs(conn, campaign_id, after=after, limit=limit)
    links = []
    if len(rows) == limit:
        links.append(link("next", f"/campaigns/{campaign_id}/jobs/finished?limit={limit}"
                                  f"&after={rows[-1]['id']}"))
    return json_response({"items": [job_row_json(r) for r in rows], "links": links})


@tasks.get("/campaigns/<id:campaign_id>/jobs/<id:task_id>")
def campaign_task(campaign_id: int, task_id: int) -> ResponseReturnValue:
    with tx() as conn:
        own_campaign(conn, campaign_id)
        task = queries.get_task(conn, campaign_id, task_id)
    return _with_links(task, f"/campaigns/{campaign_id}/jobs/{task_id}",
                       parent=f"/campaigns/{campaign_id}/jobs")


@tasks.get("/jobs/<id:job_id>")
def get_job(job_id: int) -> ResponseReturnValue:
    with tx() as conn:
        own_job(conn, job_id)
        job = queries.get_job_detail(conn, job_id)
    return _with_links(job_row_json(job), f"/jobs/{job_id}",
                       parent=f"/campaigns/{job['campaign_id']}")


@tasks.delete("/jobs/<id:job_id>")
def cancel_job(job_id: int) -> ResponseReturnValue:
    with tx() as conn:
        own_job(conn, job_id)
        actions.cancel_job(conn, job_id, now=now())
    return status(202, "Accepted", f"Job {job_id} cancel event created")


def _with_links(body: dict[str, Any], href: str, *, parent: str) -> ResponseReturnValue:
    """A task's or a job's JSON with its `self` and `parent` links."""
    body["links"] = [link("self", href), link("parent", parent)]
    return json_response(body)


def _output(job_id: int, which: Stream) -> ResponseReturnValue:
    with tx() as conn:
        source = output_source(conn, own_job(conn, job_id))
    return json_response({"output": read_output(source, which, tail=OUTPUT_TAIL_LINES)})


@tasks.get("/jobs/<id:job_id>/stdout")
def job_stdout(job_id: int) -> ResponseReturnValue:
    return _output(job_id, "stdout")


@tasks.get("/jobs/<id:job_id>/stderr")
def job_stderr(job_id: int) -> ResponseReturnValue:
    return _output(job_id, "stderr")


@tasks.get("/jobs/<id:job_id>/cinfos")
def job_cinfos(job_id: int) -> ResponseReturnValue:
    with tx() as conn:
        source = output_source(conn, own_job(conn, job_id))
    details = client(source).get_job(source.remote_id, user=source.user)
    body = {key: (iso(value) if isinstance(value, datetime) else value)
            for key, value in vars(details).items() if key != "events"}
    body["state"] = str(details.state)
    body["events"] = [{"type": e.type, "description": e.description, "date": iso(e.date)}
                      for e in details.events]
    return json_response(body)
