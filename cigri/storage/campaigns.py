"""Campaign ingestion: the campaign row, its properties, its parameters and its bag of tasks.

Owns the writes of a submission (v3 `cigri_submit`) and of adding tasks to a campaign (v3
`gridsub -c`), and reading one campaign back. Parameters stream in: any iterable of lines, never
held whole in memory. PostgreSQL receives them with `COPY` into a temporary staging table, SQLite
with a batched `executemany`; both then move them with one INSERT ... SELECT, so a duplicate task
name is caught by the unique index and reported with its line numbers (`DuplicateTaskNames`),
never as a raw IntegrityError. Functions take a Connection and never commit.

Does not own state changes of running campaigns (cancel, pause) nor the read models of the API.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from itertools import islice
from typing import Any, Final

from sqlalchemy import Connection, Row, exists, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from cigri.domain.campaigns import Campaign
from cigri.domain.errors import CampaignNotFound, Conflict, DuplicateTaskNames, JDLError
from cigri.domain.jdl import CampaignSpec, ParamRecord, duplicate_message, parse_param_lines
from cigri.domain.states import CampaignState
from cigri.storage.heartbeats import notify_daemons
from cigri.storage.tables import bag_of_tasks, campaign_properties, campaigns, clusters, parameters

log = logging.getLogger(__name__)

NEW_TASK_PRIORITY: Final = 10
SQLITE_BATCH_ROWS: Final = 10_000
MAX_REPORTED_DUPLICATES: Final = 20
_STAGING: Final = "cigri_param_staging"


def create_campaign(
    conn: Connection,
    *,
    grid_user: str,
    name: str,
    jobs_type: str,
    jdl: Mapping[str, Any],
    properties: Mapping[int | None, Mapping[str, str]],
    params: Iterable[str],
    now: datetime,
) -> int:
    """Create a campaign (`in_treatment`) with its properties (by cluster id, `None` for the
    campaign-wide ones), its parameters and one bag-of-tasks entry per parameter; return its id.

    `params` are parameter lines, streamed (each stripped, as v3 does). Raises
    `DuplicateTaskNames` when two lines share a task name. The caller owns the transaction: on any
    error it rolls back and nothing of the campaign remains.
    """
    campaign_id = int(conn.execute(
        insert(campaigns).values(
            grid_user=grid_user, state=CampaignState.IN_TREATMENT.value, type=jobs_type, name=name,
            submission_time=now, nb_jobs=0, jdl=json.dumps(jdl),
        ).returning(campaigns.c.id)
    ).scalar_one())
    rows = [{"campaign_id": campaign_id, "cluster_id": cluster_id, "name": key, "value": value}
            for cluster_id, values in properties.items() for key, value in values.items()]
    if rows:
        conn.execute(insert(campaign_properties), rows)
    count = _ingest(conn, campaign_id, params)
    notify_daemons(conn, "metascheduler")  # schedule it now, not at the next interval
    log.info("campaign %d created for %s with %d tasks", campaign_id, grid_user, count,
             extra={"campaign_id": campaign_id, "action": "create_campaign"})
    return campaign_id


def create_campaign_from_spec(
    conn: Connection, *, grid_user: str, spec: CampaignSpec, params: Iterable[str], now: datetime,
) -> int:
    """`create_campaign` for a parsed JDL: cluster names become ids (an unknown one is a
    `JDLError`). `params` is usually `spec.parameter_lines(...)`."""
    ids = cluster_ids_by_name(conn, spec.cluster_names)
    unknown = [name for name in spec.cluster_names if name not in ids]
    if unknown:
        raise JDLError([f"clusters.{name}: unknown cluster '{name}'" for name in unknown])
    properties: dict[int | None, Mapping[str, str]] = {
        (None if cluster is None else ids[cluster]): row
        for cluster, row in spec.campaign_properties().items()}
    return create_campaign(conn, grid_user=grid_user, name=spec.name, jobs_type=spec.jobs_type,
                           jdl=spec.jdl, properties=properties, params=params, now=now)


def add_parameters(conn: Connection, campaign_id: int, params: Iterable[str], now: datetime) -> int:
    """Add tasks to an existing campaign (v3 `gridsub -c`); return how many were added.

    A `terminated` campaign goes back to `in_treatment`; a `cancelled` one is refused
    (`Conflict`). Names must be unique against the campaign's existing tasks too.
    """
    # Lock the campaign row first: concurrent additions to one campaign are serialised, and the
    # state we check is the state we change.
    row = conn.execute(
        select(campaigns.c.state).where(campaigns.c.id == campaign_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise CampaignNotFound(f"Campaign {campaign_id} not found")
    state = CampaignState(row.state)
    if state is CampaignState.CANCELLED:
        raise Conflict(f"Unable to add jobs to campaign {campaign_id} because it was cancelled")
    count = _ingest(conn, campaign_id, params)
    if state is CampaignState.TERMINATED:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(
            state=CampaignState.IN_TREATMENT.value, completion_time=None))
    notify_daemons(conn, "metascheduler")  # the new tasks are scheduled now
    log.info("added %d tasks to campaign %d at %s", count, campaign_id, now.isoformat(),
             extra={"campaign_id": campaign_id, "action": "add_parameters"})
    return count


def tasks_in_bag(conn: Connection, grid_user: str) -> int:
    """How many tasks of `grid_user` wait in the bag of tasks, all campaigns together (what
    `MAX_TASKS_PER_USER` bounds)."""
    return int(conn.execute(
        select(func.count()).select_from(bag_of_tasks)
        .join(campaigns, campaigns.c.id == bag_of_tasks.c.campaign_id)
        .where(campaigns.c.grid_user == grid_user)).scalar_one())


def get_campaign(conn: Connection, campaign_id: int) -> Campaign:
    """The campaign `campaign_id`, or `CampaignNotFound`."""
    campaign = find_campaign(conn, campaign_id)
    if campaign is None:
        raise CampaignNotFound(f"Campaign {campaign_id} not found")
    return campaign


def find_campaign(conn: Connection, campaign_id: int) -> Campaign | None:
    row = conn.execute(select(campaigns).where(campaigns.c.id == campaign_id)).one_or_none()
    return None if row is None else campaign_from_row(row)


def campaign_from_row(row: Row[Any]) -> Campaign:
    return Campaign(
        id=row.id, grid_user=row.grid_user, state=CampaignState(row.state), jobs_type=row.type,
        name=row.name, submission_time=row.submission_time, completion_time=row.completion_time,
        nb_jobs=int(row.nb_jobs), jdl=row.jdl,
    )


def list_stranded_campaigns(conn: Connection) -> dict[int, int]:
    """`in_treatment` campaigns with tasks left in their bag but no enabled cluster among theirs
    (every one disabled, or removed with its properties): campaign id → remaining tasks."""
    usable = exists().where(campaign_properties.c.campaign_id == campaigns.c.id,
                            campaign_properties.c.cluster_id == clusters.c.id,
                            clusters.c.enabled.is_(True))
    stranded = conn.execute(select(campaigns.c.id).where(
        campaigns.c.state == CampaignState.IN_TREATMENT.value,
        exists().where(bag_of_tasks.c.campaign_id == campaigns.c.id), ~usable)).scalars().all()
    if not stranded:
        return {}
    rows = conn.execute(select(bag_of_tasks.c.campaign_id, func.count())
                        .where(bag_of_tasks.c.campaign_id.in_(list(stranded)))
                        .group_by(bag_of_tasks.c.campaign_id))
    return {int(campaign_id): int(count) for campaign_id, count in rows}


def cluster_ids_by_name(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """Ids of the named clusters that exist (enabled or not, as in v3)."""
    wanted = list(names)
    rows = conn.execute(select(clusters.c.name, clusters.c.id).where(clusters.c.name.in_(wanted)))
    return {row.name: int(row.id) for row in rows}


def list_cluster_names(conn: Connection) -> list[str]:
    return list(conn.execute(select(clusters.c.name).order_by(clusters.c.name)).scalars())


def _ingest(conn: Connection, campaign_id: int, params: Iterable[str]) -> int:
    """Stage the lines, then move them into parameters and bag_of_tasks; keep nb_jobs right."""
    records = parse_param_lines(params)
    if conn.dialect.name == "postgresql":
        _stage_postgresql(conn, records)
    else:
        _stage_sqlite(conn, records)
    try:
        # A savepoint, so a unique violation leaves the staging rows readable for the report.
        with conn.begin_nested():
            count = _move_staged(conn, campaign_id)
    except IntegrityError as error:
        duplicates = _duplicate_errors(conn, campaign_id)
        if duplicates:
            raise DuplicateTaskNames(duplicates) from error
        raise
    finally:
        if conn.dialect.name != "postgresql":
            conn.exec_driver_sql(f"DELETE FROM {_STAGING}")
    if count:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign_id)
                     .values(nb_jobs=campaigns.c.nb_jobs + count))
    return count


def _stage_postgresql(conn: Connection, records: Iterator[ParamRecord]) -> None:
    # A temporary table costs no WAL and has no index to maintain; ON COMMIT DROP cleans it up,
    # and a second ingestion in the same transaction finds it and empties it.
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} "
                         "(line_no BIGINT NOT NULL, name TEXT NOT NULL, param TEXT NOT NULL) "
                         "ON COMMIT DROP")
    conn.exec_driver_sql(f"TRUNCATE {_STAGING}")
    driver_connection: Any = conn.connection.driver_connection
    with driver_connection.cursor() as cursor, cursor.copy(
            f"COPY {_STAGING} (line_no, name, param) FROM STDIN") as copy:
        for record in records:
            copy.write_row((record.line_no, record.name, record.param))


def _stage_sqlite(conn: Connection, records: Iterator[ParamRecord]) -> None:
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} "
                         "(line_no INTEGER NOT NULL, name TEXT NOT NULL, param TEXT NOT NULL)")
    conn.exec_driver_sql(f"DELETE FROM {_STAGING}")
    rows = ((record.line_no, record.name, record.param) for record in records)
    while batch := list(islice(rows, SQLITE_BATCH_ROWS)):
        conn.exec_driver_sql(f"INSERT INTO {_STAGING} (line_no, name, param) VALUES (?, ?, ?)",
                             batch)


def _move_staged(conn: Connection, campaign_id: int) -> int:
    """Insert the staged lines as parameters (ids in line order) and as new tasks."""
    bind = {"campaign_id": campaign_id, "priority": NEW_TASK_PRIORITY}
    if conn.dialect.name == "postgresql":
        # One statement: the CTE hands the new parameter ids straight to bag_of_tasks, without
        # reading parameters back.
        result = conn.execute(text(
            "WITH inserted AS ("
            " INSERT INTO parameters (campaign_id, name, param)"
            f" SELECT :campaign_id, name, param FROM {_STAGING} ORDER BY line_no"
            " RETURNING id)"
            " INSERT INTO bag_of_tasks (campaign_id, param_id, priority)"
            " SELECT :campaign_id, id, :priority FROM inserted"), bind)
        return int(result.rowcount)
    # SQLite holds the database write lock for the whole transaction, so the ids above the
    # campaign's previous maximum are exactly the ones inserted here.
    before = conn.execute(select(func.coalesce(func.max(parameters.c.id), 0))
                          .where(parameters.c.campaign_id == campaign_id)).scalar_one()
    conn.execute(text(
        "INSERT INTO parameters (campaign_id, name, param)"
        f" SELECT :campaign_id, name, param FROM {_STAGING} ORDER BY line_no"), bind)
    result = conn.execute(
        insert(bag_of_tasks).from_select(
            ["campaign_id", "param_id", "priority"],
            select(parameters.c.campaign_id, parameters.c.id, text(str(NEW_TASK_PRIORITY)))
            .where(parameters.c.campaign_id == campaign_id, parameters.c.id > before)
            .order_by(parameters.c.id)))
    return int(result.rowcount)


def _duplicate_errors(conn: Connection, campaign_id: int) -> list[str]:
    """Name every duplicate among the staged lines, and every staged name already in the campaign.

    Runs only after the unique index refused the insert, so the common case pays nothing for it.
    """
    rows = conn.execute(text(
        f"SELECT s.name, s.line_no, EXISTS (SELECT 1 FROM parameters p"
        "   WHERE p.campaign_id = :campaign_id AND p.name = s.name) AS existing"
        f" FROM {_STAGING} s"
        f" WHERE s.name IN (SELECT name FROM {_STAGING} GROUP BY name HAVING count(*) > 1)"
        "   OR EXISTS (SELECT 1 FROM parameters p"
        "     WHERE p.campaign_id = :campaign_id AND p.name = s.name)"
        " ORDER BY s.name, s.line_no"), {"campaign_id": campaign_id})
    lines: dict[tuple[str, bool], list[int]] = {}
    for row in rows:
        lines.setdefault((row.name, bool(row.existing)), []).append(int(row.line_no))
    errors = [duplicate_message(name, numbers, existing=existing)
              for (name, existing), numbers in list(lines.items())[:MAX_REPORTED_DUPLICATES]]
    if len(lines) > MAX_REPORTED_DUPLICATES:
        errors.append(f"... and {len(lines) - MAX_REPORTED_DUPLICATES} more duplicate task names")
    return errors
