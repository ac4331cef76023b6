"""Task states say the truth: a task back in the bag after a job that ended (exit 66/67, a kill, a
fixed event) is `waiting_resubmission` in `gridstat -f`, the API task list, the task detail and
the job detail alike, not its old job's `event`; `gridstat -j` prints structured fields as JSON."""

from __future__ import annotations

import json

import requests
from sqlalchemy import delete, insert, select

from cigri.storage.tables import bag_of_tasks, jobs_to_launch, parameters

from .conftest import Grid

JDL = {"name": "n", "params": ["x 1", "y 2", "z 3"], "clusters": {"dahu": {"exec_file": "e"}}}


def _campaign(grid: Grid) -> tuple[int, list[int]]:
    done = grid.run("gridsub", "-j", json.dumps(JDL))
    assert done.returncode == 0, done.stderr
    campaign_id = int(done.stdout.split("CAMPAIGN_ID=")[1])
    with grid.engine.begin() as conn:
        tasks = list(conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == campaign_id).order_by(parameters.c.id)).scalars())
        # the runner took the first two tasks: they left the bag
        conn.execute(delete(bag_of_tasks).where(bag_of_tasks.c.param_id.in_(tasks[:2])))
    return campaign_id, tasks


def test_a_task_back_in_the_bag_is_waiting_for_resubmission_everywhere(grid: Grid) -> None:
    campaign_id, (resubmitted, failed, fresh) = _campaign(grid)
    first = grid.add_job(campaign_id, param_id=resubmitted, state="event", remote_id=11,
                         runner_options='{"besteffort": true}')
    stuck = grid.add_job(campaign_id, param_id=failed, state="event", remote_id=12)
    with grid.engine.begin() as conn:  # exit 66: Colombo put the task back at the front
        conn.execute(insert(bag_of_tasks).values(campaign_id=campaign_id, param_id=resubmitted,
                                                 priority=20))
    lines = grid.run("gridstat", "-f", "-c", str(campaign_id)).stdout.splitlines()
    assert f"  {resubmitted}: {first},11,waiting_resubmission,dahu,x,x 1" in lines
    assert f"  {failed}: {stuck},12,event,dahu,y,y 2" in lines  # failed, not resubmitted
    assert f"  {fresh}: *,*,pending,*,z,z 3" in lines
    api = {"Authorization": f"Bearer {grid.token('alice')}"}
    listed = requests.get(f"{grid.url}/campaigns/{campaign_id}/jobs", headers=api,
                          timeout=30).json()["items"]
    assert [item["state"] for item in listed] == ["waiting_resubmission", "event", "pending"]
    detail = requests.get(f"{grid.url}/campaigns/{campaign_id}/jobs/{resubmitted}",
                          headers=api, timeout=30).json()
    assert detail["state"] == "waiting_resubmission"
    task = json.loads(grid.run("gridstat", "-j", str(first), "--json").stdout)
    assert task["state"] == "waiting_resubmission"
    shown = grid.run("gridstat", "-j", str(first)).stdout.splitlines()
    assert "state: waiting_resubmission" in shown
    assert 'runner_options: {"besteffort": true}' in shown  # JSON, not a Python repr
    assert "state: event" in grid.run("gridstat", "-j", str(stuck)).stdout.splitlines()

    # queued on a cluster again: still waiting for its resubmission; then run again
    with grid.engine.begin() as conn:
        bag_id = conn.execute(select(bag_of_tasks.c.id).where(
            bag_of_tasks.c.param_id == resubmitted)).scalar_one()
        conn.execute(insert(jobs_to_launch).values(task_id=bag_id, cluster_id=1, order_num=1))
    assert f"  {resubmitted}: {first},11,waiting_resubmission,dahu,x,x 1" in grid.run(
        "gridstat", "-f", "-c", str(campaign_id)).stdout.splitlines()
    with grid.engine.begin() as conn:
        conn.execute(delete(jobs_to_launch))
        conn.execute(delete(bag_of_tasks).where(bag_of_tasks.c.param_id == resubmitted))
    second = grid.add_job(campaign_id, param_id=resubmitted, state="running", remote_id=13)
    assert f"  {resubmitted}: {second},13,running,dahu,x,x 1" in grid.run(
        "gridstat", "-f", "-c", str(campaign_id)).stdout.splitlines()
    old = json.loads(grid.run("gridstat", "-j", str(first), "--json").stdout)
    assert (old["state"], old["resubmitted_as"]) == ("event", second)


def test_gridstat_j_prints_structured_fields_as_json(grid: Grid) -> None:
    campaign_id, (task, _, _) = _campaign(grid)
    job = grid.add_job(campaign_id, param_id=task, state="running", remote_id=21,
                       runner_options='{"besteffort": false, "types": ["idempotent"]}')
    shown = grid.run("gridstat", "-j", str(job)).stdout.splitlines()
    assert 'runner_options: {"besteffort": false, "types": ["idempotent"]}' in shown
    assert "state: running" in shown and "remote_id: 21" in shown
