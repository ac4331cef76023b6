"""Notifier compose cost: N failing jobs of one campaign (EXIT_ERROR + BLACKLIST each, as the
updater records them today) plus N closed RESUBMIT traces, turned into outbox messages for three
subscribers. Prints events/s of the compose step, messages stored, and the second (idle) pass time.

Usage: PGHOST=127.0.0.1 PGUSER=postgres python bench/notifier.py [N]
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, insert, text

from cigri.config import build_settings
from cigri.daemons.notifier import NotifierDaemon
from cigri.domain.clock import FakeClock
from cigri.domain.states import NotificationType
from cigri.notify.webhook import WebhookNotifier
from cigri.storage import outbox
from cigri.storage.db import make_engine
from cigri.storage.migrate import upgrade
from cigri.storage.tables import campaigns, clusters, events, user_notifications


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    server = (f"postgresql+psycopg://{os.environ.get('PGUSER', 'postgres')}@"
              f"{os.environ.get('PGHOST', '127.0.0.1')}:{os.environ.get('PGPORT', '5432')}")
    name = f"cigri_bench_notify_{uuid.uuid4().hex[:6]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        upgrade(f"{server}/{name}")
        engine = make_engine(f"{server}/{name}")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            cluster = conn.execute(insert(clusters).values(name="c", api_url="http://x/")
                                   ).inserted_primary_key[0]
            campaign = conn.execute(insert(campaigns).values(
                grid_user="alice", state="in_treatment")).inserted_primary_key[0]
            conn.execute(insert(user_notifications), [
                {"grid_user": "alice", "type": "webhook", "identity": f"http://127.0.0.1:9/{i}",
                 "severity": "low"} for i in range(2)] + [
                {"grid_user": "%%admin%%", "type": "webhook", "identity": "http://127.0.0.1:9/a",
                 "severity": "low"}])
            rows = []
            for i in range(count):
                base = {"campaign_id": campaign, "cluster_id": cluster, "date_open": now,
                        "date_update": now, "checked": True, "message": None}
                rows.append({**base, "class_": "job", "code": "EXIT_ERROR", "state": "open",
                             "message": f"The job exited with exit status 768 ({i})"})
                rows.append({**base, "class_": "campaign", "code": "BLACKLIST", "state": "open"})
                rows.append({**base, "class_": "job", "code": "RESUBMIT", "state": "closed"})
            conn.execute(insert(events), rows)
        daemon = NotifierDaemon(engine=engine, settings=build_settings({}), clock=FakeClock(),
                                stop=threading.Event(),
                                channels={NotificationType.WEBHOOK: WebhookNotifier()})
        started = time.perf_counter()
        stored = daemon.compose_messages()
        first = time.perf_counter() - started
        started = time.perf_counter()
        daemon.compose_messages()
        idle = time.perf_counter() - started
        with engine.begin() as conn:
            messages = len(outbox.list_messages(conn))
        total_events = 3 * count
        print(f"{total_events} events composed in {first:.2f}s "
              f"({total_events / first:.0f} events/s) into {stored} messages; idle pass {idle:.3f}s")
        print(f"events={total_events} compose_seconds={first:.2f} messages={messages} "
              f"idle_pass_seconds={idle:.3f}")
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
