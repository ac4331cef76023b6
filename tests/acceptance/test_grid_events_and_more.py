"""gridevents, gridnotify, gridclusters, gridtoken and the `cigri` admin commands as subprocesses
(`cigri-v3-user.md` §7 behaviours 32–40, adapted where cigri fixes v3)."""

from __future__ import annotations

import json
import re

from sqlalchemy import insert, select

from cigri.storage.tables import bag_of_tasks, events, parameters

from .conftest import Grid

JDL = {"name": "n", "nb_jobs": 2, "clusters": {"dahu": {"exec_file": "e"}}}


def _campaign(grid: Grid, user: str = "alice") -> int:
    result = grid.run("gridsub", "-j", json.dumps(JDL), user=user)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("CAMPAIGN_ID=")[1])


def _failed_job(grid: Grid, campaign_id: int) -> tuple[int, int]:
    with grid.engine.begin() as conn:
        task = conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == campaign_id).limit(1)).scalar_one()
        conn.execute(bag_of_tasks.delete().where(bag_of_tasks.c.param_id == task))
    job = grid.add_job(campaign_id, param_id=task, state="event", remote_id=99)
    with grid.engine.begin() as conn:
        error = conn.execute(insert(events).values(
            class_="job", code="EXIT_ERROR", state="open", job_id=job, campaign_id=campaign_id,
            cluster_id=1, message="The job exited with exit status 256;").returning(events.c.id)
        ).scalar_one()
        conn.execute(insert(events).values(class_="campaign", code="BLACKLIST", state="open",
                                           campaign_id=campaign_id, cluster_id=1, parent=error))
    return job, int(error)


def test_b32_gridevents_blocks(grid: Grid) -> None:
    campaign_id = _campaign(grid)
    assert grid.run("gridevents", "-c", str(campaign_id)).stdout == "No events!\n"
    job, error = _failed_job(grid, campaign_id)
    lines = grid.run("gridevents", "-c", str(campaign_id)).stdout.splitlines()
    assert lines[0] == "-" * 78 and lines[-1] == "-" * 78
    assert re.fullmatch(rf"{error}: \(open\) EXIT_ERROR of job {job} at \S+ on dahu", lines[1])
    assert lines[2] == "The job exited with exit status 256;"
    assert re.fullmatch(rf"\d+: \(open\) BLACKLIST at \S+ on dahu because of {error}", lines[4])
    same = grid.run("gridstat", "-e", "-c", str(campaign_id)).stdout
    assert same.splitlines()[1] == lines[1]
    assert "e " in grid.run("gridstat", "-H").stdout


def test_b33_gridevents_fix_and_resubmit(grid: Grid) -> None:
    campaign_id = _campaign(grid)
    _job, _error = _failed_job(grid, campaign_id)
    result = grid.run("gridevents", "-c", str(campaign_id), "-f", "-r", "-v")
    assert (result.returncode, result.stdout) == (0, f"Campaign {campaign_id} events closed.\n")
    remaining = grid.run("gridevents", str(campaign_id)).stdout
    assert "BLACKLIST" in remaining and "EXIT_ERROR" not in remaining
    with grid.engine.begin() as conn:
        priorities = sorted(conn.execute(select(bag_of_tasks.c.priority)).scalars())
    assert priorities == [10, 20]
    history = grid.run("gridevents", "-a", "-c", str(campaign_id), "--json")
    assert {e["code"] for e in json.loads(history.stdout)["items"]} == {
        "NEW_CAMPAIGN", "EXIT_ERROR", "BLACKLIST"}


def test_b34_gridevents_misuse(grid: Grid) -> None:
    result = grid.run("gridevents", "-r")
    assert (result.returncode, result.stderr) == (2, "Error: --resubmit must be used with --fix!\n")
    result = grid.run("gridevents")
    assert result.returncode == 1
    assert result.stderr.startswith("Missing CAMPAIGN (-c), EVENT (-e) id or --global (-g)")


def test_b35_cluster_wide_events_are_for_admins(grid: Grid) -> None:
    result = grid.run("gridevents", "--blacklist-cluster", "2", user="root")
    assert result.returncode == 0, result.stderr
    listed = json.loads(grid.run("gridevents", "-g", "--json").stdout)["items"]
    manual = next(e for e in listed if e["code"] == "CLUSTER_MANUALLY_DISABLED")
    refused = grid.run("gridevents", "-e", str(manual["id"]), "-f")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"Failed to fix event(s): Event {manual['id']} is not "
                                     "specific to a campaign belonging to you")
    assert "BLACKLISTED" in grid.run("gridclusters", "-i").stdout
    assert grid.run("gridevents", "-e", str(manual["id"]), "-f", user="root").returncode == 0
    denied = grid.run("gridevents", "--blacklist-cluster", "2")
    assert denied.returncode == 1 and "Failed to add event" in denied.stderr


def test_b36_gridnotify_subscribe_list_unsubscribe(grid: Grid) -> None:
    assert grid.run("gridnotify", "-m", "a+b@example.org", "-s", "high").returncode == 0
    assert grid.run("gridnotify", "-j", "a@jabber.org", "-s", "medium", "-v").stdout == (
        "New subscription created.\n")
    assert grid.run("gridnotify", "-l").stdout == (
        "You have the following notification subscriptions:\n"
        " - mail on a+b@example.org with severity high\n"
        " - jabber on a@jabber.org with severity medium\n")
    result = grid.run("gridnotify", "-m", "c@example.org")
    assert (result.returncode, result.stderr) == (
        2, "ERROR: Severity should be 'low', 'medium' or 'high'!\n")
    assert grid.run("gridnotify", "-u", "-m", "a+b@example.org").returncode == 0
    assert grid.run("gridnotify", "-l", "--json", user="bob").stdout.count("identity") == 0
    left = json.loads(grid.run("gridnotify", "-l", "--json").stdout)["items"]
    assert [i["identity"] for i in left] == ["a@jabber.org"]
    again = grid.run("gridnotify", "-u", "-m", "a+b@example.org")
    assert again.returncode == 1
    assert again.stderr.startswith("Failed to unsubscribe a+b@example.org: ")
    assert again.stderr.endswith(".\n") and again.stderr.count("\n") == 1


def test_b38_gridclusters(grid: Grid) -> None:
    assert grid.run("gridclusters").stdout == "1: dahu\n2: luke\n"
    # a window that does not depend on the wall clock (never night); a bad one is refused
    assert grid.admin("cluster", "set", "dahu", "night_window=00:00-00:00",
                      "time_zone=Europe/Paris").returncode == 0
    assert grid.admin("cluster", "set", "luke", "night_window=00:00-00:00").returncode == 0
    bad = grid.admin("cluster", "set", "luke", "time_zone=Mars/Olympus")
    assert bad.returncode != 0 and "unknown time zone 'Mars/Olympus'" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert grid.run("gridclusters", "-i").stdout.splitlines() == [
        "1: dahu , dahu-fe (stress:0.0/0.8) night 00:00-00:00 Europe/Paris (day now)",
        "2: luke , luke-fe (stress:0.0/0.8) night 00:00-00:00 UTC (day now)"]
    usage = grid.run("gridclusters", "-u").stdout.splitlines()
    assert usage[1] == "    Data temporarily unavailable"
    detail = grid.run("gridclusters", "-I").stdout
    assert "    api_url: http://127.0.0.1:9/oarapi/" in detail and "password" not in detail
    assert [c["name"] for c in json.loads(grid.run("gridclusters", "--json").stdout)["items"]] == [
        "dahu", "luke"]


def test_b39_gridtoken_cluster_jwts(grid: Grid) -> None:
    result = grid.run("gridtoken", "-i", "1", "-t", "secret-jwt")
    assert (result.returncode, result.stderr) == (
        1, "Failed to register token on cluster 1: Cluster 1 auth_type is not JWT!.\n")
    assert grid.admin("cluster", "add", "oar3c", "http://127.0.0.1:9/", "--batch", "oar3",
                      "--auth-type", "jwt").returncode == 0
    assert grid.run("gridtoken", "-i", "3", "-t", "secret-jwt-123456").stdout == (
        "New token registered.\n")
    listed = grid.run("gridtoken", "-l").stdout
    assert listed == "You have the following tokens:\n - Cluster #3 : ...123456\n"
    assert grid.run("gridtoken", "-r", "-i", "3").returncode == 0
    assert grid.run("gridtoken", "-l").stdout == "You have the following tokens:\n"
    again = grid.run("gridtoken", "-r", "-i", "3")
    assert again.returncode == 1
    assert again.stderr.startswith("Failed to remove JWT token on cluster 3: ")


def test_gridtoken_api_tokens_over_the_socket_then_by_token(grid: Grid) -> None:
    created = grid.run("gridtoken", "create", "--name", "laptop", via_socket=True)
    assert created.returncode == 0, created.stderr
    token = created.stdout.splitlines()[-1]
    whoami = grid.run("gridstat", "-H", user=None, extra_env={"CIGRI_API_TOKEN": token})
    assert whoami.returncode == 0
    listed = grid.run("gridtoken", "list", via_socket=True).stdout
    assert "laptop active" in listed and token not in listed
    token_id = listed.split(":")[0]
    assert grid.run("gridtoken", "revoke", token_id, via_socket=True).returncode == 0
    refused = grid.run("gridstat", user=None, extra_env={"CIGRI_API_TOKEN": token})
    assert refused.returncode == 1 and "invalid, expired or revoked token" in refused.stderr


def test_b40_unauthenticated_calls(grid: Grid) -> None:
    result = grid.run("gridstat", user=None)
    assert (result.returncode, result.stderr) == (1, "gridstat: Access denied: not authenticated\n")


def test_admin_commands_manage_clusters_priorities_mappings_tokens(grid: Grid) -> None:
    added = grid.admin("cluster", "add", "bigfoot", "http://127.0.0.1:9/oarapi/",
                       "--ssh-host", "bf")
    assert added.returncode == 0, added.stderr
    assert grid.admin("cluster", "disable", "bigfoot").returncode == 0
    assert "bigfoot" not in grid.run("gridclusters").stdout
    assert grid.admin("cluster", "enable", "3").returncode == 0
    assert grid.admin("cluster", "set", "bigfoot", "power=7", "ssh_host=bigfoot-fe").returncode == 0
    listed = json.loads(grid.admin("cluster", "list", "--json").stdout)
    bigfoot = next(c for c in listed if c["name"] == "bigfoot")
    assert (bigfoot["power"], bigfoot["ssh_host"], bigfoot["enabled"]) == (7, "bigfoot-fe", True)
    assert grid.admin("cluster", "set", "bigfoot", "nope=1").returncode != 0
    assert grid.admin("cluster", "enable", "nowhere").returncode == 1
    assert grid.admin("user-priority", "set", "alice", "dahu", "5").returncode == 0
    assert grid.admin("user-priority", "list").stdout == "alice dahu 5\n"
    assert grid.admin("user-mapping", "set", "alice", "luke", "alice_l").returncode == 0
    assert grid.admin("user-mapping", "list", "--user", "alice").stdout == "alice luke alice_l\n"
    assert grid.admin("user-mapping", "remove", "alice", "luke").returncode == 0
    token = grid.admin("token", "create", "--user", "carol").stdout.strip()
    result = grid.run("gridstat", user=None, extra_env={"CIGRI_API_TOKEN": token})
    assert result.returncode == 0, result.stderr


def test_user_priorities_and_mappings_are_removed_once_and_listed_as_json_without_jwts(
        grid: Grid) -> None:
    assert grid.admin("user-priority", "set", "bob", "2", "3").stdout == "bob has priority 3 on luke\n"
    assert json.loads(grid.admin("user-priority", "list", "--json").stdout) == [
        {"grid_user": "bob", "cluster_id": 2, "cluster_name": "luke", "priority": 3}]
    assert grid.admin("user-priority", "remove", "bob", "luke").stdout == (
        "priority of bob on luke removed\n")
    again = grid.admin("user-priority", "remove", "bob", "luke")
    assert (again.returncode, again.stderr) == (1, "Error: bob has no priority on luke\n")
    assert grid.admin("user-priority", "list").stdout == ""

    jwt = "Bearer eyJhbGciOiJIUzI1NiJ9.secret.abcdef"
    assert grid.admin("user-mapping", "set", "bob", "dahu", jwt).returncode == 0
    assert grid.admin("user-mapping", "list").stdout == "bob dahu Bearer ...abcdef\n"
    assert json.loads(grid.admin("user-mapping", "list", "--json", "--user", "bob").stdout) == [
        {"grid_login": "bob", "cluster_id": 1, "cluster_name": "dahu",
         "cluster_login": "Bearer ...abcdef"}]
    assert grid.admin("user-mapping", "remove", "bob", "dahu").stdout == (
        "mapping of bob on dahu removed\n")
    again = grid.admin("user-mapping", "remove", "bob", "dahu")
    assert (again.returncode, again.stderr) == (1, "Error: bob has no mapping on dahu\n")
    missing = grid.admin("user-mapping", "set", "bob", "nowhere", "b")
    assert (missing.returncode, missing.stderr) == (1, "cigri: no cluster named 'nowhere'\n")


def test_b10_admission_rule_for_non_best_effort_jobs(grid: Grid) -> None:
    assert grid.admin("cluster", "authorize", "dahu", "bob").returncode == 0
    normal = {"name": "n", "nb_jobs": 1, "clusters": {"dahu": {"exec_file": "e", "type": "normal"}}}
    result = grid.run("gridsub", "-j", json.dumps(normal))
    assert result.returncode == 1
    assert result.stderr == ("Admission rule error: \n  rule 1 failed: You are not authorized to "
                             "launch non best-effort jobs on cluster dahu!\n")
    assert grid.run("gridsub", "-j", json.dumps(normal), user="bob").returncode == 0
    assert grid.run("gridsub", "-j", json.dumps(JDL)).returncode == 0  # best-effort: anyone
    for kind in ("nightly", "semi-best-effort"):  # normal jobs at night: the same rule
        timed = {**normal, "clusters": {"dahu": {"exec_file": "e", "type": kind}}}
        refused = grid.run("gridsub", "-j", json.dumps(timed))
        assert (refused.returncode, refused.stderr) == (1, result.stderr)
    tried = {**normal, "clusters": {"dahu": {"exec_file": "e", "type": "normal",
                                             "test_mode": "true"}}}
    assert grid.run("gridsub", "-j", json.dumps(tried)).returncode == 0  # test mode: exempt


def test_gridclusters_usage_figures_and_bars(grid: Grid) -> None:
    from datetime import UTC, datetime

    from cigri.storage.tables import grid_usage

    with grid.engine.begin() as conn:
        conn.execute(insert(grid_usage).values(
            date=datetime.now(UTC), cluster_id=1, max_resources=8, used_resources=4,
            used_by_cigri=2, unavailable_resources=2))
    usage = grid.run("gridclusters", "-u").stdout.splitlines()
    assert usage[0].startswith("1: dahu , dahu-fe (stress:0.0/0.8) night 20:00-07:00 weekends UTC")
    assert usage[1:5] == ["    max_resources: 8",
                         "    used_resources: 4", "    used_by_cigri: 2",
                         "    unavailable_resources: 2"]
    assert usage[6] == "    Data temporarily unavailable"  # luke has no sample
    bars = grid.run("gridclusters", "-b").stdout.splitlines()
    assert bars[1] == " (8 resources)"
    assert "=unavailable" in bars[-1] and "=free" in bars[-1]
    as_json = json.loads(grid.run("gridclusters", "--json").stdout)["items"]
    assert as_json[0]["usage"]["max_resources"] == 8 and as_json[1]["usage"] is None
