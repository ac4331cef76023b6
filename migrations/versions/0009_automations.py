"""Automation rules, their firings (an outbox), per rule and campaign state, the daemon's
watermarks, campaign schedules, and an index on events' closing date (issue 13)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 22:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index('ix_events_date_closed', 'events', ['date_closed'])
    op.create_table(
        'automation_rules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=False),
        sa.Column('admin', sa.Boolean(), server_default='0', nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('definition', sa.Text(), nullable=False),
        sa.Column('enabled', sa.Boolean(), server_default='1', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_automation_rules'),
    )
    op.create_index('ix_automation_rules_owner', 'automation_rules', ['owner'])
    op.create_table(
        'automation_firings',
        sa.Column('id', _BigId, nullable=False),
        sa.Column('rule_id', sa.Integer(), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=True),
        sa.Column('dedup_key', sa.String(length=255), nullable=False),
        sa.Column('trigger', sa.Text(), nullable=False),
        sa.Column('actions', sa.Text(), nullable=False),
        sa.Column('fired_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
        sa.Column('outcome', sa.Text(), nullable=True),
        sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('event_id', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['rule_id'], ['automation_rules.id'], ondelete='CASCADE',
                                name='fk_automation_firings_rule_id_automation_rules'),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE',
                                name='fk_automation_firings_campaign_id_campaigns'),
        sa.PrimaryKeyConstraint('id', name='pk_automation_firings'),
        sa.UniqueConstraint('dedup_key', name='uq_automation_firings_dedup_key'),
    )
    op.create_index('ix_automation_firings_rule_campaign', 'automation_firings',
                    ['rule_id', 'campaign_id', 'fired_at'])
    op.create_index('ix_automation_firings_state', 'automation_firings', ['state'])
    op.create_table(
        'automation_rule_campaigns',
        sa.Column('rule_id', sa.Integer(), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('last_fired_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=True),
        sa.Column('base_terminated', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('base_failures', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('base_resubmissions', sa.BigInteger(), server_default='0', nullable=False),
        sa.ForeignKeyConstraint(['rule_id'], ['automation_rules.id'], ondelete='CASCADE',
                                name='fk_automation_rule_campaigns_rule_id_automation_rules'),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE',
                                name='fk_automation_rule_campaigns_campaign_id_campaigns'),
        sa.PrimaryKeyConstraint('rule_id', 'campaign_id', name='pk_automation_rule_campaigns'),
    )
    op.create_table(
        'campaign_schedules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('definition', sa.Text(), nullable=False),
        sa.Column('enabled', sa.Boolean(), server_default='1', nullable=False),
        sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_campaign_id', sa.Integer(), nullable=True),
        sa.Column('runs', sa.Integer(), server_default='0', nullable=False),
        sa.Column('skipped', sa.Integer(), server_default='0', nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['last_campaign_id'], ['campaigns.id'], ondelete='SET NULL',
                                name='fk_campaign_schedules_last_campaign_id_campaigns'),
        sa.PrimaryKeyConstraint('id', name='pk_campaign_schedules'),
    )
    op.create_index('ix_campaign_schedules_owner', 'campaign_schedules', ['owner'])
    op.create_index('ix_campaign_schedules_next_run_at', 'campaign_schedules', ['next_run_at'])
    op.create_table(
        'automation_cursors',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('last_id', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('last_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('name', name='pk_automation_cursors'),
    )


def downgrade() -> None:
    op.drop_table('automation_cursors')
    op.drop_index('ix_campaign_schedules_next_run_at', table_name='campaign_schedules')
    op.drop_index('ix_campaign_schedules_owner', table_name='campaign_schedules')
    op.drop_table('campaign_schedules')
    op.drop_table('automation_rule_campaigns')
    op.drop_index('ix_automation_firings_state', table_name='automation_firings')
    op.drop_index('ix_automation_firings_rule_campaign', table_name='automation_firings')
    op.drop_table('automation_firings')
    op.drop_index('ix_automation_rules_owner', table_name='automation_rules')
    op.drop_table('automation_rules')
    op.drop_index('ix_events_date_closed', table_name='events')
