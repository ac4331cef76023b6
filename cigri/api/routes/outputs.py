"""`/campaigns/<id>/outputs`: removing a finished campaign's output files on its clusters. The
API only records the request (`DELETE` answers 202 with its id); the collector carries it out in
bounded batches through OAR as the owner's cluster login, and `GET .../outputs/<request id>`
follows its progress (`gridclean --outputs` does). An event says how it ended."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue

from cigri.api.access import now, own_campaign, tx, who
from cigri.api.shapes import ApiError, iso, json_response, link
from cigri.domain.output_purge import summary
from cigri.domain.states import CampaignState
from cigri.storage import output_purges

outputs = Blueprint("outputs", __name__)


def _purge_json(purge: output_purges.OutputPurge, status: int, title: str) -> dict[str, Any]:
    base = f"/campaigns/{purge.campaign_id}/outputs/{purge.id}"
    message = (summary(purge.campaign_id, removed=purge.removed, missing=purge.missing,
                       errors=purge.errors)
               if purge.finished_at is not None else
               f"Removal of the output files of campaign {purge.campaign_id} is {purge.state} "
               f"(request {purge.id}; {purge.removed} removed so far)")
    return {"status": status, "title": title, "message": message, "id": purge.id,
            "campaign_id": purge.campaign_id, "state": purge.state, "removed": purge.removed,
            "missing": purge.missing, "errors": list(purge.errors),
            "requested_at": iso(purge.requested_at), "finished_at": iso(purge.finished_at),
            "links": [link("self", base), link("parent", f"/campaigns/{purge.campaign_id}")]}


@outputs.delete("/campaigns/<id:campaign_id>/outputs")
def delete_outputs(campaign_id: int) -> ResponseReturnValue:
    """Ask for the removal of the stdout/stderr files of a finished campaign's jobs (for a
    temporal-grouping batch also its sub-jobs' own files and its state file): 202 with the
    request, which the collector carries out."""
    identity = who()
    with tx() as conn:
        _owner, state = own_campaign(conn, campaign_id)
        if state not in {CampaignState.TERMINATED.value, CampaignState.CANCELLED.value}:
            raise ApiError(400, "Error", f"Campaign {campaign_id} is {state}: only the output "
                           "files of a finished campaign are removed")
        purge_id = output_purges.request_purge(conn, campaign_id, requested_by=identity.user,
                                               now=now())
        purge = output_purges.get_purge(conn, purge_id, campaign_id=campaign_id)
    return json_response(_purge_json(purge, 202, "Accepted"), 202,
                         headers={"Location": f"/campaigns/{campaign_id}/outputs/{purge_id}"})


@outputs.get("/campaigns/<id:campaign_id>/outputs/<id:purge_id>")
def output_purge(campaign_id: int, purge_id: int) -> ResponseReturnValue:
    """A removal request: its state (pending, running, done, failed) and counts so far."""
    with tx() as conn:
        own_campaign(conn, campaign_id)
        purge = output_purges.get_purge(conn, purge_id, campaign_id=campaign_id)
    return json_response(_purge_json(purge, 200, "OK"))
