"""The routes of the REST API, one module (and one Flask blueprint) per resource: CiGri v3's
paths and JSON shapes (`cigri-v3-user.md` §3), v3's bugs fixed (§6), every route behind an
identity and an owner check (`cigri.api.access`).

Each module is thin: parse and check the request (`cigri.api.inputs`), call `storage` or the
domain in one short transaction, shape the answer (`cigri.api.shapes`). No SQL here.

| module          | paths                                                              |
|-----------------|--------------------------------------------------------------------|
| `root`          | `/`, `/openapi.json`, `/whoami`                                    |
| `campaigns`     | `/campaigns`, `/campaigns/<id>`, `.../stats`, `.../jdl`            |
| `outputs`       | `/campaigns/<id>/outputs`                                          |
| `tasks`         | `/campaigns/<id>/jobs...`, `/jobs/<id>...`                         |
| `events`        | `/campaigns/<id>/events`, `/events`, `/events/<id>`                |
| `clusters`      | `/clusters`, `/clusters/<id>`                                      |
| `gridusage`     | `/gridusage`                                                       |
| `notifications` | `/notifications`, `/notifications/<kind>`                          |
| `tokens`        | `/tokens`, `/tokens/<cluster id>`, `/api-tokens`, `/api-tokens/<id>` |
| `rules`         | `/rules`, `/rules/<id>`, `/rules/<id>/test` (automations)          |
| `schedules`     | `/schedules`, `/schedules/<id>` (scheduled and recurring campaigns) |
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint

from cigri.api.routes.campaigns import campaigns
from cigri.api.routes.clusters import clusters
from cigri.api.routes.events import events
from cigri.api.routes.gridusage import gridusage
from cigri.api.routes.notifications import notifications
from cigri.api.routes.outputs import outputs
from cigri.api.routes.root import root
from cigri.api.routes.rules import rules_api
from cigri.api.routes.schedules import schedules_api
from cigri.api.routes.tasks import tasks
from cigri.api.routes.tokens import tokens

BLUEPRINTS: Final[tuple[Blueprint, ...]] = (
    root, campaigns, outputs, tasks, events, clusters, gridusage, notifications, tokens, rules_api,
    schedules_api)

# Reachable without an identity (everything else answers 403 to nobody).
PUBLIC_ENDPOINTS: Final = frozenset({"root.index", "root.openapi"})
