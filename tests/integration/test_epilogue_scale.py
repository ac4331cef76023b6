"""The epilogue check (`list_epilogue_sites`: did the campaign run on this cluster, where do its
epilogue jobs stand) says the same as before for every way a campaign can have run on a cluster,
on both databases, and on PostgreSQL it no longer reads the task jobs of a big campaign: the
terminated tasks come from the trigger-maintained sums, the rest from indexes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text

from cigri.storage.epilogues import list_epilogue_sites
from cigri.storage.tables import campaign_properties, campaigns, clusters, jobs, parameters

BIG_CAMPAIGN_JOBS = 20_000


def _cluster(conn: Connection, name: str) -> int:
    return int(conn.execute(insert(clusters).values(name=name, api_url=f"http://{name}/"))
               .inserted_primary_key[0])


def _campaign(conn: Connection, epilogue_on: list[int]) -> int:
    campaign_id = int(conn.execute(insert(campaigns).values(
        grid_user="alice", state="in_treatment", nb_jobs=1)).inserted_primary_key[0])
    for cluster_id in epilogue_on:
        conn.execute(insert(campaign_properties).values(
            campaign_id=campaign_id, cluster_id=cluster_id, name="epilogue", value="echo bye"))
    return campaign_id


def _task(conn: Connection, campaign_id: int, cluster_id: int, state: str) -> None:
    param = conn.execute(insert(parameters).values(
        campaign_id=campaign_id, name=f"p{cluster_id}{state}", param="x")).inserted_primary_key[0]
    conn.execute(insert(jobs).values(campaign_id=campaign_id, param_id=param,
                                     cluster_id=cluster_id, state=state))


def _tagged(conn: Connection, campaign_id: int, cluster_id: int, tag: str, state: str) -> None:
    conn.execute(insert(jobs).values(campaign_id=campaign_id, param_id=None,
                                     cluster_id=cluster_id, state=state, tag=tag))


def _facts(engine: Engine, campaign_id: int) -> dict[int, tuple[bool, ...]]:
    with engine.begin() as conn:
        return {site.cluster_id: (site.has_worked, site.has_terminated, site.is_in_flight,
                                  site.is_to_launch)
                for site in list_epilogue_sites(conn, [campaign_id])}


def test_has_worked_for_every_way_of_running_on_a_cluster(engine: Engine) -> None:
    with engine.begin() as conn:
        a, b, c, d, e, f = (_cluster(conn, name) for name in "abcdef")
        campaign = _campaign(conn, [a, b, c, d, e, f])
        other = _campaign(conn, [])
        _task(conn, campaign, a, "terminated")
        _tagged(conn, campaign, a, "epilogue", "to_launch")
        _task(conn, campaign, b, "event")  # went there, failed, resubmitted elsewhere
        _tagged(conn, campaign, b, "epilogue", "running")
        _tagged(conn, campaign, c, "prologue", "terminated")
        _tagged(conn, campaign, d, "prologue", "event")  # a prologue that never ran
        _tagged(conn, campaign, d, "epilogue", "terminated")
        _task(conn, other, e, "terminated")  # another campaign ran there
        _task(conn, campaign, f, "running")
    assert _facts(engine, campaign) == {
        a: (True, False, False, True),
        b: (True, False, True, False),
        c: (True, False, False, False),
        d: (False, True, False, False),
        e: (False, False, False, False),
        f: (True, False, False, False),
    }


def _rows_read_from_jobs(conn: Connection) -> int:
    return int(conn.execute(text(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
        "FROM pg_stat_xact_user_tables WHERE relname = 'jobs'")).scalar_one())


def test_check_reads_no_task_job_of_a_big_campaign(pg_engine: Engine) -> None:
    """Counted in rows, not milliseconds, so a busy machine cannot make it fail or pass: the old
    probe read every job of the campaign for a cluster where it never ran."""
    with pg_engine.begin() as conn:
        ran, never = _cluster(conn, "ran"), _cluster(conn, "never")
        campaign = _campaign(conn, [ran, never])
        other = _campaign(conn, [])
        for campaign_id, cluster_id in ((campaign, ran), (other, never)):
            conn.execute(text(
                "INSERT INTO parameters (campaign_id, name, param) "
                "SELECT :c, 'p' || i, 'x' FROM generate_series(1, :n) AS i"),
                {"c": campaign_id, "n": BIG_CAMPAIGN_JOBS})
            conn.execute(text(
                "INSERT INTO jobs (campaign_id, param_id, cluster_id, state) "
                "SELECT campaign_id, id, :k, 'terminated' FROM parameters WHERE campaign_id = :c"),
                {"c": campaign_id, "k": cluster_id})
        _tagged(conn, campaign, ran, "epilogue", "submitted")
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE jobs"))
    with pg_engine.begin() as conn:
        before = _rows_read_from_jobs(conn)
        sites = list_epilogue_sites(conn, [campaign])
        read = _rows_read_from_jobs(conn) - before
    assert [(site.cluster_id, site.has_worked, site.is_in_flight) for site in sites] == [
        (ran, True, True), (never, False, False)]
    assert read < 100, read


def test_prologue_and_epilogue_index_is_partial(engine: Engine) -> None:
    """Task job writes (the updater's) never touch it: it holds prologue and epilogue jobs only."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            definition: Any = conn.execute(text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_jobs_campaign_cluster_tag'"
            )).scalar_one()
        else:
            definition = conn.execute(select(text("sql")).select_from(text("sqlite_master")).where(
                text("name = 'ix_jobs_campaign_cluster_tag'"))).scalar_one()
    assert "param_id IS NULL" in str(definition)
