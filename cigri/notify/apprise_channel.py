"""Apprise channel: one notification per message through the Apprise library, to the service its
URL names (`slack://`, `discord://`, `mmost://`, `ntfy://`, `workflows://`, `json://` and the
~100 other services of Apprise's URL syntax). The subscription's identity is the URL.

Owns the check of a URL at subscription time (`url_problem`) and its masked form for listings and
logs (`masked`: an Apprise URL holds the service's tokens). Apprise tells only success or failure,
so a failed send is transient (the outbox retries it with its back-off); a URL Apprise cannot read
is permanent. Services that take custom headers (`json://`, `form://`, `xml://`) also get
`Idempotency-Key: <message_key>` and `X-Cigri-Message: <dedup_key>`, as the webhook channel sends.
"""

from __future__ import annotations

import logging
from typing import Final

import apprise
from apprise.manager_plugins import NotificationManager

from cigri.domain.notifications import NotificationFailed, NotificationRejected, OutgoingMessage
from cigri.domain.states import NotificationType, Severity
from cigri.notify.templates import headline, message_key

log = logging.getLogger(__name__)
# Apprise's debug lines print the services' endpoints with their tokens (Discord's webhook URL),
# and it says "Notifying 1 service(s)" at INFO for every message: its warnings are enough.
logging.getLogger("apprise").setLevel(logging.WARNING)

# Services that act on the cigri server itself (its desktop, its syslog, its USB devices), not
# on a service of the user's: refused at subscription.
LOCAL_SCHEMES: Final = frozenset({
    "dbus", "kde", "qt", "glib", "gnome", "macosx", "windows", "syslog", "blink1"})

_TYPES: Final = {Severity.LOW: apprise.NotifyType.INFO, Severity.MEDIUM: apprise.NotifyType.WARNING,
                 Severity.HIGH: apprise.NotifyType.FAILURE}


def _asset() -> apprise.AppriseAsset:
    return apprise.AppriseAsset(app_id="cigri", app_desc="cigri grid notifications",
                                secure_logging=True)


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def _is_known(scheme: str) -> bool:
    """A scheme of an Apprise service, or a web address Apprise may know (Slack's, Discord's)."""
    return scheme in {"http", "https"} or scheme in NotificationManager().schemas()


def _service(url: str) -> apprise.NotifyBase | None:
    if not _is_known(_scheme(url)):
        return None  # Apprise would log an unknown URL whole, tokens included
    return apprise.Apprise.instantiate(url, asset=_asset(), suppress_exceptions=True)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an Apprise subscription, in one line without its secrets; None when
    Apprise can send to it."""
    scheme = _scheme(url)
    if scheme in {"http", "https"} and _service(url) is None:
        return ("a plain web address is not an Apprise URL: use json://host/path (or jsons://) "
                "or the webhook channel")
    if not scheme:
        return "not an Apprise URL (expected service://..., e.g. slack://A/B/C or ntfy://host/topic)"
    if scheme in LOCAL_SCHEMES:
        return f"{scheme}:// notifies the cigri server itself; use a service of yours"
    if not _is_known(scheme):
        return f"unknown Apprise service {scheme}:// (see the Apprise URL list)"
    if _service(url) is None:
        return f"{scheme}:// URL is incomplete or malformed for Apprise"
    return None


def masked(url: str) -> str:
    """The URL as listings and logs show it: Apprise's privacy form (tokens elided), without its
    query (custom headers and parameters may hold secrets too)."""
    service = _service(url)
    if service is None:
        scheme = _scheme(url)
        return f"{scheme}://…" if scheme else "…"
    shown = service.url(privacy=True)
    return shown.split("?", 1)[0]


def shown_identity(type_: str, identity: str) -> str:
    """A subscription's identity as listings show it (the API's, the dashboard's): an Apprise URL
    masked, any other identity as it is."""
    return masked(identity) if type_ == NotificationType.APPRISE else identity


def same_service(first: str, second: str) -> bool:
    """Two spellings of one service and its tokens (`slack://A/B/C` and Slack's own
    `https://hooks.slack.com/services/A/B/C`): Apprise writes both as one URL."""
    if first == second:
        return True
    one, other = _service(first), _service(second)
    return one is not None and other is not None and one.url() == other.url()


class AppriseNotifier:
    """Sends notification messages to the Apprise URL of their subscription."""

    def __init__(self, *, tag: str = "[CIGRI]", timeout_seconds: float = 10.0) -> None:
        self.tag = tag
        self.timeout_seconds = timeout_seconds

    def send(self, message: OutgoingMessage) -> None:
        service = _service(message.identity)
        if service is None:
            raise NotificationRejected(f"not a valid Apprise URL: {masked(message.identity)}")
        service.socket_connect_timeout = self.timeout_seconds
        service.socket_read_timeout = self.timeout_seconds
        headers = getattr(service, "headers", None)
        if isinstance(headers, dict):
            headers.update({"Idempotency-Key": message_key(message),
                            "X-Cigri-Message": message.dedup_key})
        sender = apprise.Apprise(asset=_asset())
        sender.add(service)
        result = sender.notify(body=message.body or message.subject,
                               title=headline(message, self.tag),
                               notify_type=_TYPES[message.severity],
                               body_format=apprise.NotifyFormat.TEXT)
        if not result:
            raise NotificationFailed(f"{masked(message.identity)}: {_reason(result)}")
        log.debug("apprise %s sent to %s", message.dedup_key, masked(message.identity))


def _reason(result: apprise.AppriseResult) -> str:
    """The last warning Apprise logged for the failed send (its secure logging elides tokens)."""
    warnings = [entry.message for item in result.results for entry in item.logs()
                if entry.level in {"WARNING", "ERROR", "CRITICAL"}]
    return warnings[-1][:300] if warnings else "the service did not accept the message"
