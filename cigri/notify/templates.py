"""Rendering of notification messages from the Jinja2 templates in `templates/*.j2`.

A template renders to text whose first line is the subject and whose rest (after one blank line) is
the body. Also the stable key of a message (`message_key`). Owns no decision about who gets what
(`cigri.domain.notifications`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import jinja2

from cigri.domain.notifications import OutgoingMessage

TEMPLATE_DIRECTORY: Final = Path(__file__).with_name("templates")

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATE_DIRECTORY)),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # plain-text messages; webhook payloads are JSON-encoded afterwards
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, body) of `template` (a name without `.j2`) with `context`."""
    text = _environment.get_template(f"{template}.j2").render(**context)
    subject, _, body = text.strip().partition("\n")
    return subject.strip(), body.strip() or subject.strip()


def headline(message: OutgoingMessage, tag: str) -> str:
    """v3's first line of every channel: "<tag> (<severity>): <subject>"."""
    return f"{tag} ({message.severity.value}): {message.subject}"


def template_names() -> list[str]:
    return sorted(path.stem for path in TEMPLATE_DIRECTORY.glob("*.j2"))


_UNSAFE_IN_KEY: Final = re.compile(r"[^A-Za-z0-9._-]")


def message_key(message: OutgoingMessage) -> str:
    """The stable identity of an outbox message, the same at every send of it (the mail
    Message-ID's left part, the webhook `Idempotency-Key`): its row id, its dedup key (made
    header-safe, shortened) and a digest of the whole dedup key. A receiver drops a second copy
    sent after a notifier crash between the relay's acceptance and "mark sent"."""
    readable = _UNSAFE_IN_KEY.sub(".", message.dedup_key)[:80]
    digest = hashlib.sha256(message.dedup_key.encode()).hexdigest()[:12]
    return f"cigri.{message.id or 0}.{readable}.{digest}"
