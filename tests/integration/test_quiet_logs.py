"""At the default LOG_LEVEL the log holds one INFO line per real action: APScheduler's lines for
each job added and each scheduled run (almighty's maintenance) are not written; at DEBUG they are."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from cigri.app import setup_logging
from cigri.config import build_settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    scheduler_level = logging.getLogger("apscheduler").level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level = handlers, level
    logging.getLogger("apscheduler").setLevel(scheduler_level)


def _log_of_one_scheduled_action(tmp_path: Path, level: str) -> list[str]:
    log_file = tmp_path / f"{level}.log"
    setup_logging(build_settings({"LOG_FILE": str(log_file), "LOG_LEVEL": level}), name="almighty")
    ran = threading.Event()

    def action() -> None:
        logging.getLogger("cigri.daemons.maintenance").info("maintenance: purged 2 campaigns")
        ran.set()

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(action, "date", run_date=datetime.now(UTC), id="cigri-purge")
    scheduler.start()
    assert ran.wait(30)
    # the scheduler's thread removes the finished one-off job just after running it: shutting
    # down before that made it raise JobLookupError in its thread (a pytest warning)
    deadline = time.monotonic() + 30
    while scheduler.get_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    scheduler.shutdown(wait=True)
    return log_file.read_text().splitlines()


def test_a_scheduled_run_writes_only_its_own_info_line(tmp_path: Path,
                                                       restore_logging: None) -> None:
    lines = _log_of_one_scheduled_action(tmp_path, "INFO")
    assert len(lines) == 1, lines
    assert lines[0].endswith("INFO [almighty] cigri.daemons.maintenance: "
                             "maintenance: purged 2 campaigns")


def test_debug_level_still_shows_the_scheduler(tmp_path: Path, restore_logging: None) -> None:
    lines = _log_of_one_scheduled_action(tmp_path, "DEBUG")
    assert any("apscheduler.executors" in line and "Running job" in line for line in lines), lines
