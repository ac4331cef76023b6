"""`log` channel (v3's `log` notification type): writes each message to the daemon's log (and so to
journald), for sites without mail or XMPP. Never fails."""

from __future__ import annotations

import logging

from cigri.domain.notifications import OutgoingMessage

log = logging.getLogger(__name__)


class LogNotifier:
    """Logs notification messages at INFO with their recipient and severity."""

    def send(self, message: OutgoingMessage) -> None:
        log.info("notification for %s (%s): %s\n%s", message.identity, message.severity.value,
                 message.subject, message.body,
                 extra={"action": "notify", "grid_user": message.grid_user})
