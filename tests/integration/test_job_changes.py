"""`cigri.storage.jobs.mark_job(s)` and `cigri.storage.events.record_events` take typed changes
(`JobChange`, `NewEvent`): storage maps them to columns; a JobChange field left as KEEP leaves its
column alone, None writes NULL, and a job moved meanwhile (not in `expected`) is left alone."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select

from cigri.domain.event_codes import EventCode
from cigri.domain.events import NewEvent
from cigri.domain.jobs import JobChange
from cigri.domain.states import EventClass, EventState, JobState
from cigri.storage import events as event_store
from cigri.storage import jobs as job_store
from cigri.storage.campaigns import create_campaign
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import events, jobs, parameters

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
EARLIER = datetime(2026, 3, 1, 11, tzinfo=UTC)
POLLED = (JobState.SUBMITTED, JobState.RUNNING)


def _jobs(conn: Connection, n: int) -> tuple[int, int, list[int]]:
    cluster_id = add_cluster(conn, name="c1", api_url="http://127.0.0.1:9/", now=NOW).id
    props = {"exec_file": "e", "resources": "/resource_id=1"}
    campaign_id = create_campaign(
        conn, grid_user="u", name="c", jobs_type="normal", jdl={"name": "c", "clusters": {"c1": props}},
        properties={cluster_id: props}, params=(f"p{i}" for i in range(n)), now=NOW)
    params = conn.execute(select(parameters.c.id).where(parameters.c.campaign_id == campaign_id)
                          .order_by(parameters.c.id)).scalars().all()
    ids = [int(conn.execute(insert(jobs).values(
        campaign_id=campaign_id, param_id=param, cluster_id=cluster_id, state="running",
        start_time=EARLIER, remote_id=100 + i).returning(jobs.c.id)).scalar_one())
        for i, param in enumerate(params)]
    return campaign_id, cluster_id, ids


def test_keep_leaves_a_column_and_none_clears_it(engine: Engine) -> None:
    with engine.begin() as conn:
        _campaign, _cluster, (kept, cleared, moved) = _jobs(conn, 3)
        conn.execute(jobs.update().where(jobs.c.id == moved).values(state="event"))
        assert job_store.mark_jobs(conn, [
            JobChange(job_id=kept, state=JobState.TERMINATED, stop_time=NOW, return_code=0),
            JobChange(job_id=cleared, state=JobState.TERMINATED, start_time=None, stop_time=NOW,
                      return_code=None),
            JobChange(job_id=moved, state=JobState.TERMINATED, stop_time=NOW, return_code=0),
        ], expected=POLLED, now=NOW) == 2
        assert job_store.mark_job(conn, JobChange(job_id=moved, state=JobState.REMOTE_WAITING,
                                                  remote_id=7), expected=POLLED, now=NOW) is False
        rows = {row.id: row for row in conn.execute(select(jobs))}
    assert rows[kept].state == "terminated" and rows[kept].start_time is not None
    assert rows[kept].return_code == 0 and rows[kept].remote_id == 100
    assert rows[cleared].start_time is None and rows[cleared].return_code is None
    assert rows[moved].state == "event" and rows[moved].remote_id == 102


def test_new_events_are_recorded_in_one_call(engine: Engine) -> None:
    with engine.begin() as conn:
        campaign_id, cluster_id, (job_id,) = _jobs(conn, 1)
        event_store.record_events(conn, [
            NewEvent(class_=EventClass.JOB, code=EventCode.USER_FRAG, job_id=job_id,
                     campaign_id=campaign_id, cluster_id=cluster_id, checked=True, message="m"),
            NewEvent(class_=EventClass.NOTIFY, code=EventCode.CIGRI_WALLTIME, job_id=job_id,
                     state=EventState.CLOSED),
        ], now=NOW)
        rows = conn.execute(select(events).order_by(events.c.id)).all()
    assert [(r.class_, r.code, r.state, r.checked, r.message) for r in rows] == [
        ("job", "USER_FRAG", "open", True, "m"), ("notify", "CIGRI_WALLTIME", "closed", False, None)]
    assert rows[0].date_closed is None and rows[1].date_closed is not None
