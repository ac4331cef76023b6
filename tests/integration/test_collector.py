"""The collector against the OAR emulator in execute mode (jobs really run and write files): a
campaign with `output_gathering_method` gets every declared output file of its jobs in its result
directory, checked by size; files that are not there become `missing` with events; a collector
restarted after a crash or a lost local file resumes and fetches what is missing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cigri.config import Settings
from cigri.daemons import collector as collector_module
from cigri.daemons.collector import Collector
from cigri.domain.clock import FakeClock
from cigri.oar.client import OarClient
from cigri.storage import collected as store
from cigri.storage.tables import collected_files
from tests.integration.engine_helpers import (
    Grid,
    event_rows,
    make_settings,
    run_to_termination,
    start_exec_grid,
)
from tests.integration.unix_helpers import root

# OAR's oarsub shell evaluates the command once at submission (the emulator too): escape $0.
SCRIPT = r"sh -c 'echo result-\$0 > out_\$0.txt; printf shared-\$0 > common.log'"

__all__ = ["root"]  # fixtures


@pytest.fixture
def grid(pg_engine: Engine, clock: FakeClock, tmp_path: Path, root: Path) -> Iterator[Grid]:
    # results where their owner (testuser, a Unix account once real OAR is set up) can reach them
    settings = make_settings(COLLECTOR_DIRECTORY=str(root / "results"))
    with start_exec_grid(pg_engine, clock, workdir=str(tmp_path / "oar"), settings=settings) as grid:
        yield grid


def _run_campaign(grid: Grid, params: list[str], **props: str) -> int:
    return run_to_termination(grid, params, exec_file=SCRIPT, **props)


def _collector(grid: Grid, settings: Settings | None = None) -> Collector:
    return Collector(grid.context(settings=settings or grid.settings, stop=threading.Event()),
                     owner="test-collector")


def test_every_declared_output_file_lands_in_the_result_directory(grid: Grid,
                                                                   tmp_path: Path) -> None:
    campaign = _run_campaign(grid, ["p1", "p2", "p3"], output_gathering_method="collector",
                             output_file="out_{TASK}.txt, common.log")
    _collector(grid).run(loops=1)

    results = Path(grid.settings.COLLECTOR_DIRECTORY) / str(campaign)
    for task in ("p1", "p2", "p3"):
        assert (results / f"out_{task}.txt").read_text() == f"result-{task}\n"
    # common.log has one name for every job: it is kept per task (the last writer's content)
    assert sorted(p.name for p in results.iterdir() if p.is_dir()) == ["p1", "p2", "p3"]
    assert all((results / task / "common.log").read_text().startswith("shared-")
               for task in ("p1", "p2", "p3"))
    with grid.engine.begin() as conn:
        files = store.list_collected_files(conn, campaign)
        summary = store.collection_summary(conn, campaign)
    assert len(files) == 6 and {f.state for f in files} == {"collected"}
    assert all(Path(f.local_path or "").stat().st_size == f.size for f in files)
    assert summary["collected"] == 6 and summary["bytes"] == sum(f.size or 0 for f in files)
    assert not list(results.rglob("*.part"))


def test_missing_files_are_recorded_with_an_event_and_others_still_collected(
        grid: Grid, tmp_path: Path) -> None:
    campaign = _run_campaign(grid, ["q1", "q2"], output_gathering_method="collector",
                             output_file="out_{TASK}.txt nothere_{TASK}.dat")
    _collector(grid).run(loops=1)
    with grid.engine.begin() as conn:
        summary = store.collection_summary(conn, campaign)
    assert (summary["collected"], summary["missing"]) == (2, 2)
    missing = event_rows(grid.engine, "MISSING_OUTPUT_FILE")
    assert len(missing) == 2 and all("nothere_q" in e.message for e in missing)
    assert {e.campaign_id for e in missing} == {campaign}


def test_collection_resumes_after_a_crash_and_refetches_a_lost_file(grid: Grid,
                                                                     tmp_path: Path) -> None:
    campaign = _run_campaign(grid, ["r1", "r2"], output_gathering_method="collector",
                             output_file="out_{TASK}.txt")
    crashed = _collector(grid)
    assert crashed.plan_files() == 2  # planned, then killed before fetching anything
    results = Path(grid.settings.COLLECTOR_DIRECTORY) / str(campaign)
    assert not results.exists()

    restarted = _collector(grid)
    restarted.run(loops=1)
    assert (results / "out_r1.txt").read_text() == "result-r1\n"
    (results / "out_r2.txt").unlink()  # lost on the cigri side
    (results / "out_r1.txt").write_text("tampered")

    _collector(grid).run(loops=1)
    assert (results / "out_r2.txt").read_text() == "result-r2\n"
    assert (results / "out_r1.txt").read_text() == "result-r1\n"
    with grid.engine.begin() as conn:
        assert len(store.list_collected_files(conn, campaign)) == 2  # no duplicate rows


def test_campaigns_without_gathering_are_left_alone(grid: Grid, tmp_path: Path) -> None:
    campaign = _run_campaign(grid, ["s1"])
    assert _collector(grid).plan_files() == 0
    with grid.engine.begin() as conn:
        assert store.list_collected_files(conn, campaign) == []


class CuttingClient(OarClient):
    """A real OAR client whose file reads lose their last byte, as a transfer cut short by a
    proxy would (urllib3 only sees what the proxy sends); the size OAR lists stays right."""

    cut = True
    listings = 0

    def read_file(self, path: str, *, user: str, tail: int | None = None) -> bytes:
        data = super().read_file(path, user=user, tail=tail)
        return data[:-1] if self.cut else data

    def file_sizes(self, directory: str, *, user: str) -> dict[str, int]:
        self.listings += 1
        return super().file_sizes(directory, user=user)


def test_a_read_shorter_than_the_listed_size_is_read_again_then_given_up(
        grid: Grid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = _run_campaign(grid, ["t1", "t2"], output_gathering_method="collector",
                             output_file="out_{TASK}.txt")
    client = CuttingClient(grid.clusters[0].api_url)
    collector = Collector(grid.context(stop=threading.Event(), oar_factory=lambda _: client),
                          owner="test-collector", interval=timedelta(0))
    collector.run(loops=1)
    results = Path(grid.settings.COLLECTOR_DIRECTORY) / str(campaign)
    with grid.engine.begin() as conn:
        files = store.list_collected_files(conn, campaign)
    assert [(f.state, f.attempts) for f in files] == [("pending", 1)] * 2
    with grid.engine.begin() as conn:
        messages = conn.execute(select(collected_files.c.message).where(
            collected_files.c.campaign_id == campaign)).scalars().all()
    assert all("9 bytes read, 10 listed by OAR" in (m or "") for m in messages), messages
    assert not list(results.rglob("out_*"))

    client.cut = False  # the next pass reads the whole files
    client.listings = 0
    collector.run(loops=1)
    assert client.listings == 1  # both files are in the job directory: one `ls` for the pass
    assert (results / "out_t1.txt").read_text() == "result-t1\n"
    with grid.engine.begin() as conn:
        assert {f.state for f in store.list_collected_files(conn, campaign)} == {"collected"}

    # a file that keeps coming short is given up after MAX_ATTEMPTS, with an event
    other = _run_campaign(grid, ["u1"], output_gathering_method="collector",
                          output_file="out_{TASK}.txt")
    client.cut = True
    monkeypatch.setattr(collector_module, "MAX_ATTEMPTS", 2)
    collector.run(loops=2)
    with grid.engine.begin() as conn:
        [item] = store.list_collected_files(conn, other)
    assert (item.state, item.attempts) == ("failed", 2)
    failed = event_rows(grid.engine, "OUTPUT_COLLECTION_FAILED")
    assert [(e.campaign_id, "listed by OAR" in e.message) for e in failed] == [(other, True)]
