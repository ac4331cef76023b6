"""The web dashboard, served by `cigri-api` under `/ui/` (issue 12).

A Flask blueprint of server-rendered pages (Jinja2 templates and static CSS/JS in this package: no
CDN, no build step). It calls the same storage functions as the JSON API and the same
authorisation rules (`cigri.api.access`); who is looking is decided in `session`, the blueprint
and its guards in `pages`, the pages in `views`, `settings`, `rules` and `schedules`, their wording in
`present`. See docs/ui.md.
"""

from __future__ import annotations

from cigri.api.ui import rules, schedules, settings, views
from cigri.api.ui.pages import ui

__all__ = ["rules", "schedules", "settings", "ui", "views"]
