"""`bench/real_oar.py --deployed`: cigri run as a site deploys it, against the raw limit, in one run.

The raw limit: the same `sleep 2` best-effort jobs posted straight to OAR, one array job per
cluster, no meta-scheduler; its makespan runs from the first POST to the last job's stop time.
Then cigri as deployed: `cigri-almighty` as a process with every setting at its default (except
STRESS_FACTOR, which must be raised on a machine whose load average is OAR's stress factor, see
../shared/oar/README.md, and the database URL), the clusters added as `cigri cluster add` does, and
the campaign stored as `gridsub` stores it; its makespan runs from the campaign's submission to the
last job's stop time. The OAR requests cigri sends are counted by a forwarding proxy in front of
each cluster; the daemons' CPU is read from /proc for almighty and its children, from the
campaign's submission to its end (not their start-up).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from _grid import fresh_database
from sqlalchemy import func, select

from cigri.domain.clusters import Cluster
from cigri.domain.oar import SubmitRequest
from cigri.oar.client import client_for_cluster
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import campaigns, daemon_heartbeats, jobs

COMMAND = "sleep 2; true"


class _Counter:
    def __init__(self) -> None:
        self.requests = 0
        self.posts = 0
        self.lock = threading.Lock()


@contextmanager
def counting_proxies(urls: list[str]) -> Iterator[tuple[list[str], _Counter]]:
    """One forwarding HTTP proxy per cluster URL, counting the requests that go through."""
    counter = _Counter()
    servers: list[ThreadingHTTPServer] = []
    proxied: list[str] = []
    for url in urls:
        target = urlsplit(url)

        class Handler(BaseHTTPRequestHandler):
            upstream = target

            def _forward(self) -> None:
                with counter.lock:
                    counter.requests += 1
                    counter.posts += self.command == "POST"
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                connection = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1",
                                                        self.upstream.port or 80, timeout=120)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in {"host", "connection"}}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        proxied.append(f"http://127.0.0.1:{server.server_address[1]}{target.path}")
    try:
        yield proxied, counter
    finally:
        for server in servers:
            server.shutdown()


def raw_limit(urls: list[str], nb_jobs: int, directory: str) -> float:
    """The same jobs straight to OAR, one array per cluster: seconds from the first POST to the
    last stop."""
    clients = [client_for_cluster(Cluster(id=i + 1, name=f"raw{i + 1}", api_url=url),
                                  timeout_seconds=60.0) for i, url in enumerate(urls)]
    run = uuid.uuid4().hex[:6]
    shares = [nb_jobs // len(urls) + (1 if i < nb_jobs % len(urls) else 0)
              for i in range(len(urls))]
    started = datetime.now(UTC)
    ids: list[tuple[int, list[int]]] = []
    for index, (client, share) in enumerate(zip(clients, shares, strict=True)):
        answer = client.submit(SubmitRequest(
            command=COMMAND, resources="/resource_id=1", walltime="00:05:00",
            params=[f"raw{run}x{index}x{i}" for i in range(share)], name=f"raw-{run}",
            directory=directory, types=["besteffort"]), user="testuser")
        ids.append((index, list(answer.job_ids)))
    stops: list[datetime] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        stops = []
        done = True
        for index, job_ids in ids:
            for job in clients[index].get_jobs(job_ids):
                if job.is_final and job.stop_time is not None:
                    stops.append(job.stop_time)
                else:
                    done = False
        if done and len(stops) == nb_jobs:
            break
        time.sleep(0.5)
    return (max(stops) - started).total_seconds()


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds user + system) of every live process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return table


def tree_pids(root: int, table: dict[int, tuple[int, float]]) -> list[int]:
    """A process and its live descendants, from a `process_table`."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
        todo += children.get(pid, [])
    return found


def _tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of a process and its live children."""
    table = process_table()
    return sum(table[pid][1] for pid in tree_pids(root, table))


def deployed(urls: list[str], nb_jobs: int, directory: str, *,
             grouping: str = "false") -> dict[str, object]:
    """cigri as deployed against the raw limit, same jobs, same run; `grouping` is the
    campaign's temporal_grouping (false, true or auto)."""
    raw = raw_limit(urls, nb_jobs, directory)
    run = uuid.uuid4().hex[:6]
    with (fresh_database(f"cigri_deployed_{run}") as engine, counting_proxies(urls) as
          (proxied, counter), tempfile.TemporaryDirectory(prefix="cigri-deployed-") as tmp):
        database_url = engine.url.render_as_string(hide_password=False)
        conf = os.path.join(tmp, "cigri.conf")
        with open(conf, "w") as out:
            out.write(f'DATABASE_URL = "{database_url}"\nSTRESS_FACTOR = 1000\n'
                      f'LOG_FILE = "{os.path.join(tmp, "daemons.log")}"\n')
        now = datetime.now(UTC)
        with engine.begin() as conn:
            cluster_ids = [add_cluster(conn, name=f"dep{i + 1}", api_url=url, now=now).id
                           for i, url in enumerate(proxied)]
        env = {**os.environ, "CIGRI_CONF": conf}
        almighty = subprocess.Popen(["cigri-almighty"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # every daemon has done a pass
                with engine.begin() as conn:
                    beats = conn.execute(select(func.count()).select_from(daemon_heartbeats)
                                         .where(daemon_heartbeats.c.passes > 0)).scalar_one()
                if beats >= 4 + len(urls):
                    break
                time.sleep(0.5)
            time.sleep(2.0)  # let the first grid-usage sample land
            requests_before, posts_before = counter.requests, counter.posts
            cpu_before = _tree_cpu(almighty.pid)
            props = {"exec_file": COMMAND, "type": "best-effort", "walltime": "00:05:00",
                     "resources": "/resource_id=1", "exec_directory": directory,
                     "temporal_grouping": grouping}
            with engine.begin() as conn:
                campaign = create_campaign(
                    conn, grid_user="testuser", name=f"deployed-{run}", jobs_type="normal",
                    jdl={}, properties={cluster: props for cluster in cluster_ids},
                    params=(f"d{run}x{i}" for i in range(nb_jobs)), now=datetime.now(UTC))
            state = ""
            while time.monotonic() < deadline + 600 and state != "terminated":
                time.sleep(0.2)
                with engine.begin() as conn:
                    state = conn.execute(select(campaigns.c.state)
                                         .where(campaigns.c.id == campaign)).scalar_one()
            cpu = _tree_cpu(almighty.pid) - cpu_before
            requests = counter.requests - requests_before
            posts = counter.posts - posts_before
        finally:
            os.killpg(almighty.pid, signal.SIGTERM)
            almighty.wait(timeout=60)
        with engine.begin() as conn:
            submitted, last_stop, last_submission, count = conn.execute(
                select(campaigns.c.submission_time, func.max(jobs.c.stop_time),
                       func.max(jobs.c.submission_time), func.count(jobs.c.id))
                .join(jobs, jobs.c.campaign_id == campaigns.c.id)
                .where(campaigns.c.id == campaign)
                .group_by(campaigns.c.submission_time)).one()
    makespan = (last_stop - submitted).total_seconds()
    return {"mode": "deployed", "grouping": grouping, "state": state, "jobs": nb_jobs, "cigri_jobs": count,
            "cigri_makespan_s": round(makespan, 1), "raw_makespan_s": round(raw, 1),
            "ratio": round(makespan / raw, 3),
            "last_submission_s": round((last_submission - submitted).total_seconds(), 1),
            "daemon_cpu_s": round(cpu, 2), "oar_requests": requests, "oar_posts": posts,
            "load_average": round(os.getloadavg()[0], 1)}
