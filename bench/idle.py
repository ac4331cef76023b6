"""Idle cost of cigri as deployed: CPU seconds per second of `cigri-almighty` and its daemons on
a grid with nothing to do (issue 15's goal: <= 0.005 CPU-s/s for the whole engine; CiGri v3
measured 0.17 on this machine kind).

As a site runs it: `cigri-almighty` as a process with every setting at its default (only the
database URL and the log file are set), on a fresh PostgreSQL database. Two scenarios, same run:
the baseline with no cluster at all (what the supervisor and the daemons' bare loops cost), then
three idle clusters served by the OAR emulator (a separate process, whose CPU is not counted; it
answers as OAR does with no job). After a warm-up, the CPU of almighty and of each child is read
from /proc over `--window` seconds, `--windows` times; medians are printed per daemon.

    PGHOST=127.0.0.1 PGUSER=postgres python bench/idle.py [--window 60] [--windows 3]

Ends with one key=value line.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from _deployed import process_table, tree_pids
from _grid import fresh_database
from sqlalchemy import Engine, func, select

from cigri.storage.clusters import add_cluster
from cigri.storage.tables import daemon_heartbeats

GOAL = 0.005  # CPU-s per second, issue 15
V3 = 0.17  # CiGri v3 on the same machine kind (issue 15; not measured in this run)


def _name(pid: int) -> str:
    """The daemon a process of almighty's tree runs (`python -c "import cigri.daemons.<name>..."`),
    or almighty itself."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().decode(errors="replace")
    except OSError:
        return "gone"
    if "import cigri.daemons." in argv:
        return argv.split("import cigri.daemons.", 1)[1].split(" ", 1)[0]
    return "almighty"


def _tree(root: int) -> dict[str, float]:
    """CPU seconds per daemon of almighty and its live children."""
    table = process_table()
    result: dict[str, float] = {}
    for pid in tree_pids(root, table):
        name = _name(pid)
        result[name] = result.get(name, 0.0) + table[pid][1]
    return result


@contextmanager
def _emulator(clusters: int) -> Iterator[list[str]]:
    """The OAR emulator (simulate mode) in its own process; yields the cluster URLs."""
    with tempfile.TemporaryDirectory(prefix="cigri-idle-emu-") as workdir:
        process = subprocess.Popen(
            [sys.executable, "-m", "cigri.emulator", "--clusters", str(clusters), "--nodes", "4",
             "--cores", "2", "--mode", "simulate", "--port", "0", "--workdir", workdir,
             "--log-level", "error"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            urls = [process.stdout.readline().strip() for _ in range(clusters)]
            if not all(url.startswith("http") for url in urls):
                raise RuntimeError(f"the emulator did not start: {urls}")
            yield urls
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_for_passes(engine: Engine, expected: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.begin() as conn:
            beats = conn.execute(select(func.count()).select_from(daemon_heartbeats)
                                 .where(daemon_heartbeats.c.passes > 0)).scalar_one()
        if beats >= expected:
            return
        time.sleep(0.5)
    raise RuntimeError(f"only {beats} of {expected} daemons made a pass in {timeout:.0f} s")


def measure(urls: list[str], *, window: float, windows: int, warmup: float) -> dict[str, float]:
    """Median CPU-s per second, per daemon and in total, of almighty on an idle grid."""
    run = uuid.uuid4().hex[:6]
    with (fresh_database(f"cigri_idle_{run}") as engine,
          tempfile.TemporaryDirectory(prefix="cigri-idle-") as tmp):
        conf = os.path.join(tmp, "cigri.conf")
        with open(conf, "w") as out:
            out.write(f'DATABASE_URL = "{engine.url.render_as_string(hide_password=False)}"\n'
                      f'LOG_FILE = "{os.path.join(tmp, "daemons.log")}"\n')
        with engine.begin() as conn:
            for index, url in enumerate(urls):
                add_cluster(conn, name=f"idle{index + 1}", api_url=url, now=datetime.now(UTC))
        almighty = subprocess.Popen(["cigri-almighty"], env={**os.environ, "CIGRI_CONF": conf},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
        try:
            _wait_for_passes(engine, 5 + (1 if urls else 0))
            time.sleep(warmup)
            samples: dict[str, list[float]] = {}
            for _ in range(windows):
                before = _tree(almighty.pid)
                time.sleep(window)
                after = _tree(almighty.pid)
                for name in after:
                    rate = (after[name] - before.get(name, 0.0)) / window
                    samples.setdefault(name, []).append(rate)
                samples.setdefault("total", []).append(
                    (sum(after.values()) - sum(before.values())) / window)
        finally:
            os.killpg(almighty.pid, signal.SIGTERM)
            almighty.wait(timeout=60)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--windows", type=int, default=3, help="measurements (median quoted)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before measuring")
    parser.add_argument("--clusters", type=int, default=3)
    args = parser.parse_args()
    print(f"cigri-almighty as deployed, default settings; {args.windows} windows of "
          f"{args.window:.0f} s after {args.warmup:.0f} s; load average "
          f"{os.getloadavg()[0]:.1f} at start")
    empty = measure([], window=args.window, windows=args.windows, warmup=args.warmup)
    with _emulator(args.clusters) as urls:
        busy = measure(urls, window=args.window, windows=args.windows, warmup=args.warmup)
    print(f"{'process':<14}{'no cluster':>14}{f'{args.clusters} idle clusters':>20}  CPU-s/s")
    for name in sorted(set(empty) | set(busy), key=lambda n: (n == "total", n)):
        print(f"{name:<14}{empty.get(name, 0.0):>14.5f}{busy.get(name, 0.0):>20.5f}")
    total = busy["total"]
    print(f"total with {args.clusters} idle clusters: {total:.5f} CPU-s/s = {total / GOAL:.2f} x "
          f"the goal ({GOAL}), {V3 / max(total, 1e-9):.0f} x less than v3's {V3} (issue figure); "
          f"{total / max(empty['total'], 1e-9):.2f} x the no-cluster baseline")
    print(f"idle_cpu_per_s={total:.5f} idle_cpu_per_s_no_cluster={empty['total']:.5f} "
          f"goal={GOAL} ratio_to_goal={total / GOAL:.2f} clusters={args.clusters} "
          f"load_average={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
