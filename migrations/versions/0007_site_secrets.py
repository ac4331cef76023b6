"""Secrets the grid generates for itself (the dashboard's session-signing key)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 22:20:00.000000

`site_secrets`: one row per named secret. The dashboard signs its session cookies with
`UI_SECRET_KEY` when set, else with the `ui_session_key` row, created at first use (insert if
absent, then read back), so every API process behind one database signs with the same key and
sessions survive restarts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('site_secrets',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('site_secrets')
