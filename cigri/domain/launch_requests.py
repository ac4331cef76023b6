"""What the runner asks OAR for: the submission of a set of jobs of one campaign (behaviour 12),
and which OAR job runs which array index when a submission is reconciled. Pure: the runner
decides the job type (`cigri.domain.night.job_mode`) and passes the site's defaults."""

from __future__ import annotations

from collections.abc import Sequence

from cigri.domain import batches
from cigri.domain.jobs import EPILOGUE, PROLOGUE, LaunchContext, LaunchItem
from cigri.domain.oar import OarJob, SubmitRequest


def build_request(context: LaunchContext, items: Sequence[LaunchItem], *, name: str,
                  default_resources: str, default_walltime: str,
                  besteffort: bool | None = None) -> SubmitRequest:
    """The OAR submission of a set of jobs of one campaign (behaviour 12): an array job whose lines
    are the parameters, or a plain job for one parameter; prologue/epilogue as normal single jobs;
    a temporal-grouping batch as one job running its tasks in turn. `besteffort`: the runner's
    choice for this submission (`job_mode`: campaign type, test mode, night window); None: the
    queue row's flag, never in test mode. `default_*`: DEFAULT_JOB_RESOURCES, DEFAULT_JOB_WALLTIME."""
    if besteffort is None:
        besteffort = items[0].besteffort and not context.is_test_mode
    job_types = [t.strip() for t in context.prop("cluster_job_type").split(",") if t.strip()]
    tag = items[0].tag
    walltime = context.prop("walltime", default_walltime)
    properties = context.prop("properties") or None
    project = context.prop("project") or None
    if tag in {PROLOGUE, EPILOGUE}:
        return SubmitRequest(
            command=f"export CIGRI_CAMPAIGN_ID={context.campaign_id};" + context.prop(tag),
            resources="/resource_id=1", walltime=context.prop(f"{tag}_walltime", walltime),
            name=name, types=job_types, properties=properties, project=project)
    # v3 §7.17: test mode submits normal jobs, whatever the campaign's type
    if besteffort and "besteffort" not in job_types:
        job_types.append("besteffort")
    resources = context.prop("resources", default_resources)
    if tag == batches.BATCH_TAG:
        # one OAR job (not an array); walltime scaled by the number of tasks (v3: the single
        # job's walltime)
        return SubmitRequest(
            command=batches.batch_script(items, campaign_id=context.campaign_id, name=name,
                                         exec_file=context.prop("exec_file")),
            resources=resources, walltime=batches.scale_walltime(walltime, len(items)),
            name=name, directory=_directory(context), types=job_types, properties=properties,
            project=project)
    command = f"export CIGRI_CAMPAIGN_ID={context.campaign_id};" + context.prop("exec_file")
    params = [item.param or "" for item in items]
    if len(params) == 1:
        command, params = f"{command} {params[0]}", []
    return SubmitRequest(
        command=command, resources=resources, walltime=walltime, params=params, name=name,
        directory=_directory(context), types=job_types, properties=properties, project=project)


def _directory(context: LaunchContext) -> str | None:
    directory = context.prop("exec_directory") or None
    return directory.replace("{CAMPAIGN_ID}", str(context.campaign_id)) if directory else None


def remote_ids_by_index(found: Sequence[OarJob], nb_jobs: int) -> dict[int, int]:
    """Which OAR job runs which array index, from OAR's listing of a submission's jobs."""
    if nb_jobs == 1 and len(found) == 1:
        return {1: found[0].id}
    if found and all(job.array_index is not None for job in found):
        return {int(job.array_index or 0): job.id for job in found}
    # OAR numbers the jobs of an array consecutively in index order.
    return {index: job.id for index, job in enumerate(sorted(found, key=lambda j: j.id), start=1)}
