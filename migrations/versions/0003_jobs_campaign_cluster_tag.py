"""Index prologue and epilogue jobs by campaign, cluster, tag and state so the epilogue check skips task jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 18:50:00.000000

A partial index (`param_id IS NULL`): it holds only prologue and epilogue jobs, a few per campaign
and cluster, so the updater's and the runner's writes of task jobs never touch it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_campaign_cluster_tag', 'jobs',
                    ['campaign_id', 'cluster_id', 'tag', 'state'], unique=False,
                    postgresql_where=sa.text('param_id IS NULL'),
                    sqlite_where=sa.text('param_id IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_jobs_campaign_cluster_tag', table_name='jobs')
