"""The dashboard's schedules page (`/ui/schedules`, issue 13): the viewer's campaign schedules (an
admin's page lists everyone's, with the owner), each with its kind (at, cron, every), expression,
time zone, next run, whether it skips a period while its last campaign runs, paused or active,
and the last campaigns it created; POST forms (with the CSRF token `pages` checks) pause, resume
or remove one. The same storage functions and owner check (`get_own_schedule`) as `/schedules` in
the API; schedules are added with `gridsub --at/--cron/--every` or `POST /schedules`."""

from __future__ import annotations

from typing import Final

from flask import url_for
from flask.typing import ResponseReturnValue

from cigri.api.ui import session
from cigri.api.ui.pages import change_own, conn, now, page, ui
from cigri.storage import schedules as store

CAMPAIGNS_SHOWN: Final = 5  # last campaigns per schedule on the page


@ui.get("/schedules")
def schedules() -> ResponseReturnValue:
    identity = session.require_viewer()
    with conn() as connection:
        found = store.list_schedules(connection,
                                     owner=None if identity.is_admin else identity.user)
        created = {s.id: store.list_schedule_campaigns(connection, s, limit=CAMPAIGNS_SHOWN)
                   for s in found}
    return page("schedules.html", schedules=found, created=created)


@ui.post("/schedules/<id:schedule_id>/<any(pause, resume):action>")
def schedule_switch(schedule_id: int, action: str) -> ResponseReturnValue:
    """The API's `PUT /schedules/<id>` ({"enabled": ...}), as a form."""
    return change_own(
        store.get_own_schedule, schedule_id, lambda connection: store.set_schedule_enabled(
            connection, schedule_id, enabled=action == "resume", now=now()),
        default=url_for("ui.schedules"),
        notice=f"Schedule {schedule_id} {'paused' if action == 'pause' else 'resumed'}")


@ui.post("/schedules/<id:schedule_id>/remove")
def schedule_remove(schedule_id: int) -> ResponseReturnValue:
    """The API's `DELETE /schedules/<id>`, as a form."""
    return change_own(store.get_own_schedule, schedule_id,
                      lambda connection: store.remove_schedule(connection, schedule_id),
                      default=url_for("ui.schedules"), notice=f"Schedule {schedule_id} removed")
