"""gridclean as a subprocess against a running API: list the finished jobs per cluster (v3's
output), purge finished campaigns (one by one or `--all`), refuse unfinished ones, dry runs."""

from __future__ import annotations

import json
import re

from sqlalchemy import select, update

from cigri.storage.tables import campaigns, parameters

from .conftest import Grid

JDL = {"name": "clean", "clusters": {"dahu": {"exec_file": "$HOME/run.sh"}}}


def _submit(grid: Grid, *, state: str | None = None, user: str = "alice") -> int:
    path = grid.home / f"c{len(list(grid.home.iterdir()))}.json"
    path.write_text(json.dumps({**JDL, "nb_jobs": 2}))
    result = grid.run("gridsub", "-f", str(path), user=user)
    assert result.returncode == 0, result.stderr
    campaign_id = int(re.search(r"CAMPAIGN_ID=(\d+)", result.stdout).group(1))  # type: ignore[union-attr]
    if state is not None:
        with grid.engine.begin() as conn:
            conn.execute(update(campaigns).where(campaigns.c.id == campaign_id)
                         .values(state=state))
    return campaign_id


def _campaign_ids(grid: Grid) -> list[int]:
    with grid.engine.begin() as conn:
        return sorted(conn.execute(select(campaigns.c.id)).scalars())


def test_without_an_action_it_lists_the_finished_jobs_by_cluster(grid: Grid) -> None:
    campaign = _submit(grid, state="terminated")
    with grid.engine.begin() as conn:
        params = list(conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == campaign)).scalars())
    for index, param in enumerate(params):
        grid.add_job(campaign, param_id=param, cluster_id=1, state="terminated",
                     remote_id=500 + index)
    result = grid.run("gridclean", str(campaign))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Getting the terminated jobs...", "Sorting jobs by clusters...",
        "Getting [500, 501] from cluster 1..."]


def test_purge_removes_only_finished_campaigns(grid: Grid) -> None:
    done = _submit(grid, state="terminated")
    running = _submit(grid)
    result = grid.run("gridclean", "--purge", str(done), str(running))
    assert result.returncode == 1
    assert f"Campaign {done} purged." in result.stdout
    assert f"Campaign {running} is in_treatment" in result.stderr
    assert _campaign_ids(grid) == [running]


def test_all_purges_every_finished_campaign_of_the_user_only(grid: Grid) -> None:
    mine = [_submit(grid, state="terminated"), _submit(grid, state="cancelled")]
    kept = _submit(grid)
    others = _submit(grid, state="terminated", user="bob")
    dry = grid.run("gridclean", "--all", "--purge", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [f"would purge campaign {c}" for c in mine]
    assert _campaign_ids(grid) == sorted([*mine, kept, others])
    result = grid.run("gridclean", "--all", "--purge")
    assert result.returncode == 0, result.stderr
    assert _campaign_ids(grid) == sorted([kept, others])


def test_missing_campaign_id_prints_the_usage(grid: Grid) -> None:
    result = grid.run("gridclean")
    assert result.returncode == 1
    assert result.stderr.startswith("Missing CAMPAIGN_ID")
