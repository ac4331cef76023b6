"""The REST API (Flask under waitress): `create_app(settings, engine, ...)` builds it,
`cigri-api` (`cigri.api.server`) serves it on TCP and on a Unix socket."""

from __future__ import annotations

from cigri.api.app import create_app

__all__ = ["create_app"]
