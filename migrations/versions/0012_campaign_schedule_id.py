"""A campaign remembers the schedule that submitted it (`campaigns.schedule_id`), so the dashboard's
schedules page lists a schedule's campaigns by an indexed column instead of by the text of their
NEW_CAMPAIGN event; existing campaigns are linked from that text once, here

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 02:10:00.000000
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_FROM_SCHEDULE = re.compile(r'; from schedule (\d+)$')


def upgrade() -> None:
    with op.batch_alter_table('campaigns') as batch:
        batch.add_column(sa.Column('schedule_id', sa.Integer(), nullable=True))
        batch.create_index('ix_campaigns_schedule_id', ['schedule_id'])
    conn = op.get_bind()
    schedules = {row.id for row in conn.execute(sa.text('SELECT id FROM campaign_schedules'))}
    announced = conn.execute(sa.text(
        "SELECT campaign_id, message FROM events WHERE code = 'NEW_CAMPAIGN' "
        "AND campaign_id IS NOT NULL AND message LIKE '%; from schedule %'"))
    for row in announced:
        found = _FROM_SCHEDULE.search(row.message or '')
        if found and int(found.group(1)) in schedules:
            conn.execute(sa.text('UPDATE campaigns SET schedule_id = :schedule WHERE id = :id'),
                         {'schedule': int(found.group(1)), 'id': row.campaign_id})


def downgrade() -> None:
    with op.batch_alter_table('campaigns') as batch:
        batch.drop_index('ix_campaigns_schedule_id')
        batch.drop_column('schedule_id')
