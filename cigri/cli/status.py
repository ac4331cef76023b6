"""`cigri status`: which daemons are alive, from their heartbeats.

Shows, for each daemon name (`metascheduler`, `runner:<cluster>`, `updater`, `nikita`,
`almighty`, ...), its host, pid, passes, failed passes in a row, the age of its last beat and
whether it is late (no beat for more than 3 intervals). Exits 1 when a daemon is late or none
has ever reported (saying so, and naming the database, so a look at the wrong database is
plain), so monitoring can call it as is. A database without cigri's current schema is one line
saying to run `cigri db upgrade`. A daemon that stopped keeps its row (and so
shows as late) until `--forget NAME` drops it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import click

from cigri.app import build_engine, load
from cigri.cli.failures import check_database, redacted
from cigri.domain.heartbeats import Heartbeat
from cigri.storage.heartbeats import delete_heartbeat, list_heartbeats


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def status_rows(beats: Sequence[Heartbeat], now: datetime) -> list[dict[str, object]]:
    """One JSON-ready row per daemon."""
    return [{
        "name": beat.name, "host": beat.host, "pid": beat.pid, "passes": beat.passes,
        "failures": beat.failures, "interval_seconds": beat.interval_seconds,
        "started_at": beat.started_at.isoformat(), "beat_at": beat.beat_at.isoformat(),
        "age_seconds": round(beat.lateness(now).total_seconds(), 3),
        "late": beat.is_late(now),
    } for beat in beats]


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--forget", multiple=True, metavar="NAME",
              help="Drop the heartbeat of a retired daemon (e.g. runner:<removed cluster>).")
def status(as_json: bool, forget: tuple[str, ...]) -> None:
    """Show each daemon's last heartbeat; exit 1 if one is late (no beat for 3 intervals)."""
    settings = load()
    check_database(settings.database_url)  # unreachable, or no/old schema: one line, exit 1
    engine = build_engine(settings)
    try:
        with engine.begin() as conn:
            for name in forget:
                delete_heartbeat(conn, name)
            beats = list_heartbeats(conn)
    finally:
        engine.dispose()
    rows = status_rows(beats, datetime.now(UTC))
    late = [row["name"] for row in rows if row["late"]]
    if as_json:
        click.echo(json.dumps({"database": redacted(settings.database_url), "daemons": rows,
                               "late": late}, indent=2))
    elif not rows:
        click.echo(f"nothing has run yet on {redacted(settings.database_url)}: no daemon has "
                   "ever reported a heartbeat there (start cigri-almighty, or the daemons, with "
                   "this configuration)")
    else:
        click.echo(f"{'DAEMON':<24} {'HOST':<20} {'PID':>7} {'PASSES':>8} {'FAILS':>5} "
                   f"{'LAST BEAT':>10}  STATE")
        for row in rows:
            state = "LATE" if row["late"] else "ok"
            click.echo(f"{row['name']!s:<24} {row['host']!s:<20} {row['pid']!s:>7} "
                       f"{row['passes']!s:>8} {row['failures']!s:>5} "
                       f"{_age(float(str(row['age_seconds']))) + ' ago':>10}  {state}")
    if late or not rows:
        sys.exit(1)
