"""Webhook channel: one HTTP POST per message with `requests`, the generic cigri JSON payload
(subject, body, severity, grid user, id, tag). Chat services (Slack, Mattermost, Discord, Teams,
ntfy, ...) are the Apprise channel's (`cigri.notify.apprise_channel`): their payloads are Apprise's.

Connection errors, timeouts, 429 and 5xx are transient; other 4xx are permanent. Every request
carries `Idempotency-Key: <message_key>` (the outbox row's stable key, the mail Message-ID's left
part) and `X-Cigri-Message: <dedup_key>`, the same at every send of a message, so a receiver can
drop the rare duplicate sent again after a notifier crash.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import requests

from cigri.domain.notifications import NotificationFailed, NotificationRejected, OutgoingMessage
from cigri.notify.templates import message_key

log = logging.getLogger(__name__)

FORMATS: Final = ("json",)  # Slack, Mattermost, Discord, Teams: the Apprise channel (0010)


def payload(message: OutgoingMessage, *, tag: str = "[CIGRI]") -> dict[str, Any]:
    """The generic JSON body every webhook receives."""
    return {"subject": message.subject, "body": message.body, "severity": message.severity.value,
            "grid_user": message.grid_user, "id": message.dedup_key, "tag": tag}


class WebhookNotifier:
    """POSTs notification payloads to the subscription's URL (its identity)."""

    def __init__(self, *, timeout_seconds: float = 10.0, tag: str = "[CIGRI]",
                 session: requests.Session | None = None) -> None:
        self.timeout_seconds = timeout_seconds
        self.tag = tag
        self.session = session or requests.Session()

    def send(self, message: OutgoingMessage) -> None:
        try:
            answer = self.session.post(
                message.identity, json=payload(message, tag=self.tag),
                headers={"X-Cigri-Message": message.dedup_key,
                         "Idempotency-Key": message_key(message)},
                timeout=self.timeout_seconds)
        except requests.RequestException as error:
            raise NotificationFailed(f"webhook {message.identity}: {error}") from error
        if answer.status_code == 429 or answer.status_code >= 500:
            raise NotificationFailed(f"webhook answered {answer.status_code}")
        if answer.status_code >= 400:
            raise NotificationRejected(
                f"webhook answered {answer.status_code}: {answer.text[:200]}")
        log.debug("webhook %s sent to %s", message.dedup_key, message.identity)
