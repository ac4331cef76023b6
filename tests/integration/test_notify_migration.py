"""Migration 0010: chat webhooks become Apprise subscriptions (and their pending messages follow),
the others stay webhooks; the downgrade writes them back. On PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic import command
from sqlalchemy import Engine, insert, select

from cigri.notify.apprise_channel import url_problem
from cigri.storage.migrate import alembic_config, current_revision, head_revision, upgrade
from cigri.storage.tables import notification_messages, user_notifications

WORKFLOW = ("https://prod-12.westus.logic.azure.com:443/workflows/abc123/triggers/manual/paths/"
            "invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGXYZ")
CONNECTOR = "https://acme.webhook.office.com/webhookb2/x@y/IncomingWebhook/a/b"

# (format, webhook URL, Apprise URL after 0010 or None when it stays a webhook)
SUBSCRIPTIONS: list[tuple[str, str, str | None]] = [
    ("slack", "https://hooks.slack.com/services/T000/B000/XXXX", "slack://T000/B000/XXXX"),
    ("discord", "https://discord.com/api/webhooks/123456/tok-EN_x", "discord://123456/tok-EN_x"),
    ("mattermost", "https://chat.example.org/hooks/abc123", "mmosts://chat.example.org/abc123"),
    ("mattermost", "http://chat.example.org:8065/mm/hooks/abc123",
     "mmost://chat.example.org:8065/mm/abc123"),
    ("teams", WORKFLOW, "workflows://prod-12.westus.logic.azure.com:443/abc123/"
                        "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGXYZ"),
    ("teams", CONNECTOR, None),  # a retired Office 365 connector: no Apprise form
    ("slack", "https://chat.example.org/hooks/abc/def", None),  # a Slack-compatible host
    ("json", "http://127.0.0.1:9/hook", None),
]
NOW = datetime(2026, 12, 5, tzinfo=UTC)


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        return [dict(row._mapping) for row in conn.execute(
            select(user_notifications.c.type, user_notifications.c.identity,
                   user_notifications.c.format).order_by(user_notifications.c.id))]


def _messages(engine: Engine) -> list[tuple[str, str, str | None, str]]:
    with engine.begin() as conn:
        return [tuple(row) for row in conn.execute(  # type: ignore[misc]
            select(notification_messages.c.type, notification_messages.c.identity,
                   notification_messages.c.format, notification_messages.c.state)
            .order_by(notification_messages.c.id))]


def _seed(engine: Engine) -> None:
    with engine.begin() as conn:
        for format_, url, _ in SUBSCRIPTIONS:
            conn.execute(insert(user_notifications).values(
                grid_user="alice", type="webhook", identity=url, severity="low", format=format_))
        # a second spelling of the Discord webhook: one Apprise subscription is left
        conn.execute(insert(user_notifications).values(
            grid_user="alice", type="webhook", format="discord", severity="low",
            identity="https://discordapp.com/api/webhooks/123456/tok-EN_x"))
        for index, state in enumerate(("pending", "sent")):
            conn.execute(insert(notification_messages).values(
                dedup_key=f"ev{index}:s1", grid_user="alice", type="webhook", format="slack",
                identity=SUBSCRIPTIONS[0][1], severity="high", subject="s", body="b",
                state=state, created_at=NOW))


def test_chat_webhooks_become_apprise_urls_and_the_downgrade_writes_them_back(
        db_url: str, engine: Engine) -> None:
    command.downgrade(alembic_config(db_url), "0009")
    _seed(engine)
    upgrade(db_url)
    assert current_revision(engine) == head_revision()
    expected = [{"type": "apprise", "identity": apprise, "format": None} if apprise else
                {"type": "webhook", "identity": url, "format": format_}
                for format_, url, apprise in SUBSCRIPTIONS]
    assert _rows(engine) == expected
    assert all(url_problem(row["identity"]) is None for row in expected
               if row["type"] == "apprise")
    slack_url, slack_webhook = SUBSCRIPTIONS[0][2], SUBSCRIPTIONS[0][1]
    # the pending message goes out through Apprise; the sent one keeps its history
    assert _messages(engine) == [("apprise", slack_url, None, "pending"),
                                 ("webhook", slack_webhook, "slack", "sent")]

    with engine.begin() as conn:
        conn.execute(insert(user_notifications).values(
            grid_user="alice", type="apprise", identity="ntfy://ntfy.example.org/grid",
            severity="low"))
    command.downgrade(alembic_config(db_url), "0009")
    assert _rows(engine) == [{"type": "webhook", "identity": url, "format": format_}
                             for format_, url, _ in SUBSCRIPTIONS]  # ntfy has no webhook form
    assert _messages(engine) == [("webhook", slack_webhook, "slack", "pending"),
                                 ("webhook", slack_webhook, "slack", "sent")]
    upgrade(db_url)
