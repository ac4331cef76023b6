"""`DELETE /campaigns/<id>/outputs`: remove the stdout/stderr files of a finished campaign's jobs
on their clusters, through OAR as the owner's cluster login."""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from cigri.api.access import oar_for, own_campaign, tx
from cigri.api.shapes import ApiError, json_response
from cigri.domain import batches
from cigri.domain.oar import OarError, OarNotFound
from cigri.domain.states import CampaignState
from cigri.storage import queries
from cigri.storage.clusters import get_cluster

outputs = Blueprint("outputs", __name__)


@outputs.delete("/campaigns/<id:campaign_id>/outputs")
def delete_outputs(campaign_id: int) -> ResponseReturnValue:
    """Remove the stdout/stderr files of a finished campaign's jobs on their clusters, through
    OAR as the owner's cluster login; for a temporal-grouping batch also its sub-jobs' own
    stdout/stderr and its state file. Nothing is held open while OAR is called."""
    with tx() as conn:
        owner, state = own_campaign(conn, campaign_id)
        if state not in {CampaignState.TERMINATED.value, CampaignState.CANCELLED.value}:
            raise ApiError(400, "Error", f"Campaign {campaign_id} is {state}: only the output "
                           "files of a finished campaign are removed")
        found = queries.list_output_jobs(conn, campaign_id, grid_user=owner)
        on_cluster = [(get_cluster(conn, f.cluster_id), f) for f in found]
    removed = missing = 0
    errors: list[str] = []
    for cluster, files in on_cluster:
        oar = oar_for(cluster)
        try:
            for details in oar.get_jobs(files.remote_ids):
                paths = [details.stdout_file, details.stderr_file]
                if details.id in files.batch_jobs:
                    paths += batches.batch_files(details, files.batch_jobs[details.id])
                for path in paths:
                    if path and not path.startswith("/"):
                        if not details.launching_directory:
                            continue
                        path = f"{details.launching_directory.rstrip('/')}/{path}"
                    if not path:
                        continue
                    try:
                        oar.delete_file(path, user=files.cluster_login)
                        removed += 1
                    except OarNotFound:
                        missing += 1
        except OarError as error:
            errors.append(f"{cluster.name}: {error.message}")
    message = f"{removed} output files of campaign {campaign_id} removed"
    if missing:
        message += f" ({missing} already gone)"
    if errors:
        message += "; failed on " + "; ".join(errors)
    return json_response({"status": 202, "title": "Accepted", "message": message,
                          "removed": removed, "missing": missing, "errors": errors}, 202)
