"""Tables behind /metrics: the daemons' counters, and the tasks in the bag per campaign

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 21:45:00.000000

`daemon_counters`: one row per series (metric name, canonical labels), which every daemon process
adds its deltas to at the end of a pass (one upsert statement), so a scrape reads the whole grid's
counters and histograms in one small table.

`bag_task_counts`: tasks in `bag_of_tasks` per campaign, kept on PostgreSQL by statement triggers
on `bag_of_tasks`, one row per (campaign, database session) as `campaign_cluster_event_counts`
does, so the meta-scheduler, the updater and an ingestion never wait for each other on a counter
row. The figure is the sum of a campaign's rows; a scrape never counts a million-task bag.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('daemon_counters',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('labels', sa.String(length=512), nullable=False),
    sa.Column('value', sa.Float(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('name', 'labels', name=op.f('pk_daemon_counters'))
    )
    op.create_table('bag_task_counts',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('backend_pid', sa.Integer(), nullable=False),
    sa.Column('tasks', sa.BigInteger(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_bag_task_counts_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'backend_pid', name=op.f('pk_bag_task_counts'))
    )
    if op.get_bind().dialect.name == 'postgresql':
        for statement in _TRIGGERS:
            op.execute(statement)
        # What the bag holds now, as the folded row (no session has pid 0).
        op.execute("INSERT INTO bag_task_counts (campaign_id, backend_pid, tasks) "
                   "SELECT campaign_id, 0, count(*) FROM bag_of_tasks GROUP BY campaign_id")


# Each session adds to its own row; a campaign being deleted (its bag goes by cascade) gets none.
_COUNT = """
    INSERT INTO bag_task_counts AS b (campaign_id, backend_pid, tasks)
    SELECT campaign_id, pg_backend_pid(), {sign} * count(*) FROM {rows}
    WHERE EXISTS (SELECT 1 FROM campaigns WHERE campaigns.id = {rows}.campaign_id)
    GROUP BY campaign_id ORDER BY campaign_id
    ON CONFLICT (campaign_id, backend_pid) DO UPDATE SET tasks = b.tasks + EXCLUDED.tasks;
"""

_TRIGGERS = [
    f"""
    CREATE FUNCTION cigri_count_bag() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {_COUNT.format(sign=1, rows="new_rows")}
        ELSE
            {_COUNT.format(sign=-1, rows="old_rows")}
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER bag_count_insert AFTER INSERT ON bag_of_tasks REFERENCING NEW TABLE AS "
    "new_rows FOR EACH STATEMENT EXECUTE FUNCTION cigri_count_bag()",
    "CREATE TRIGGER bag_count_delete AFTER DELETE ON bag_of_tasks REFERENCING OLD TABLE AS "
    "old_rows FOR EACH STATEMENT EXECUTE FUNCTION cigri_count_bag()",
]


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS bag_count_insert ON bag_of_tasks")
        op.execute("DROP TRIGGER IF EXISTS bag_count_delete ON bag_of_tasks")
        op.execute("DROP FUNCTION IF EXISTS cigri_count_bag()")
    op.drop_table('bag_task_counts')
    op.drop_table('daemon_counters')
