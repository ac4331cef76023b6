"""The dashboard's rules page (`/ui/rules`, issue 13): the viewer's automation rules (an admin's
page lists everyone's), each with its trigger, actions, cooldown, whether it is enabled and its
last firings, and POST forms (with the CSRF token `pages` checks) to enable, disable or remove
one. The same storage functions and the same owner check (`get_own_rule`) as `/rules` in the API;
rules are added with `gridrule add` or `POST /rules` (a definition is a file, not a form)."""

from __future__ import annotations

from typing import Final

from flask import url_for
from flask.typing import ResponseReturnValue

from cigri.api.ui import session
from cigri.api.ui.pages import change_own, conn, now, page, ui
from cigri.storage import automations as store

FIRINGS_SHOWN: Final = 3  # last firings per rule on the page


@ui.get("/rules")
def rules() -> ResponseReturnValue:
    identity = session.require_viewer()
    with conn() as connection:
        found = store.list_rules(connection, owner=None if identity.is_admin else identity.user)
        firings = store.latest_firings(connection, [r.id for r in found], per_rule=FIRINGS_SHOWN)
    return page("rules.html", rules=found, firings=firings)


@ui.post("/rules/<id:rule_id>/<any(enable, disable):action>")
def rule_switch(rule_id: int, action: str) -> ResponseReturnValue:
    """The API's `PUT /rules/<id>` ({"enabled": ...}), as a form."""
    return change_own(store.get_own_rule, rule_id, lambda connection: store.set_rule_enabled(
        connection, rule_id, enabled=action == "enable", now=now()),
        default=url_for("ui.rules"), notice=f"Rule {rule_id} {action}d")


@ui.post("/rules/<id:rule_id>/remove")
def rule_remove(rule_id: int) -> ResponseReturnValue:
    """The API's `DELETE /rules/<id>`, as a form."""
    return change_own(store.get_own_rule, rule_id,
                      lambda connection: store.remove_rule(connection, rule_id),
                      default=url_for("ui.rules"), notice=f"Rule {rule_id} removed")
