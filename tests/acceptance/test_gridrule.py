"""`gridrule` as a subprocess against the API (issue 13): add a TOML rule, list, show, test,
disable, enable, remove; a bad file is one line per problem and exit 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Grid

RULE = """
name = "pause on failures"
cooldown_minutes = 15
actions = ["pause", { do = "notify", message = "paused by my rule" }]

[trigger]
kind = "metric"
metric = "failure_rate"
above = 0.3
window_minutes = 30
"""


def test_gridrule_manages_a_rule_from_a_toml_file(grid: Grid, tmp_path: Path) -> None:
    path = tmp_path / "rule.toml"
    path.write_text(RULE)
    added = grid.run("gridrule", "add", str(path))
    assert added.returncode == 0, added.stderr
    assert added.stdout == "Rule 1 added: failure_rate > 0.3 over 30 min -> pause, notify\n"
    assert grid.run("gridrule", "list").stdout == (
        "1: pause on failures (enabled, alice): failure_rate > 0.3 over 30 min -> pause, notify,"
        " cooldown 15 min\n")
    assert "  actions:  pause, notify\n" in grid.run("gridrule", "show", "1").stdout
    assert grid.run("gridrule", "test", "1").stdout == (
        "Rule 1 would not have fired over the last day.\n")
    assert grid.run("gridrule", "disable", "1").stdout == "Rule 1 disabled.\n"
    assert "(disabled, alice)" in grid.run("gridrule", "list").stdout
    assert grid.run("gridrule", "enable", "1").returncode == 0
    denied = grid.run("gridrule", "remove", "1", user="bob")
    assert (denied.returncode, denied.stderr) == (
        1, "Failed to remove rule 1: Rule 1 does not belong to you.\n")
    assert grid.run("gridrule", "remove", "1").stdout == "Rule 1 removed.\n"
    assert grid.run("gridrule", "list").stdout == "No rules.\n"


def test_gridrule_add_lists_every_problem_of_a_bad_file(grid: Grid, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x", "trigger": {"kind": "silence"}, "actions": []}')
    result = grid.run("gridrule", "add", str(path))
    assert result.returncode == 2
    assert result.stderr == (f"gridrule: {path}: invalid rule:\n"
                             "  trigger.minutes: required for a silence trigger\n"
                             "  actions: a list of 1 to 10 actions\n")
    assert "Traceback" not in result.stderr
    missing = grid.run("gridrule", "add", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_gridschedule_adds_lists_pauses_resumes_and_removes(grid: Grid, tmp_path: Path) -> None:
    path = tmp_path / "nightly.json"
    path.write_text('{"name": "nightly-{DATE}", "nb_jobs": 2, '
                    '"clusters": {"dahu": {"exec_file": "run.sh"}}}')
    added = grid.run("gridschedule", "add", str(path), "--cron", "0 2 * * *", "--tz",
                     "Europe/Paris", "--skip-if-running")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("Schedule 1 added: cron '0 2 * * *' (Europe/Paris), skip "
                                   "while running, next run ")
    listed = grid.run("gridschedule", "list").stdout
    assert listed.startswith("1: nightly-{DATE} (active): cron '0 2 * * *'")
    assert "0 runs, 0 skipped; last campaign none" in listed
    assert grid.run("gridschedule", "pause", "1").stdout == "Schedule 1 paused.\n"
    assert "(paused)" in grid.run("gridschedule", "list").stdout
    assert grid.run("gridschedule", "resume", "1").stdout == "Schedule 1 resumed.\n"
    refused = grid.run("gridschedule", "add", str(path), "--cron", "61 * * * *")
    assert refused.returncode == 1 and "Failed to add the schedule: invalid schedule: cron" in (
        refused.stderr)
    assert grid.run("gridschedule", "remove", "1", user="bob").returncode == 1
    assert grid.run("gridschedule", "remove", "1").stdout == "Schedule 1 removed.\n"
    assert grid.run("gridschedule", "list").stdout == "No schedules.\n"


def test_gridsub_at_and_cron_schedule_the_jdl_with_its_param_file(grid: Grid,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "params.txt").write_text("a 1\nb 2\n\n")
    path = tmp_path / "later.json"
    path.write_text('{"name": "later", "param_file": "params.txt", '
                    '"clusters": {"dahu": {"exec_file": "run.sh"}}}')
    later = grid.run("gridsub", "-f", str(path), "--at", "2030-03-01T02:00", "--tz",
                     "Europe/Paris")
    assert later.returncode == 0, later.stderr
    assert later.stdout == ("Campaign scheduled: once from 2030-03-01T02:00:00+01:00 "
                            "(Europe/Paris), next run 2030-03-01T01:00:00+00:00\n"
                            "SCHEDULE_ID=1\n")
    nightly = grid.run("gridsub", "-f", str(path), "--cron", "0 2 * * *", "--skip-if-running")
    assert nightly.returncode == 0, nightly.stderr
    assert nightly.stdout.startswith("Campaign scheduled: cron '0 2 * * *' (UTC), skip while "
                                     "running, next run ")
    shown = json.loads(grid.run("gridschedule", "list", "--json").stdout)
    assert [s["definition"]["jdl"]["params"] for s in shown["items"]] == [["a 1", "b 2"]] * 2
    assert "param_file" not in json.dumps(shown)
    for arguments, message in [
            (("--cron", "0 2 * * *", "--every", "5"),
             "gridsub: --cron and --every: give one or the other\n"),
            (("--skip-if-running",),
             "gridsub: --tz and --skip-if-running go with --at, --cron or --every\n"),
            (("--cron", "61 * * * *"), "Error: invalid schedule: cron: a crontab expression")]:
        refused = grid.run("gridsub", "-f", str(path), *arguments)
        assert refused.returncode != 0 and refused.stderr.startswith(message), refused.stderr
        assert "Traceback" not in refused.stderr
    adding = grid.run("gridsub", "-c", "1", "-J", '["x"]', "--at", "2030-01-01T00:00")
    assert adding.returncode == 2 and adding.stderr.startswith("gridsub: --at, --cron and --every")


def test_gridrule_add_reads_an_add_tasks_params_file_on_the_client(grid: Grid,
                                                                    tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("retry-1 a\nretry-2 b\n")
    path = tmp_path / "more.toml"
    path.write_text('name = "more"\n[trigger]\nkind = "state"\nstate = "terminated"\n'
                    '[[actions]]\ndo = "add_tasks"\nparams_file = "more.txt"\n')
    added = grid.run("gridrule", "add", str(path), "--json")
    assert added.returncode == 0, added.stderr
    rule = json.loads(added.stdout)
    assert rule["actions"] == "add 2 tasks"
    assert rule["definition"]["actions"] == [{"do": "add_tasks",
                                              "params": ["retry-1 a", "retry-2 b"]}]
