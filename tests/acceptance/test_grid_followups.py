"""The grid tools' follow-ups as subprocesses: `gridnotify --log`."""

from __future__ import annotations

from .conftest import Grid


def test_gridnotify_subscribes_and_unsubscribes_a_log_tag(grid: Grid) -> None:
    result = grid.run("gridnotify", "--log", "cigri-alice", "-s", "low", "-v")
    assert (result.returncode, result.stdout) == (0, "New subscription created.\n"), result.stderr
    assert grid.run("gridnotify", "-l").stdout == (
        "You have the following notification subscriptions:\n"
        " - log on cigri-alice with severity low\n")
    assert grid.run("gridnotify", "-u", "--log", "cigri-alice").returncode == 0
    assert grid.run("gridnotify", "-l").stdout == ""
