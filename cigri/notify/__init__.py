"""Outbound notifications: one module per channel (`mail`, `xmpp`, `webhook`, `apprise_channel`,
`journal`), each a class with `send(message)` that implements the
`cigri.domain.notifications.Notifier` Protocol, and the Jinja2 templates every message is rendered
from (`templates`)."""
