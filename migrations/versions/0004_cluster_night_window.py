"""A cluster's night window and time zone (nightly and semi-best-effort campaigns)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 21:40:00.000000

Both NULL by default: the cluster uses the grid-wide NIGHT_WINDOW and NIGHT_TIME_ZONE settings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clusters') as batch:
        batch.add_column(sa.Column('night_window', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('time_zone', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('clusters') as batch:
        batch.drop_column('time_zone')
        batch.drop_column('night_window')
