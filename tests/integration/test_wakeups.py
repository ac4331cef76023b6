"""Work that arrives through the API wakes the daemon that carries it out (PostgreSQL NOTIFY), so
an idle daemon waiting out its stretched pause (`DAEMON_IDLE_FACTOR`) still reacts at once: a
resumed campaign or tasks added to a finished one wake the meta-scheduler, a cancelled campaign
or job wakes nikita, which kills its jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
from sqlalchemy import Connection, Engine, insert, select, update

from cigri.storage.actions import cancel_campaign, cancel_job, pause_campaign, resume_campaign
from cigri.storage.campaigns import add_parameters, create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import campaigns, clusters, jobs

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@contextmanager
def _listening(engine: Engine, channel: str) -> Iterator[Callable[[], list[str]]]:
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'LISTEN "{channel}"')
        yield lambda: [n.channel for n in conn.notifies(timeout=0.5, stop_after=1)]


def _campaign(conn: Connection) -> int:
    cluster = add_cluster(conn, name="c1", api_url="http://127.0.0.1:9/oarapi/", now=NOW).id
    return create_campaign(conn, grid_user="alice", name="w", jobs_type="normal", jdl={},
                           properties={cluster: {"exec_file": "true"}}, params=["a", "b"],
                           now=NOW)


def test_resume_and_added_tasks_wake_the_metascheduler(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        campaign = _campaign(conn)
        pause_campaign(conn, campaign, now=NOW)
    with _listening(pg_engine, "cigri_metascheduler") as received:
        assert received() == []
        with pg_engine.begin() as conn:
            resume_campaign(conn, campaign, now=NOW)
        assert received() == ["cigri_metascheduler"]
        with pg_engine.begin() as conn:
            conn.execute(update(campaigns).where(campaigns.c.id == campaign)
                         .values(state="terminated"))
        assert received() == []
        with pg_engine.begin() as conn:
            add_parameters(conn, campaign, ["c"], NOW)
        assert received() == ["cigri_metascheduler"]


def test_a_cancelled_campaign_or_job_wakes_nikita(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        campaign = _campaign(conn)
        job = conn.execute(insert(jobs).values(
            campaign_id=campaign, state="running", remote_id=7, submission_time=NOW,
            cluster_id=select(clusters.c.id).scalar_subquery()).returning(jobs.c.id)).scalar_one()
    with _listening(pg_engine, "cigri_nikita") as received:
        with pg_engine.begin() as conn:
            cancel_job(conn, job, now=NOW)
        assert received() == ["cigri_nikita"]
        with pg_engine.begin() as conn:
            cancel_campaign(conn, campaign, now=NOW)
        assert received() == ["cigri_nikita"]
