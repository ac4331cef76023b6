"""Mail channel: one SMTP session per message with `smtplib` (STARTTLS and login optional).

Owns the mail format: From `NOTIFICATIONS_SMTP_FROM`, Subject "<tag> (<severity>): <subject>" (v3),
a Message-ID derived from the outbox row (`message_key`: its id and `dedup_key`, no time, no random
part), the same at every send, so a message sent twice after a notifier crash can be recognised
and dropped by the receiving side. Connection errors, timeouts, 4xx SMTP answers and
authentication or sender failures (our configuration) are transient; a refused recipient or another
5xx answer is permanent.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

from cigri.domain.notifications import NotificationFailed, NotificationRejected, OutgoingMessage
from cigri.notify.templates import headline, message_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class MailNotifier:
    """Sends notification mails through one SMTP relay."""

    server: str
    port: int = 25
    sender: str = "cigri@localhost"
    starttls: bool = False
    user: str = ""
    password: str = field(default="", repr=False)
    subject_tag: str = "[CIGRI]"
    timeout_seconds: float = 30.0
    ssl_context: ssl.SSLContext | None = None

    def compose(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.identity
        mail["Subject"] = headline(message, self.subject_tag)
        mail["Date"] = formatdate(localtime=False)
        domain = self.sender.rpartition("@")[2] or "localhost"
        mail["Message-ID"] = f"<{message_key(message)}@{domain}>"
        mail["X-Cigri-Message"] = message.dedup_key
        mail.set_content(message.body or message.subject)
        return mail

    def send(self, message: OutgoingMessage) -> None:
        mail = self.compose(message)
        try:
            with smtplib.SMTP(self.server, self.port, timeout=self.timeout_seconds) as smtp:
                if self.starttls:
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as error:
            raise NotificationRejected(f"recipient refused: {error.recipients}") from error
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as error:
            # Our configuration, not the message: keep it until the admin fixes the settings.
            raise NotificationFailed(f"SMTP {error.smtp_code}: {error.smtp_error!r}") from error
        except smtplib.SMTPResponseException as error:
            text = f"SMTP {error.smtp_code}: {error.smtp_error!r}"
            if 500 <= error.smtp_code < 600:
                raise NotificationRejected(text) from error
            raise NotificationFailed(text) from error
        except (OSError, smtplib.SMTPException) as error:
            raise NotificationFailed(f"SMTP {self.server}:{self.port}: {error}") from error
        log.debug("mail %s sent to %s", message.dedup_key, message.identity)
