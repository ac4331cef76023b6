"""Output purges: `DELETE /campaigns/<id>/outputs` as a recorded request the collector carries out

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 22:40:00.000000

One row per request: who asked, its state (pending, running, done, failed), how far the collector
got (`last_cluster_id`, `last_remote_id`: the OAR jobs are done in bounded batches) and the counts it reports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('output_purges',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('requested_by', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_cluster_id', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_remote_id', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('removed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('missing', sa.Integer(), server_default='0', nullable=False),
    sa.Column('errors', sa.Text(), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_output_purges_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_output_purges'))
    )
    with op.batch_alter_table('output_purges', schema=None) as batch_op:
        batch_op.create_index('ix_output_purges_state', ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('output_purges', schema=None) as batch_op:
        batch_op.drop_index('ix_output_purges_state')
    op.drop_table('output_purges')
