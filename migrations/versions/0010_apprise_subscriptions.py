"""Slack, Discord, Mattermost and Teams webhook subscriptions become Apprise subscriptions with the
equivalent Apprise URL, and so do their pending outbox messages (issue 13)

Mapping (a URL that does not match keeps its `webhook` row and format, and now receives cigri's
generic JSON payload: a self-hosted Slack-compatible receiver, a retired Office 365 connector):
- slack      https://hooks.slack.com/services/A/B/C                  -> slack://A/B/C
- discord    https://discord.com/api/webhooks/ID/TOKEN               -> discord://ID/TOKEN
             (also discordapp.com, ptb./canary., /api/vN/)
- mattermost http(s)://host[:port][/path]/hooks/KEY                  -> mmost(s)://host[:port][/path]/KEY
- teams      https://HOST.logic.azure.X[:port]/workflows/ID/triggers/manual/paths/invoke?QUERY
                                                                     -> workflows://HOST[:port]/ID/?QUERY

Downgrade maps these forms back (and json(s)://host/path to a json webhook); any other Apprise
subscription is deleted, and its pending messages failed, since the older code has no such channel.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 01:40:00.000000
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_subscriptions = sa.table(
    'user_notifications', sa.column('id', sa.Integer), sa.column('grid_user', sa.String),
    sa.column('type', sa.String), sa.column('identity', sa.String), sa.column('format', sa.String))
_messages = sa.table(
    'notification_messages', sa.column('id', sa.Integer), sa.column('type', sa.String),
    sa.column('identity', sa.String), sa.column('format', sa.String),
    sa.column('state', sa.String), sa.column('last_error', sa.Text))

_SLACK = re.compile(r'^https://hooks\.slack\.com/services/([A-Za-z0-9]+)/([A-Za-z0-9]+)/([A-Za-z0-9]+)/?$')
_DISCORD = re.compile(r'^https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/(?:v\d+/)?webhooks/'
                      r'(\d+)/([A-Za-z0-9_-]+)/?$')
_MATTERMOST = re.compile(r'^http(s?)://([^/?#@]+)((?:/[^?#]*)?)/hooks/([A-Za-z0-9]+)/?$')
_WORKFLOWS = re.compile(r'^https://([A-Za-z0-9_.-]+\.logic\.azure\.[A-Za-z]{2,12})(:\d+)?/workflows/'
                        r'([A-Za-z0-9_-]+)/triggers/manual/paths/invoke/?(\?[^#]+)$')

_APPRISE_SLACK = re.compile(r'^slack://([A-Za-z0-9]+)/([A-Za-z0-9]+)/([A-Za-z0-9]+)/?$')
_APPRISE_DISCORD = re.compile(r'^discord://(\d+)/([A-Za-z0-9_-]+)/?$')
_APPRISE_MATTERMOST = re.compile(r'^mmost(s?)://([^/?#@]+)((?:/[^?#]*)?)/([A-Za-z0-9]+)/?$')
_APPRISE_WORKFLOWS = re.compile(r'^workflows://([A-Za-z0-9_.-]+)(:\d+)?/([A-Za-z0-9_-]+)/?(\?[^#]+)$')
_APPRISE_JSON = re.compile(r'^json(s?)://([^/?#@]+)(/[^?#]*)?$')


def apprise_url(format_: str | None, url: str) -> str | None:
    """The Apprise URL of a webhook of this format, or None when it has no clean one."""
    kind = (format_ or '').lower()
    if kind == 'slack' and (found := _SLACK.match(url)):
        return 'slack://{}/{}/{}'.format(*found.groups())
    if kind == 'discord' and (found := _DISCORD.match(url)):
        return 'discord://{}/{}'.format(*found.groups())
    if kind == 'mattermost' and (found := _MATTERMOST.match(url)):
        secure, host, path, key = found.groups()
        return f'mmost{secure}://{host}{path.rstrip("/")}/{key}'
    if kind == 'teams' and (found := _WORKFLOWS.match(url)):
        host, port, workflow, query = found.groups()
        return f'workflows://{host}{port or ""}/{workflow}/{query}'
    return None


def webhook_of(url: str) -> tuple[str, str] | None:
    """(webhook URL, format) of an Apprise URL this migration can write back, or None."""
    if found := _APPRISE_SLACK.match(url):
        return 'https://hooks.slack.com/services/{}/{}/{}'.format(*found.groups()), 'slack'
    if found := _APPRISE_DISCORD.match(url):
        return 'https://discord.com/api/webhooks/{}/{}'.format(*found.groups()), 'discord'
    if found := _APPRISE_MATTERMOST.match(url):
        secure, host, path, key = found.groups()
        return f'http{secure}://{host}{path.rstrip("/")}/hooks/{key}', 'mattermost'
    if found := _APPRISE_WORKFLOWS.match(url):
        host, port, workflow, query = found.groups()
        return (f'https://{host}{port or ""}/workflows/{workflow}/triggers/manual/paths/invoke'
                f'{query}', 'teams')
    if found := _APPRISE_JSON.match(url):
        secure, host, path = found.groups()
        return f'http{secure}://{host}{path or ""}', 'json'
    return None


def _move_subscription(conn: sa.Connection, row: sa.Row, type_: str, identity: str,
                       format_: str | None) -> None:
    """Rewrite one subscription; drop it when its user already has the rewritten one (two URL
    spellings of one Discord webhook), which the unique (user, identity, type) forbids twice."""
    taken = conn.execute(sa.select(_subscriptions.c.id).where(
        _subscriptions.c.grid_user == row.grid_user, _subscriptions.c.identity == identity,
        _subscriptions.c.type == type_)).first()
    if taken is not None:
        conn.execute(sa.delete(_subscriptions).where(_subscriptions.c.id == row.id))
        return
    conn.execute(sa.update(_subscriptions).where(_subscriptions.c.id == row.id)
                 .values(type=type_, identity=identity, format=format_))


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_subscriptions).where(_subscriptions.c.type == 'webhook')
                        .order_by(_subscriptions.c.id)).all()
    for row in rows:
        url = apprise_url(row.format, row.identity)
        if url is not None:
            _move_subscription(conn, row, 'apprise', url, None)
    pending = conn.execute(sa.select(_messages).where(
        _messages.c.type == 'webhook', _messages.c.state == 'pending')).all()
    for message in pending:
        url = apprise_url(message.format, message.identity)
        if url is not None:
            conn.execute(sa.update(_messages).where(_messages.c.id == message.id)
                         .values(type='apprise', identity=url, format=None))


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_subscriptions).where(_subscriptions.c.type == 'apprise')
                        .order_by(_subscriptions.c.id)).all()
    for row in rows:
        back = webhook_of(row.identity)
        if back is None:
            conn.execute(sa.delete(_subscriptions).where(_subscriptions.c.id == row.id))
        else:
            _move_subscription(conn, row, 'webhook', *back)
    pending = conn.execute(sa.select(_messages).where(
        _messages.c.type == 'apprise', _messages.c.state == 'pending')).all()
    for message in pending:
        back = webhook_of(message.identity)
        if back is None:
            conn.execute(sa.update(_messages).where(_messages.c.id == message.id).values(
                state='failed', last_error='the apprise channel was removed by a downgrade'))
        else:
            conn.execute(sa.update(_messages).where(_messages.c.id == message.id)
                         .values(type='webhook', identity=back[0], format=back[1]))
