"""gridsub, gridstat and griddel run as subprocesses against a running API (`cigri-v3-user.md` §7
behaviours 1–8, 19–31, adapted where cigri fixes v3: non-zero exits, ISO dates, one-line errors)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy import select

from cigri.storage.tables import campaigns, parameters

from .conftest import Grid

JDL = {"name": "povray", "clusters": {"dahu": {"exec_file": "$HOME/render.sh"}}}


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def _submit(grid: Grid, document: object, *args: str, user: str = "alice") -> int:
    jdl = _write(grid.home / f"c{len(list(grid.home.iterdir()))}.json", document)
    result = grid.run("gridsub", "-f", str(jdl), *args, user=user)
    assert result.returncode == 0, result.stderr
    return int(re.search(r"CAMPAIGN_ID=(\d+)", result.stdout).group(1))  # type: ignore[union-attr]


def _tasks(grid: Grid, campaign_id: int) -> list[tuple[int, str]]:
    with grid.engine.begin() as conn:
        return [(r.id, r.param) for r in conn.execute(
            select(parameters.c.id, parameters.c.param)
            .where(parameters.c.campaign_id == campaign_id).order_by(parameters.c.id))]


def test_b1_gridsub_with_a_param_file_read_on_the_client(grid: Grid) -> None:
    data = grid.home / "data"
    data.mkdir()
    (data / "params.txt").write_text("".join(f"scene{i} {i}\n" for i in range(300)))
    jdl = _write(data / "c.json", {**JDL, "param_file": "params.txt"})
    result = grid.run("gridsub", "-f", str(jdl))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Campaign successfully submitted"
    assert re.fullmatch(r"CAMPAIGN_ID=\d+", lines[1])
    campaign_id = int(lines[1].split("=")[1])
    assert len(_tasks(grid, campaign_id)) == 300
    with grid.engine.begin() as conn:
        state = conn.execute(select(campaigns.c.state).where(campaigns.c.id == campaign_id))
        assert state.scalar_one() == "in_treatment"


def test_param_file_uses_the_submitters_home(grid: Grid) -> None:
    (grid.home / "p.txt").write_text("a 1\nb 2\n")
    campaign_id = _submit(grid, {**JDL, "param_file": "~/p.txt"})
    assert [p for _, p in _tasks(grid, campaign_id)] == ["a 1", "b 2"]


def test_a_missing_param_file_fails_on_the_client(grid: Grid) -> None:
    jdl = _write(grid.home / "c.json", {**JDL, "param_file": "/nonexistent/params"})
    result = grid.run("gridsub", "-f", str(jdl))
    assert result.returncode == 1
    assert result.stderr.strip() == "gridsub: param_file /nonexistent/params: no such file"


def test_b2_gridsub_details_prints_the_campaign_json(grid: Grid) -> None:
    jdl = _write(grid.home / "c.json", {**JDL, "nb_jobs": 3})
    result = grid.run("gridsub", "-d", "-f", str(jdl))
    first, body, last = result.stdout.splitlines()
    assert first == "Campaign successfully submitted" and last.startswith("CAMPAIGN_ID=")
    assert {"id", "name", "user", "state", "has_events", "submission_time", "total_jobs",
            "finished_jobs", "links"} <= set(json.loads(body))


def test_b3_gridsub_adds_tasks_inline_and_streamed(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 1})
    result = grid.run("gridsub", "-c", str(campaign_id), "-J", '["a 1","b 2"]')
    assert (result.returncode, result.stdout.strip()) == (
        0, f"Jobs successfully added to campaign {campaign_id}")
    more = grid.home / "more.txt"
    more.write_text("".join(f"m{i}\n" for i in range(1000)))
    result = grid.run("gridsub", "-c", str(campaign_id), "-p", str(more), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total_jobs"] == 1003


def test_b4_b5_gridsub_errors_are_one_line_and_exit_non_zero(grid: Grid) -> None:
    jdl = _write(grid.home / "bad.json", {"clusters": {"dahu": {"exec_file": "e"}}, "nb_jobs": 1})
    result = grid.run("gridsub", "-f", str(jdl))
    assert result.returncode == 1
    assert result.stderr == ("Error: Error submitting campaign: JDL file does not contain "
                             "mandatory field 'name'\n")
    jdl = _write(grid.home / "bad.json", {"name": "n", "clusters": {"dahu": {"exec_file": "e"}}})
    result = grid.run("gridsub", "-f", str(jdl))
    assert result.returncode == 1 and "No parameters for your campaign are defined." in result.stderr


def test_b7_duplicate_task_names_create_no_campaign(grid: Grid) -> None:
    jdl = _write(grid.home / "c.json", {**JDL, "params": ["x 1", "x 2"]})
    result = grid.run("gridsub", "-f", str(jdl))
    assert result.returncode == 1 and "duplicate task name 'x'" in result.stderr
    assert grid.run("gridstat", "--all", "-H").stdout == ""


def test_b9_unknown_clusters_are_reported(grid: Grid) -> None:
    jdl = _write(grid.home / "c.json", {"name": "n", "nb_jobs": 1,
                                         "clusters": {"nowhere": {"exec_file": "e"}}})
    result = grid.run("gridsub", "-f", str(jdl))
    assert result.returncode == 1 and "unknown cluster 'nowhere'" in result.stderr


def test_gridsub_misuse_exits_non_zero(grid: Grid) -> None:
    result = grid.run("gridsub")
    assert result.returncode == 1
    assert "Please provide at least one JSON or JDL_FILE" in result.stderr
    result = grid.run("gridsub", "-J", '["a"]')
    assert result.returncode == 1 and "Please provide a campaign ID" in result.stderr


def test_b6_b8_tasks_and_expanded_jdl_through_gridstat(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 3, "walltime": "00:30:00"})
    result = grid.run("gridstat", "-f", "-c", str(campaign_id))
    tasks = [line for line in result.stdout.splitlines() if line.startswith("  ") and ": *," in line]
    assert [line.split(",", 4)[2:] for line in tasks] == [
        ["pending", "*", "0,0"], ["pending", "*", "1,1"], ["pending", "*", "2,2"]]
    jdl = json.loads(grid.run("gridstat", "-J", "-c", str(campaign_id)).stdout)
    assert jdl["clusters"]["dahu"]["walltime"] == "00:30:00"
    assert jdl["clusters"]["dahu"]["exec_directory"] == "$HOME"
    assert "nb_jobs" not in jdl


def test_b19_b20_b21_gridstat_list_layout(grid: Grid) -> None:
    first = _submit(grid, {**JDL, "name": "ABCD_H_VX-new-long-name", "nb_jobs": 6})
    second = _submit(grid, {**JDL, "nb_jobs": 2}, user="bob")
    result = grid.run("gridstat", user="root")
    lines = result.stdout.splitlines()
    assert lines[0] == ("Campaign id Name                User             Submission time      S "
                        " Progress")
    assert lines[1] == ("----------- ------------------- ---------------- -------------------- -- "
                        "--------")
    assert re.fullmatch(rf"{first}\s+ABCD_H_VX-new-long- alice\s+"
                        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ R  0/6 \(0%\)", lines[2]), lines[2]
    assert lines[3].startswith(f"{second:<11d} povray")
    headerless = grid.run("gridstat", "-H", "-u", "bob", user="root").stdout.splitlines()
    assert len(headerless) == 1 and headerless[0].startswith(str(second))
    mine = grid.run("gridstat", "-H").stdout.splitlines()
    assert [int(line.split()[0]) for line in mine] == [first]


def test_finished_campaigns_are_listed_on_request(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 1})
    assert grid.run("griddel", str(campaign_id)).returncode == 0
    assert grid.run("gridstat", "-H").stdout == ""
    listed = grid.run("gridstat", "-H", "--all").stdout.splitlines()
    # open USER_FRAG until nikita has killed the jobs: "Ce"
    assert len(listed) == 1 and " Ce 0/1 (0%)" in listed[0]
    as_json = json.loads(grid.run("gridstat", "--state", "cancelled", "--json").stdout)
    assert [c["id"] for c in as_json["items"]] == [campaign_id]


def test_b22_gridstat_detail_with_progress_bar_and_eta(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 4})
    task = _tasks(grid, campaign_id)[0][0]
    grid.add_job(campaign_id, param_id=task, state="terminated")
    grid.add_job(campaign_id, param_id=_tasks(grid, campaign_id)[1][0], state="running")
    result = grid.run("gridstat", str(campaign_id))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[:3] == [f"Campaign: {campaign_id}", "  Name: povray", "  User: alice"]
    assert lines[4] == "  State: in_treatment  "
    assert re.fullmatch(r"  Progress: 1/4 \(25%\) \[#{7}\.{23}\] ETA (~|\d+:\d\d:\d\d)", lines[5])
    assert lines[6] == "  Stats: "
    assert [line.split(":")[0].strip() for line in lines[7:13]] == [
        "average_jobs_duration", "stddev_jobs_duration", "jobs_throughput", "remaining_time",
        "failures_rate", "resubmit_rate"]
    assert lines[13:22] == ["  Clusters: ", "    dahu:", "      active_jobs: 1",
                            "      queued_jobs: 0", "      prologue_ok: true",
                            "      epilogue_ok: true", "      running_jobs: 1",
                            "      waiting_jobs: 0",
                            "      runs: best-effort jobs, day and night [best-effort]"]


def test_b23_b24_gridstat_misuse(grid: Grid) -> None:
    result = grid.run("gridstat", "-c", "999999")
    assert (result.returncode, result.stderr) == (1, "Campaign 999999 not found!\n")
    result = grid.run("gridstat", "-f")
    assert (result.returncode, result.stderr.strip()) == (
        1, "You must provide a campaign id with --full!")
    result = grid.run("gridstat", "-e")
    assert (result.returncode, result.stderr.strip()) == (
        1, "You must give a campaign id to print the events!")


def test_b25_b26_gridstat_tasks_and_one_job(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "params": ["x 1", "y 2"]})
    task = _tasks(grid, campaign_id)[0][0]
    job = grid.add_job(campaign_id, param_id=task, state="running", remote_id=4242)
    lines = grid.run("gridstat", "-f", "-c", str(campaign_id)).stdout.splitlines()
    assert " Jobs:" in lines
    assert f"  {task}: {job},4242,running,dahu,x,x 1" in lines
    assert f"  {task + 1}: *,*,pending,*,y,y 2" in lines
    shown = grid.run("gridstat", "-j", str(job)).stdout.splitlines()
    assert f"id: {job}" in shown and "param: x 1" in shown and "grid_user: alice" in shown
    assert "state: running" in shown and "cluster_name: dahu" in shown and "tag: " in shown
    assert json.loads(grid.run("gridstat", "-j", str(job), "--json").stdout)["remote_id"] == 4242


def test_b27_gridstat_dump(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 1})
    dumped = json.loads(grid.run("gridstat", "-d", "-c", str(campaign_id)).stdout)
    assert dumped["id"] == campaign_id and "clusters" in dumped and "stats" in dumped


def test_gridstat_watch_follows_until_the_campaign_is_finished(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 1})
    grid.run("griddel", str(campaign_id))
    result = grid.run("gridstat", "--watch", "0.2", str(campaign_id), timeout=20)
    assert result.returncode == 0 and "State: cancelled" in result.stdout


def test_b28_b29_griddel_cancels_once(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 3})
    result = grid.run("griddel", "-v", str(campaign_id))
    assert (result.returncode, result.stdout) == (0, f"Campaign {campaign_id} cancelled.\n")
    assert grid.run("gridstat", "-H", "--all").stdout.split()[4] == "Ce"
    result = grid.run("griddel", str(campaign_id))
    assert result.returncode == 1
    assert result.stderr == (f"Failed to cancel campaign {campaign_id}: Campaign already "
                             "cancelled..\n")


def test_b30_griddel_pause_and_resume(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 3})
    assert grid.run("griddel", "-p", str(campaign_id)).returncode == 0
    assert grid.run("gridstat", "-H").stdout.split()[4] == "P"
    again = grid.run("griddel", "-p", "-c", str(campaign_id))
    assert again.returncode == 1 and "Can't hold (pause) a paused campaign" in again.stderr
    assert grid.run("griddel", "-r", str(campaign_id), "-v").stdout == (
        f"Campaign {campaign_id} resumed.\n")


def test_b31_griddel_on_someone_elses_campaign(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 1}, user="bob")
    result = grid.run("griddel", str(campaign_id))
    assert result.returncode == 1
    assert result.stderr == (f"Failed to cancel campaign {campaign_id}: Campaign {campaign_id} "
                             f"does not belong to you: User 'alice' is not the owner of campaign "
                             f"'{campaign_id}'.\n")
    assert grid.run("griddel", "-v", str(campaign_id), user="root").returncode == 0


def test_griddel_cancels_one_job_and_purges(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 1})
    job = grid.add_job(campaign_id, param_id=_tasks(grid, campaign_id)[0][0], remote_id=7)
    result = grid.run("griddel", "-v", "-j", str(job))
    assert (result.returncode, result.stdout) == (0, f"Job {job} cancel event created.\n")
    unknown = grid.run("griddel", "-j", "999999")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("Failed to cancel job 999999: ")
    result = grid.run("griddel", "--purge", str(campaign_id))
    assert result.returncode == 1 and "Can't purge a in_treatment campaign" in result.stderr
    missing = grid.run("griddel")
    assert missing.returncode == 1
    assert "You need to provide at least one campaign_id or job_id!" in missing.stderr


def test_tools_over_the_unix_socket_need_no_token(grid: Grid) -> None:
    campaign_id = _submit(grid, {**JDL, "nb_jobs": 1})
    result = grid.run("gridstat", "-H", via_socket=True)  # the tests run as root, an admin
    assert result.returncode == 0 and result.stdout.startswith(str(campaign_id))


def test_an_unreachable_api_is_one_line_and_exit_1(grid: Grid) -> None:
    result = grid.run("gridstat", extra_env={"CIGRI_API_URL": "http://127.0.0.1:9"})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "API server not reachable" in result.stderr
