"""XMPP channel, with `slixmpp` (maintained, pure Python, asyncio): each send connects as the bot
(`NOTIFICATIONS_XMPP_IDENTITY`), authenticates, sends one chat message and disconnects, all on a
private event loop, so the synchronous notifier needs no background thread and no reconnect logic.

STARTTLS is used when the server offers it (verified against the system CA store unless
`verify_tls` is false); a server without TLS is accepted, as v3 did. Every failure (connection,
authentication, timeout) is transient: the outbox retries with back-off. The message text is v3's:
"<tag> (<severity>): <subject>" then the body.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import slixmpp

from cigri.domain.notifications import NotificationFailed, OutgoingMessage
from cigri.notify.templates import headline

log = logging.getLogger(__name__)


class _OneShot(slixmpp.ClientXMPP):
    """Logs in, sends the queued chats, disconnects."""

    def __init__(self, jid: str, password: str, chats: list[tuple[str, str]]) -> None:
        super().__init__(jid, password)
        self.chats = chats
        self.outcome: asyncio.Future[str] = self.loop.create_future()
        self.has_sent = False
        self.add_event_handler("session_start", self._session_start)
        self.add_event_handler("failed_auth", self._failed)
        self.add_event_handler("connection_failed", self._failed)
        self.add_event_handler("disconnected", self._disconnected)

    async def _session_start(self, _event: Any) -> None:
        for to, body in self.chats:
            self.send_message(mto=slixmpp.JID(to), mbody=body, mtype="chat")
        self.has_sent = True
        # Wait for the send queue to flush before the stream closes.
        await self.disconnect(wait=5.0)

    def _failed(self, event: Any) -> None:
        if not self.outcome.done():
            self.outcome.set_exception(NotificationFailed(f"XMPP: {event or 'failure'}"))

    def _disconnected(self, _event: Any) -> None:
        if self.outcome.done():
            return
        if self.has_sent:
            self.outcome.set_result("sent")
        else:
            self.outcome.set_exception(NotificationFailed("XMPP: disconnected before sending"))


@dataclass(frozen=True, kw_only=True)
class XmppNotifier:
    """Sends notification chats from one bot account."""

    server: str
    port: int = 5222
    identity: str
    password: str = field(repr=False)
    subject_tag: str = "[CIGRI]"
    timeout_seconds: float = 20.0
    verify_tls: bool = True

    def text(self, message: OutgoingMessage) -> str:
        return f"{headline(message, self.subject_tag)}\n{message.body}"

    def send(self, message: OutgoingMessage) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._deliver(loop, [(message.identity, self.text(message))]))
        except NotificationFailed:
            raise
        except (TimeoutError, OSError, slixmpp.xmlstream.xmlstream.NotConnectedError) as error:
            raise NotificationFailed(f"XMPP {self.server}:{self.port}: {error!r}") from error
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()
        log.debug("xmpp %s sent to %s", message.dedup_key, message.identity)

    async def _deliver(self, loop: asyncio.AbstractEventLoop, chats: list[tuple[str, str]]) -> None:
        asyncio.set_event_loop(loop)
        client = _OneShot(self.identity, self.password, chats)
        client.enable_direct_tls = False
        client.enable_plaintext = True
        if not self.verify_tls:
            client.ssl_context.check_hostname = False
            client.ssl_context.verify_mode = ssl.CERT_NONE
        client.connect(self.server, self.port)
        try:
            await asyncio.wait_for(asyncio.shield(client.outcome), self.timeout_seconds)
        except TimeoutError as error:
            raise NotificationFailed(f"XMPP: no session within {self.timeout_seconds}s") from error
        finally:
            client.abort()
