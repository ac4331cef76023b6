"""`gridnotify --apprise` as a subprocess against a served API: a URL Apprise cannot read is one
error line and exit 1, never echoing the URL; a good one is listed masked and unsubscribes."""

from __future__ import annotations

from .conftest import Grid


def test_gridnotify_refuses_a_bad_apprise_url_in_one_line(grid: Grid) -> None:
    refused = grid.run("gridnotify", "-a", "nosuch://s3cret@host", "-s", "high")
    assert refused.returncode == 1
    assert refused.stderr == ("Failed to subscribe with the Apprise URL: Invalid Apprise URL: "
                              "unknown Apprise service nosuch:// (see the Apprise URL list).\n")
    incomplete = grid.run("gridnotify", "-a", "discord://s3cret", "-s", "high")
    assert incomplete.returncode == 1 and incomplete.stderr.count("\n") == 1
    assert "s3cret" not in incomplete.stderr and "malformed" in incomplete.stderr


def test_gridnotify_lists_an_apprise_url_masked(grid: Grid) -> None:
    url = "discord://123456/S3cretToken"
    assert grid.run("gridnotify", "-a", url, "-s", "medium", "-v").stdout == (
        "New subscription created.\n")
    listed = grid.run("gridnotify", "-l").stdout
    assert listed.startswith("You have the following notification subscriptions:\n - apprise on "
                             "discord://")
    assert "S3cretToken" not in listed and listed.endswith(" with severity medium\n")
    assert grid.run("gridnotify", "-u", "-a", url).returncode == 0
    assert grid.run("gridnotify", "-l").stdout == ""
