"""The grid tools' follow-ups as subprocesses: `gridnotify --log`, `gridclean --outputs` against
the OAR emulator (the jobs' files really go, removed by a running collector while gridclean
follows the request), `gridstat`'s statistics and collection counts."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from cigri.config import build_settings
from cigri.daemons.base import DaemonContext
from cigri.daemons.collector import Collector
from cigri.domain.oar import SubmitRequest
from cigri.emulator import run_in_thread
from cigri.oar.client import OarClient
from cigri.storage import collected
from cigri.storage.tables import campaigns, clusters, collected_files, parameters

from .conftest import Grid


def test_gridnotify_subscribes_and_unsubscribes_a_log_tag(grid: Grid) -> None:
    result = grid.run("gridnotify", "--log", "cigri-alice", "-s", "low", "-v")
    assert (result.returncode, result.stdout) == (0, "New subscription created.\n"), result.stderr
    assert grid.run("gridnotify", "-l").stdout == (
        "You have the following notification subscriptions:\n"
        " - log on cigri-alice with severity low\n")
    assert grid.run("gridnotify", "-u", "--log", "cigri-alice").returncode == 0
    assert grid.run("gridnotify", "-l").stdout == ""


def _job_on_emulator(grid: Grid, url: str, user: str) -> int:
    """A real (emulated) OAR job of `user` that wrote its stdout and stderr, and is finished."""
    oar = OarClient(url)
    job = oar.submit(SubmitRequest(command="echo out; echo err >&2", resources="/resource_id=1",
                                   walltime="00:01:00", name="cigri.clean"), user=user).job_ids[0]
    deadline = time.monotonic() + 30
    while not oar.get_job(job, user=user).is_final:
        assert time.monotonic() < deadline, "the emulated job did not finish"
        time.sleep(0.1)
    return job


def test_gridclean_outputs_removes_the_jobs_files_on_the_cluster(grid: Grid,
                                                                  tmp_path: Path) -> None:
    stop = threading.Event()
    emulator = run_in_thread(allow_root_jobs=True, clusters=1, nodes=1, cores=2, mode="execute",
                             workdir=str(tmp_path / "oar"))
    try:
        with grid.engine.begin() as conn:
            conn.execute(update(clusters).where(clusters.c.name == "dahu")
                         .values(api_url=emulator.urls[0]))
        path = grid.home / "clean.json"
        path.write_text(json.dumps({"name": "clean", "nb_jobs": 1,
                                    "clusters": {"dahu": {"exec_file": "$HOME/run.sh"}}}))
        submitted = grid.run("gridsub", "-f", str(path))
        assert submitted.returncode == 0, submitted.stderr
        campaign = int(re.search(r"CAMPAIGN_ID=(\d+)", submitted.stdout).group(1))  # type: ignore[union-attr]
        with grid.engine.begin() as conn:
            param = conn.execute(select(parameters.c.id).where(
                parameters.c.campaign_id == campaign)).scalar_one()
        remote = _job_on_emulator(grid, emulator.urls[0], "alice")
        grid.add_job(campaign, param_id=param, cluster_id=1, state="terminated",
                     remote_id=remote)
        home = tmp_path / "oar" / "home" / "alice"
        assert len(list(home.glob("OAR.*.std*"))) == 2

        running = grid.run("gridclean", "--outputs", str(campaign))
        assert running.returncode == 1
        assert f"Campaign {campaign} is in_treatment" in running.stderr
        with grid.engine.begin() as conn:
            conn.execute(update(campaigns).where(campaigns.c.id == campaign)
                         .values(state="terminated"))
        dry = grid.run("gridclean", "--outputs", "-n", str(campaign))
        assert dry.stdout == f"would remove the output files of campaign {campaign}\n"
        assert len(list(home.glob("OAR.*.std*"))) == 2
        daemon = Collector(DaemonContext.for_process(build_settings({}), grid.engine, stop=stop),
                           interval=timedelta(seconds=0.2), owner="test-collector")
        collecting = threading.Thread(target=daemon.run, daemon=True)
        collecting.start()
        result = grid.run("gridclean", "--outputs", str(campaign))
        requested = re.search(r"\(request (\d+)\)", result.stdout)
        assert requested, result.stdout
        assert (result.returncode, result.stdout) == (
            0, f"Campaign {campaign}: removal of the output files requested "
               f"(request {requested.group(1)}).\n"
               f"Campaign {campaign}: 2 output files removed.\n"), result.stderr
        assert list(home.glob("OAR.*.std*")) == []
        again = grid.run("gridclean", "--outputs", str(campaign))
        assert (again.returncode, again.stdout.splitlines()[-1]) == (
            0, f"Campaign {campaign}: 0 output files removed, 2 already gone.")
    finally:
        stop.set()
        emulator.stop()


def test_gridstat_shows_per_cluster_progress_eta_and_collected_files(grid: Grid) -> None:
    path = grid.home / "stat.json"
    path.write_text(json.dumps({"name": "stat", "nb_jobs": 4, "clusters": {
        "dahu": {"exec_file": "e", "output_gathering_method": "collector", "output_file": "o"},
        "luke": {"exec_file": "e"}}}))
    submitted = grid.run("gridsub", "-f", str(path))
    assert submitted.returncode == 0, submitted.stderr
    campaign = int(re.search(r"CAMPAIGN_ID=(\d+)", submitted.stdout).group(1))  # type: ignore[union-attr]
    with grid.engine.begin() as conn:
        params = sorted(conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == campaign)).scalars())
    now = datetime.now(UTC)
    done = [grid.add_job(campaign, param_id=p, cluster_id=1, state="terminated",
                         start_time=now - timedelta(seconds=70), stop_time=now - timedelta(seconds=10))
            for p in params[:2]]
    grid.add_job(campaign, param_id=params[2], cluster_id=2, state="running")
    with grid.engine.begin() as conn:
        collected.record_pending_files(conn, [(campaign, done[0], "/r/o", "/l/o"),
                                              (campaign, done[1], "/r/o", "/l/o2")])
        first = min(conn.execute(select(collected_files.c.id)).scalars())
        collected.mark_collected(conn, first, size=42, now=now)
    lines = grid.run("gridstat", str(campaign)).stdout.splitlines()
    assert re.fullmatch(r"  Progress: 2/4 \(50%\) \[#{15}\.{15}\] ETA \d+:\d\d:\d\d", lines[5])
    assert lines[13] == "    collected: 1 files (42 bytes; 1 pending, 0 missing, 0 failed)"
    dahu = lines.index("    dahu:")
    assert lines[dahu + 7] == "      runs: best-effort jobs, day and night [best-effort]"
    assert re.fullmatch(r"      progress: 2/4 \[#{15}\.{15}\] [\d.]+ jobs/h, 0 failures",
                        lines[dahu + 8])
    luke = lines.index("    luke:")
    assert lines[luke + 1] == "      active_jobs: 1"
    assert lines[luke + 5:luke + 7] == ["      running_jobs: 1", "      waiting_jobs: 0"]
    assert lines[luke + 8] == "      progress: 0/4 [..............................] ~ jobs/h, 0 failures"
    as_json = json.loads(grid.run("gridstat", str(campaign), "--json").stdout)
    assert as_json["stats"]["forecast"]["finished_tasks"] == 2
