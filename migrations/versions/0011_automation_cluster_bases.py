"""A rule's metric window keeps each cluster's failures at its start, for the cluster_error_share
trigger (issue 13)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 01:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('automation_rule_campaigns', sa.Column('base_clusters', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('automation_rule_campaigns', 'base_clusters')
