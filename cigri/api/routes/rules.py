"""The automation rules' routes (issue 13): `/rules` (list, add), `/rules/<id>` (show, enable or
disable, remove) and `/rules/<id>/test` (a dry run over the last day).

A user's rules are about their own campaigns; an admin adds a grid-wide rule with `?admin=1`. A
rule is the caller's, or any rule for an admin; anyone else's is a 403. Definitions are validated
by `cigri.domain.automations` (every problem listed in the 400). Thin: one transaction each,
storage in `cigri.storage.automations`, the dry run in `cigri.daemons.rule_evaluation`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from cigri.api.access import now as _now
from cigri.api.access import tx as _tx
from cigri.api.access import who as _who
from cigri.api.inputs import flag as _flag
from cigri.api.shapes import ApiError, json_response
from cigri.daemons.rule_evaluation import dry_run
from cigri.domain.automations import Rule, RuleError, parse_definition
from cigri.storage import automations as store

rules_api = Blueprint("rules", __name__)

MAX_RULE_BYTES: Final = 64 * 1024


def _own_rule(conn: Connection, rule_id: int) -> Rule:
    identity = _who()
    return store.get_own_rule(conn, rule_id, user=identity.user, is_admin=identity.is_admin)


def _rule_json(rule: Rule) -> dict[str, Any]:
    definition = rule.definition
    return {"id": rule.id, "name": definition.name, "owner": rule.owner, "admin": rule.admin,
            "enabled": rule.enabled, "trigger": definition.trigger.describe(),
            "actions": definition.describe_actions(),
            "cooldown_minutes": definition.cooldown.total_seconds() / 60,
            "definition": dict(rule.source)}


def _body() -> Any:
    if request.content_length is not None and request.content_length > MAX_RULE_BYTES:
        raise ApiError(413, "Payload too large", f"a rule is at most {MAX_RULE_BYTES} bytes")
    data = request.stream.read(MAX_RULE_BYTES + 1)
    if len(data) > MAX_RULE_BYTES:
        raise ApiError(413, "Payload too large", f"a rule is at most {MAX_RULE_BYTES} bytes")
    try:
        return json.loads(data or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ApiError(400, "Bad request", f"the body is not valid JSON: {error}") from None


def enabled_from_body() -> bool:
    """The body of a PUT that enables or disables a rule or a schedule."""
    body = _body()
    if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
        raise ApiError(400, "Bad request", 'the body is {"enabled": true} or {"enabled": false}')
    return bool(body["enabled"])


def add_change_routes(blueprint: Blueprint, resource: str, *,
                      own: Callable[[Connection, int], object],
                      set_enabled: Callable[[Connection, int, bool], None],
                      remove: Callable[[Connection, int], None], words: tuple[str, str]) -> None:
    """`PUT /<resource>s/<id>` ({"enabled": true|false}; `words` say it: "enabled", "disabled")
    and `DELETE /<resource>s/<id>` for rules and schedules: the owner check and the change in
    one transaction, answered 202. Endpoints `update_<resource>` and `remove_<resource>`."""
    param, title = f"{resource}_id", resource.capitalize()

    def answer(message: str) -> ResponseReturnValue:
        return json_response({"status": 202, "title": "Accepted", "message": message}, 202)

    def update(**ids: int) -> ResponseReturnValue:
        enabled = enabled_from_body()
        with _tx() as conn:
            own(conn, ids[param])
            set_enabled(conn, ids[param], enabled)
        return answer(f"{title} {ids[param]} {words[0] if enabled else words[1]}")

    def delete(**ids: int) -> ResponseReturnValue:
        with _tx() as conn:
            own(conn, ids[param])
            remove(conn, ids[param])
        return answer(f"{title} {ids[param]} removed")

    rule = f"/{resource}s/<id:{param}>"
    blueprint.add_url_rule(rule, f"update_{resource}", update, methods=["PUT"])
    blueprint.add_url_rule(rule, f"remove_{resource}", delete, methods=["DELETE"])


@rules_api.get("/rules")
def list_rules() -> ResponseReturnValue:
    identity = _who()
    everyone = identity.is_admin and _flag("all")
    with _tx() as conn:
        found = store.list_rules(conn, owner=None if everyone else identity.user)
    return json_response({"items": [_rule_json(r) for r in found]})


@rules_api.post("/rules")
def add_rule() -> ResponseReturnValue:
    identity = _who()
    admin = _flag("admin")
    if admin and not identity.is_admin:
        raise ApiError(403, "Forbidden", f"User '{identity.user}' is not a cigri admin")
    source = _body()
    try:
        parse_definition(source, admin=admin)
    except RuleError as error:
        raise ApiError(400, "Bad request", str(error)) from None
    with _tx() as conn:
        rule_id = store.add_rule(conn, owner=identity.user, admin=admin, source=source,
                                 now=_now())
        rule = store.get_rule(conn, rule_id)
    return json_response(_rule_json(rule), 201)


@rules_api.get("/rules/<id:rule_id>")
def show_rule(rule_id: int) -> ResponseReturnValue:
    with _tx() as conn:
        rule = _own_rule(conn, rule_id)
        firings = store.list_firings(conn, rule_id=rule_id)
    return json_response({**_rule_json(rule), "firings": [
        {"id": f.id, "campaign_id": f.campaign_id, "trigger": f.trigger,
         "fired_at": f.fired_at.isoformat(), "state": f.state, "outcome": f.outcome}
        for f in firings]})


add_change_routes(
    rules_api, "rule", own=_own_rule, remove=store.remove_rule, words=("enabled", "disabled"),
    set_enabled=lambda conn, rule_id, enabled: store.set_rule_enabled(
        conn, rule_id, enabled=enabled, now=_now()))


@rules_api.get("/rules/<id:rule_id>/test")
def test_rule(rule_id: int) -> ResponseReturnValue:
    with _tx() as conn:
        rule = _own_rule(conn, rule_id)
        found = dry_run(conn, rule, now=_now())
        conn.rollback()  # a dry run writes nothing, whatever it read
    return json_response({"items": [
        {"at": w.at.isoformat(), "campaign_id": w.campaign_id, "trigger": w.detail,
         "actions": w.actions} for w in found]})
