"""The cluster-admin token of an OAR 3 (jwt) cluster with the installed tools: `gridtoken` run by
an admin sets, shows (masked) and replaces it through the API (v3's procedure: root's tokens are
the `oar` login's), a non-admin asking for it is refused (never stored as theirs), and
`cigri cluster token` does the same on the server reading the token from stdin or a file. The
secret is never printed. Open token events show in `gridclusters -i`."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from cigri.domain.cluster_tokens import ADMIN_LOGIN
from cigri.storage import cluster_tokens as token_store
from cigri.storage.events import record_event

from .conftest import Grid

SECRET = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyIjogIm9hciJ9.admin-secret-1234"  # {"user": "oar"}


def _jwt_cluster(grid: Grid) -> int:
    added = grid.admin("cluster", "add", "oar3c", "http://127.0.0.1:9/", "--batch", "oar3",
                       "--auth-type", "jwt")
    assert added.returncode == 0, added.stderr
    return 3


def _stored(grid: Grid, login: str, cluster_id: int) -> str | None:
    with grid.engine.begin() as conn:
        return token_store.get_token(conn, grid_login=login, cluster_id=cluster_id)


def test_an_admin_sets_shows_and_replaces_the_cluster_admin_token_with_gridtoken(
        grid: Grid) -> None:
    cluster_id = _jwt_cluster(grid)
    done = grid.run("gridtoken", "-i", str(cluster_id), "-t", SECRET, user="root")
    assert (done.returncode, done.stdout) == (
        0, f"Cluster-admin token of cluster {cluster_id} registered (...t-1234).\n")
    assert _stored(grid, ADMIN_LOGIN, cluster_id) == f"Bearer {SECRET}"
    assert _stored(grid, "root", cluster_id) is None
    listed = grid.run("gridtoken", "-l", user="root").stdout
    assert listed == ("The clusters have the following admin tokens:\n"
                      f" - Cluster #{cluster_id} : ...t-1234\n")
    # replaced from stdin, with --admin said explicitly; the secret is not printed
    again = subprocess.run([shutil.which("gridtoken") or "gridtoken", "--admin", "-i",
                            str(cluster_id), "-t", "-"], input="Bearer new-admin-token-999999\n",
                           env=grid.env("root"), capture_output=True, text=True, timeout=60,
                           check=False)
    assert again.returncode == 0, again.stderr
    assert "new-admin-token" not in again.stdout
    assert _stored(grid, ADMIN_LOGIN, cluster_id) == "Bearer new-admin-token-999999"
    # an admin's own token is --mine
    assert grid.run("gridtoken", "--mine", "-i", str(cluster_id), "-t", "root-own-tok",
                    user="root").stdout == "New token registered.\n"
    assert _stored(grid, "root", cluster_id) == "Bearer root-own-tok"
    assert _stored(grid, ADMIN_LOGIN, cluster_id) == "Bearer new-admin-token-999999"


def test_a_user_cannot_set_the_admin_token_and_keeps_their_own(grid: Grid) -> None:
    cluster_id = _jwt_cluster(grid)
    refused = grid.run("gridtoken", "--admin", "-i", str(cluster_id), "-t", SECRET)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"Failed to register token on cluster {cluster_id}: User "
                                     "'alice' is not a cigri admin")
    assert _stored(grid, ADMIN_LOGIN, cluster_id) is None
    assert _stored(grid, "alice", cluster_id) is None
    assert grid.run("gridtoken", "-i", str(cluster_id), "-t", "alice-tok").stdout == (
        "New token registered.\n")
    assert _stored(grid, "alice", cluster_id) == "Bearer alice-tok"
    bad = grid.run("gridtoken", "-i", str(cluster_id), "-t", "two words")
    assert bad.returncode == 1 and "spaces or several lines" in bad.stderr


def _cigri(grid: Grid, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIGRI")}
    env["CIGRI_DATABASE_URL"] = grid.database_url
    return subprocess.run([shutil.which("cigri") or "cigri", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def test_cigri_cluster_token_reads_the_secret_and_never_prints_it(grid: Grid,
                                                                  tmp_path: Path) -> None:
    cluster_id = _jwt_cluster(grid)
    shown = _cigri(grid, "cluster", "token", "oar3c")
    assert shown.returncode == 0
    assert "no admin token; set it with `cigri cluster token oar3c --set - < TOKEN_FILE`" in (
        shown.stdout)
    token_file = tmp_path / "admin.jwt"
    token_file.write_text(SECRET + "\n")
    done = _cigri(grid, "cluster", "token", "oar3c", "--file", str(token_file))
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert _stored(grid, ADMIN_LOGIN, cluster_id) == f"Bearer {SECRET}"
    with grid.engine.begin() as conn:
        record_event(conn, class_="cluster", code="ADMIN_TOKEN_REJECTED", cluster_id=cluster_id,
                     message="Cluster oar3c (OAR 3, JWT) refuses the cluster-admin token",
                     now=datetime.now(UTC))
    shown = _cigri(grid, "cluster", "token", str(cluster_id), "--show")
    assert SECRET not in shown.stdout
    assert shown.stdout.splitlines()[0] == "cluster oar3c: admin token ...t-1234 (user oar)"
    assert "ADMIN_TOKEN_REJECTED" in shown.stdout
    assert "ADMIN_TOKEN_REJECTED" in grid.run("gridclusters", "-i").stdout
    assert "refuses the cluster-admin token" in grid.run("gridevents", "-g").stdout
    empty = _cigri(grid, "cluster", "token", "oar3c", "--set", "-", stdin="\n")
    assert (empty.returncode, empty.stderr.strip()) == (1, "Error: token not set: the token is empty")
    assert _cigri(grid, "cluster", "token", "oar3c", "--remove").returncode == 0
    assert _stored(grid, ADMIN_LOGIN, cluster_id) is None
    header = _cigri(grid, "cluster", "token", "dahu", "--set", "-", stdin=SECRET)
    assert header.returncode == 1 and "not jwt" in header.stderr
