"""`cigri demo`'s progress lines count running jobs and waiting jobs (being launched, queued in
OAR) apart: "32 running" on a cluster of 8 cores was the waiting ones counted as running."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select

from cigri.cli.demo import _read_progress, _render
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import jobs, parameters


def test_progress_shows_running_and_waiting_apart(engine: Engine) -> None:
    now = datetime.now(UTC)
    states = ["running"] * 3 + ["submitted", "remote_waiting", "launching", "to_launch",
                                "batch_waiting"] + ["terminated"] * 2
    with engine.begin() as conn:
        cluster_id = add_cluster(conn, name="c1", api_url="http://127.0.0.1:9/", now=now).id
        props = {"exec_file": "e", "resources": "/resource_id=1"}
        campaign_id = create_campaign(
            conn, grid_user="demo", name="demo", jobs_type="normal",
            jdl={"name": "demo", "clusters": {"c1": props}}, properties={cluster_id: props},
            params=(f"t{i} {i}" for i in range(len(states))), now=now)
        param_ids = conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == campaign_id).order_by(parameters.c.id)).scalars().all()
        for param_id, state in zip(param_ids, states, strict=True):
            conn.execute(insert(jobs).values(campaign_id=campaign_id, param_id=param_id,
                                             cluster_id=cluster_id, state=state))
    progress = _read_progress(engine, campaign_id, len(states), {cluster_id: "c1"})
    line = _render(progress, ["c1"], 1.0)[1]
    assert line.split("]", 1)[1].split() == ["2", "done", "3", "running", "5", "waiting"]
