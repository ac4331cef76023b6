"""Maintain per campaign and cluster statistics sums so /stats reads a few rows, not every job

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 17:35:00.000000

PostgreSQL keeps `campaign_cluster_job_stats` (terminated tasks, count, sum and sum of squares of
their durations), `campaign_cluster_throughput` (terminated tasks per minute of stop time) and
`campaign_cluster_event_counts` (failure and resubmission events) with statement-level AFTER
triggers over the transition tables, like `campaign_job_counts` in the baseline, and fills them
from the existing rows. SQLite gets the tables (one schema for both) but leaves them empty: it
computes the figures from `jobs` and `events`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaign_cluster_job_stats',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('terminated', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('timed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('total_seconds', sa.Float(), server_default='0', nullable=False),
    sa.Column('squares', sa.Float(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_cluster_job_stats_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'cluster_id', name=op.f('pk_campaign_cluster_job_stats'))
    )
    op.create_table('campaign_cluster_throughput',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('minute', sa.DateTime(timezone=True), nullable=False),
    sa.Column('terminated', sa.BigInteger(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_cluster_throughput_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'cluster_id', 'minute', name=op.f('pk_campaign_cluster_throughput'))
    )
    op.create_table('campaign_cluster_event_counts',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('backend_pid', sa.Integer(), nullable=False),
    sa.Column('failures', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('resubmissions', sa.BigInteger(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_cluster_event_counts_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'cluster_id', 'backend_pid', name=op.f('pk_campaign_cluster_event_counts'))
    )
    if op.get_bind().dialect.name == 'postgresql':
        # No job or event may change between the backfill and the triggers taking over.
        op.execute("LOCK TABLE jobs, events IN SHARE MODE")
        for statement in _TRIGGERS:
            op.execute(statement)
        for statement in _BACKFILL:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for trigger, table in (('jobs_stats_insert', 'jobs'), ('jobs_stats_update', 'jobs'),
                               ('jobs_stats_delete', 'jobs'), ('events_stats_insert', 'events'),
                               ('events_stats_update', 'events'),
                               ('events_stats_delete', 'events')):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS cigri_sum_job_stats()")
        op.execute("DROP FUNCTION IF EXISTS cigri_count_events()")
        op.execute("DROP FUNCTION IF EXISTS cigri_count_events_row()")
    op.drop_table('campaign_cluster_event_counts')
    op.drop_table('campaign_cluster_throughput')
    op.drop_table('campaign_cluster_job_stats')


# What a terminated task (prologue/epilogue jobs have a NULL param_id and do not count, as in
# `campaign_job_counts`) adds to its (campaign, cluster) sums; `sign` is 1 for a new row, -1 for
# an old one, so an UPDATE adds the new rows and takes the old ones away. Other jobs add nothing,
# so most updates (claims, submissions, running) are filtered out before any grouping.
_JOB_TERMS = """
    SELECT {sign} AS sign, campaign_id, coalesce(cluster_id, 0) AS cluster_id,
           (start_time IS NOT NULL AND stop_time IS NOT NULL) AS timed,
           date_part('epoch', stop_time - start_time) AS seconds,
           to_timestamp(floor(date_part('epoch', stop_time) / 60) * 60) AS minute
    FROM {rows} WHERE state = 'terminated' AND param_id IS NOT NULL
"""

_JOB_SUMS = """
    SELECT campaign_id, cluster_id, sum(sign) AS terminated,
           sum(CASE WHEN timed THEN sign ELSE 0 END) AS timed,
           sum(CASE WHEN timed THEN sign * seconds ELSE 0 END) AS total_seconds,
           sum(CASE WHEN timed THEN sign * seconds * seconds ELSE 0 END) AS squares
    FROM terms GROUP BY campaign_id, cluster_id
    HAVING sum(sign) <> 0 OR sum(CASE WHEN timed THEN sign ELSE 0 END) <> 0
        OR sum(CASE WHEN timed THEN sign * seconds ELSE 0 END) <> 0
        OR sum(CASE WHEN timed THEN sign * seconds * seconds ELSE 0 END) <> 0
"""

_MINUTE_SUMS = """
    SELECT campaign_id, cluster_id, minute, sum(sign) AS terminated
    FROM terms WHERE minute IS NOT NULL
    GROUP BY campaign_id, cluster_id, minute HAVING sum(sign) <> 0
"""

# Rows are upserted in key order so two statements lock the sums rows they share in one order.
_UPSERT_JOBS = """
    INSERT INTO campaign_cluster_job_stats AS s
        (campaign_id, cluster_id, terminated, timed, total_seconds, squares)
    SELECT * FROM ({sums}) AS d ORDER BY campaign_id, cluster_id
    ON CONFLICT (campaign_id, cluster_id) DO UPDATE SET
        terminated = s.terminated + EXCLUDED.terminated, timed = s.timed + EXCLUDED.timed,
        total_seconds = s.total_seconds + EXCLUDED.total_seconds,
        squares = s.squares + EXCLUDED.squares
"""

_UPSERT_MINUTES = """
    INSERT INTO campaign_cluster_throughput AS t (campaign_id, cluster_id, minute, terminated)
    SELECT * FROM ({sums}) AS d ORDER BY campaign_id, cluster_id, minute
    ON CONFLICT (campaign_id, cluster_id, minute)
    DO UPDATE SET terminated = t.terminated + EXCLUDED.terminated
"""

# Deleted rows only update: their campaign may be going away in a cascade, and inserting a sums
# row for it would break the foreign key.
_SUBTRACT_JOBS = """
    UPDATE campaign_cluster_job_stats AS s SET
        terminated = s.terminated + d.terminated, timed = s.timed + d.timed,
        total_seconds = s.total_seconds + d.total_seconds, squares = s.squares + d.squares
    FROM ({sums}) AS d WHERE s.campaign_id = d.campaign_id AND s.cluster_id = d.cluster_id
"""

_SUBTRACT_MINUTES = """
    UPDATE campaign_cluster_throughput AS t SET terminated = t.terminated + d.terminated
    FROM ({sums}) AS d
    WHERE t.campaign_id = d.campaign_id AND t.cluster_id = d.cluster_id AND t.minute = d.minute
"""


def _both_sums(terms: str, jobs_statement: str, minutes_statement: str) -> str:
    # One statement: the transition rows are read once, and both tables updated from them.
    return (f"WITH terms AS MATERIALIZED ({terms}), "
            f"job_sums AS ({jobs_statement.format(sums=_JOB_SUMS)} RETURNING 1) "
            f"{minutes_statement.format(sums=_MINUTE_SUMS)};")


_NEW_TERMS = _JOB_TERMS.format(sign=1, rows="new_rows")
_OLD_TERMS = _JOB_TERMS.format(sign=-1, rows="old_rows")

_JOB_FUNCTION = f"""
    CREATE FUNCTION cigri_sum_job_stats() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {_both_sums(_NEW_TERMS, _UPSERT_JOBS, _UPSERT_MINUTES)}
        ELSIF TG_OP = 'DELETE' THEN
            {_both_sums(_OLD_TERMS, _SUBTRACT_JOBS, _SUBTRACT_MINUTES)}
        ELSE
            {_both_sums(f"{_NEW_TERMS} UNION ALL {_OLD_TERMS}", _UPSERT_JOBS, _UPSERT_MINUTES)}
        END IF;
        RETURN NULL;
    END $$
"""

# Failures as `cigri.storage.stats` counts them: job events other than the bookkeeping records.
_EVENT_TERMS = """
    SELECT {sign} AS sign, campaign_id, coalesce(cluster_id, 0) AS cluster_id,
           code NOT IN ('REMOTE_WAITING_FRAG', 'RESUBMIT', 'RESUBMIT_END', 'OAR_AUTO_RESUBMIT')
               AS failure,
           code = 'RESUBMIT' AS resubmission
    FROM {rows} WHERE "class" = 'job' AND campaign_id IS NOT NULL
"""

# Each session adds to its own row (`backend_pid`): one session runs one transaction at a time, so
# no transaction waits for another's. Removed events are taken away the same way (a session's
# row may go negative; the sum is right), except for a campaign being deleted, whose rows go by
# cascade and which must not get a new one.
_COUNT_EVENTS = """
    WITH terms AS ({terms})
    INSERT INTO campaign_cluster_event_counts AS e
        (campaign_id, cluster_id, backend_pid, failures, resubmissions)
    SELECT campaign_id, cluster_id, pg_backend_pid(),
           sum(CASE WHEN failure THEN sign ELSE 0 END),
           sum(CASE WHEN resubmission THEN sign ELSE 0 END)
    FROM terms WHERE EXISTS (SELECT 1 FROM campaigns WHERE campaigns.id = terms.campaign_id)
    GROUP BY campaign_id, cluster_id
    HAVING sum(CASE WHEN failure THEN sign ELSE 0 END) <> 0
        OR sum(CASE WHEN resubmission THEN sign ELSE 0 END) <> 0
    ON CONFLICT (campaign_id, cluster_id, backend_pid) DO UPDATE SET
        failures = e.failures + EXCLUDED.failures,
        resubmissions = e.resubmissions + EXCLUDED.resubmissions;
"""

_EVENT_FUNCTION = f"""
    CREATE FUNCTION cigri_count_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {_COUNT_EVENTS.format(terms=_EVENT_TERMS.format(sign=1, rows="new_rows"))}
        ELSE
            {_COUNT_EVENTS.format(terms=_EVENT_TERMS.format(sign=-1, rows="old_rows"))}
        END IF;
        RETURN NULL;
    END $$
"""

# cigri never changes an event's class, code, campaign or cluster; should an UPDATE set one of
# them, this row trigger moves the event's counts. A column list keeps it off the frequent
# updates (state, checked, notified), which a transition-table trigger could not skip.
_EVENT_ROW_FUNCTION = f"""
    CREATE FUNCTION cigri_count_events_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_COUNT_EVENTS.format(terms=_EVENT_TERMS.format(sign=-1, rows="(SELECT OLD.*) AS o"))}
        {_COUNT_EVENTS.format(terms=_EVENT_TERMS.format(sign=1, rows="(SELECT NEW.*) AS n"))}
        RETURN NULL;
    END $$
"""

_TRIGGERS = [
    _JOB_FUNCTION,
    "CREATE TRIGGER jobs_stats_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION cigri_sum_job_stats()",
    "CREATE TRIGGER jobs_stats_update AFTER UPDATE ON jobs "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION cigri_sum_job_stats()",
    "CREATE TRIGGER jobs_stats_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION cigri_sum_job_stats()",
    _EVENT_FUNCTION,
    _EVENT_ROW_FUNCTION,
    "CREATE TRIGGER events_stats_insert AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION cigri_count_events()",
    "CREATE TRIGGER events_stats_delete AFTER DELETE ON events REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION cigri_count_events()",
    'CREATE TRIGGER events_stats_update AFTER UPDATE OF "class", code, campaign_id, cluster_id '
    "ON events FOR EACH ROW EXECUTE FUNCTION cigri_count_events_row()",
]

_BACKFILL = [
    _both_sums(_JOB_TERMS.format(sign=1, rows="jobs"), _UPSERT_JOBS, _UPSERT_MINUTES),
    _COUNT_EVENTS.format(terms=_EVENT_TERMS.format(sign=1, rows="events")),
]
