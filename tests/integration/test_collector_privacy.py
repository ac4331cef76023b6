"""Collected results are private to their campaign's owner (issue 16 point 2), against the OAR
emulator in execute mode, real PostgreSQL and real Unix accounts (throwaway ones made with
`useradd` and removed after; the collector runs as root, as in CI):

- the campaign's directory is 0700 and its files 0600, owned by the owner's Unix account (another
  account cannot read them), or by the collector's own user when the owner has no account;
- with COLLECTOR_ALLOW_USER_DESTINATION, a destination that resolves (`..`, symlinks) outside a
  place the owner owns is refused with an OUTPUT_DESTINATION_REFUSED event and nothing written;
  an allowed one is written with the owner's rights;
- no campaign writes over another's results (another owner's, or the same owner's other one).
"""

from __future__ import annotations

import os
import pwd
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from cigri.daemons.collector import Collector
from cigri.domain.clock import FakeClock
from cigri.storage.tables import campaigns, collected_files, users_mapping
from tests.integration.engine_helpers import (
    USER,
    Grid,
    event_rows,
    make_settings,
    run_to_termination,
    start_exec_grid,
)
from tests.integration.unix_helpers import MakeUser, readable_by, root, unix_user

__all__ = ["root", "unix_user"]  # fixtures

SCRIPT = r"sh -c 'echo {tag}-\$0 > out_\$0.txt'"


@pytest.fixture
def grid(pg_engine: Engine, clock: FakeClock, tmp_path: Path, root: Path) -> Iterator[Grid]:
    settings = make_settings(COLLECTOR_DIRECTORY=str(root / "results"))
    with start_exec_grid(pg_engine, clock, workdir=str(tmp_path / "oar"),
                         settings=settings) as grid:
        yield grid


def _campaign(grid: Grid, owner: str, tag: str, **props: str) -> int:
    """A campaign run by the emulator (as its test login), then owned by `owner`, whose cluster
    login is that test login (as `users_mapping` would say)."""
    campaign = run_to_termination(grid, ["p1", "p2"], exec_file=SCRIPT.format(tag=tag),
                                  output_gathering_method="collector",
                                  output_file="out_{TASK}.txt", **props)
    with grid.engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign).values(grid_user=owner))
        if owner != USER:
            mapped = conn.execute(users_mapping.select().where(
                users_mapping.c.grid_login == owner)).first()
            if mapped is None:
                conn.execute(insert(users_mapping).values(
                    grid_login=owner, cluster_login=USER, cluster_id=grid.clusters[0].id))
    return campaign


def _collect(grid: Grid, **settings: object) -> None:
    merged = make_settings(COLLECTOR_DIRECTORY=grid.settings.COLLECTOR_DIRECTORY, **settings)
    Collector(grid.context(settings=merged, stop=threading.Event()),
              owner="test-collector").run(loops=1)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _states(grid: Grid, campaign: int) -> list[str]:
    with grid.engine.begin() as conn:
        rows = conn.execute(select(collected_files.c.state, collected_files.c.message)
                            .where(collected_files.c.campaign_id == campaign)
                            .order_by(collected_files.c.id)).all()
    print([row.message for row in rows])  # shown when a test fails
    return [row.state for row in rows]


def test_results_belong_to_their_owner_and_nobody_else_reads_them(
        grid: Grid, root: Path, unix_user: MakeUser) -> None:
    alice, mallory = unix_user(), unix_user()
    campaign = _campaign(grid, alice.pw_name, "alice")
    _collect(grid)

    results = root / "results" / str(campaign)
    assert _states(grid, campaign) == ["collected", "collected"]
    assert (results / "out_p1.txt").read_text() == "alice-p1\n"
    assert _mode(results) == 0o700
    assert (results.stat().st_uid, results.stat().st_gid) == (alice.pw_uid, alice.pw_gid)
    for name in ("out_p1.txt", "out_p2.txt"):
        status = (results / name).stat()
        assert (status.st_mode & 0o777, status.st_uid) == (0o600, alice.pw_uid)
    assert readable_by(alice, results / "out_p1.txt")
    assert not readable_by(mallory, results / "out_p1.txt")
    assert _states(grid, campaign) == ["collected", "collected"]


def test_results_of_an_owner_without_unix_account_belong_to_cigri_only(
        grid: Grid, root: Path, unix_user: MakeUser) -> None:
    mallory = unix_user()
    # a grid user with no Unix account of that name (testuser may have one: real OAR's setup
    # makes it), mapped to the cluster login as users_mapping would
    campaign = _campaign(grid, f"nobody{uuid.uuid4().hex[:8]}", "nobody")
    _collect(grid)

    results = root / "results" / str(campaign)
    assert (results / "out_p2.txt").read_text() == "nobody-p2\n"
    assert (_mode(results), results.stat().st_uid) == (0o700, os.geteuid())
    assert (_mode(results / "out_p2.txt"), (results / "out_p2.txt").stat().st_uid) == \
        (0o600, os.geteuid())
    assert not readable_by(mallory, results / "out_p2.txt")


def _place_of(account: pwd.struct_passwd, root: Path) -> Path:
    place = root / "places" / account.pw_name
    place.mkdir(parents=True)
    os.chown(place, account.pw_uid, account.pw_gid)
    return place


def test_a_destination_climbing_out_with_dotdot_is_refused_with_an_event(
        grid: Grid, root: Path, unix_user: MakeUser) -> None:
    alice = unix_user()
    place = _place_of(alice, root)
    campaign = _campaign(grid, alice.pw_name, "alice",
                         output_destination=f"{place}/../../escaped/{{CAMPAIGN_ID}}")
    _collect(grid, COLLECTOR_ALLOW_USER_DESTINATION=True)

    assert not (root / "escaped").exists()
    assert _states(grid, campaign) == ["failed", "failed"]
    [event] = event_rows(grid.engine, "OUTPUT_DESTINATION_REFUSED")
    assert event.campaign_id == campaign
    assert f"{root}/escaped/{campaign}" in event.message
    assert alice.pw_name in event.message
    _collect(grid, COLLECTOR_ALLOW_USER_DESTINATION=True)  # nothing tried again
    assert not (root / "escaped").exists()


def test_a_destination_through_a_symlink_to_elsewhere_is_refused_and_a_good_one_is_written(
        grid: Grid, root: Path, unix_user: MakeUser) -> None:
    alice = unix_user()
    place = _place_of(alice, root)
    victim = root / "victim"
    victim.mkdir()
    (place / "link").symlink_to(victim)
    escaping = _campaign(grid, alice.pw_name, "esc", output_destination=f"{place}/link/out")
    _collect(grid, COLLECTOR_ALLOW_USER_DESTINATION=True)
    assert list(victim.iterdir()) == []
    assert _states(grid, escaping) == ["failed", "failed"]
    [event] = event_rows(grid.engine, "OUTPUT_DESTINATION_REFUSED")
    assert f"{victim}/out" in event.message

    good = _campaign(grid, alice.pw_name, "good",
                     output_destination=f"{place}/runs/{{CAMPAIGN_ID}}")
    _collect(grid, COLLECTOR_ALLOW_USER_DESTINATION=True)
    written = place / "runs" / str(good) / "out_p1.txt"
    assert written.read_text() == "good-p1\n"
    assert (_mode(written), written.stat().st_uid) == (0o600, alice.pw_uid)
    assert (place / "runs").stat().st_uid == alice.pw_uid  # created with alice's rights
    assert _states(grid, good) == ["collected", "collected"]


def test_no_campaign_writes_over_another_campaigns_results(
        grid: Grid, root: Path, unix_user: MakeUser) -> None:
    alice, bob = unix_user(), unix_user()
    bobs = _campaign(grid, bob.pw_name, "bob")
    _collect(grid, COLLECTOR_ALLOW_USER_DESTINATION=True)
    bobs_results = root / "results" / str(bobs)
    assert (bobs_results / "out_p1.txt").read_text() == "bob-p1\n"

    # alice aims at bob's results
    _campaign(grid, alice.pw_name, "alice", output_destination=str(bobs_results))
    # alice's second campaign aims at her first one's results
    place = _place_of(alice, root)
    first = _campaign(grid, alice.pw_name, "first", output_destination=f"{place}/r")
    _collect(grid, COLLECTOR_ALLOW_USER_DESTINATION=True)
    assert (place / "r" / "out_p1.txt").read_text() == "first-p1\n"
    second = _campaign(grid, alice.pw_name, "second", output_destination=f"{place}/r")
    _collect(grid, COLLECTOR_ALLOW_USER_DESTINATION=True)

    assert (bobs_results / "out_p1.txt").read_text() == "bob-p1\n"
    assert (bobs_results / "out_p1.txt").stat().st_uid == bob.pw_uid
    assert (place / "r" / "out_p1.txt").read_text() == "first-p1\n"
    assert _states(grid, first) == ["collected", "collected"]
    assert _states(grid, second) == ["failed", "failed"]
    messages = [e.message for e in event_rows(grid.engine, "OUTPUT_DESTINATION_REFUSED")]
    assert len(messages) == 2
    assert any(f"campaign {first}" in m for m in messages)
