"""`gridrule`: my automation rules (issue 13, docs/automations.md) through the API:
`add FILE` (JSON or TOML; `-` reads stdin), `list`, `show ID`, `test ID` (a dry run: what the
rule would have done over the last day), `enable ID`, `disable ID`, `remove ID`.

A definition is checked here first (the same validation as the API's, `cigri.domain.automations`)
so a mistake is one line per problem before anything is sent; the API checks it again. An
`add_tasks` action's `params_file` (one parameter a line, relative to FILE) is read here, as the
user who runs gridrule, and sent as `params`: the server never opens a path for a rule."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from cigri import __version__
from cigri.cli.client import client_from_environment, dump_json, fail, request_or_fail, run_tool
from cigri.domain.automations import RuleError, parse_definition, parse_text

TOOL = "gridrule"
_CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=_CONTEXT)
@click.version_option(__version__, prog_name=TOOL)
def gridrule() -> None:
    """Manage my automation rules: triggers on my campaigns' events, states, failure or
    resubmission rates and silences, acting on them (notify, pause, resume, cancel, fix)."""


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        fail(TOOL, f"{TOOL}: cannot read {path}: {getattr(error, 'strerror', None) or error}", 2)


def _inline_params_files(source: object, base: Path) -> None:
    """Replace each add_tasks action's `params_file` by its lines (`params`), read here."""
    actions = source.get("actions") if isinstance(source, dict) else None
    for action in actions if isinstance(actions, list) else []:
        if not isinstance(action, dict) or not isinstance(action.get("params_file"), str):
            continue
        path = base / Path(action.pop("params_file")).expanduser()
        lines = _read(str(path)).splitlines()
        action["params"] = [line for line in lines if line.strip()]


@gridrule.command(context_settings=_CONTEXT)
@click.argument("file")
@click.option("--admin", is_flag=True, help="Admins: a grid-wide rule (scope all).")
@click.option("--json", "as_json", is_flag=True, help="Print the stored rule as JSON.")
def add(file: str, admin: bool, as_json: bool) -> None:
    """Add the rule defined in FILE (JSON or TOML; - for stdin)."""
    try:
        source = parse_text(_read(file))
        _inline_params_files(source, Path.cwd() if file == "-" else Path(file).parent)
        parse_definition(source, admin=admin)
    except RuleError as error:
        fail(TOOL, f"{TOOL}: {file}: " + "\n  ".join(["invalid rule:", *error.problems]), 2)
    api = client_from_environment()
    answer = request_or_fail(api, "POST", "/rules" + ("?admin=1" if admin else ""),
                             json_body=source, tool=TOOL, failure="Failed to add the rule")
    if as_json:
        dump_json(answer)
    else:
        click.echo(f"Rule {answer['id']} added: {answer['trigger']} -> {answer['actions']}")


def fetch(path: str, *, failure: str, as_json: bool, tool: str = TOOL) -> Any:
    """GET `path` from the API; with --json, print it and return None."""
    answer = request_or_fail(client_from_environment(), "GET", path, tool=tool, failure=failure)
    if as_json:
        dump_json(answer)
        return None
    return answer


def list_items(path: str, *, everyone: bool, as_json: bool, empty: str,
               lines: Callable[[dict[str, Any]], Iterable[str]], tool: str = TOOL) -> None:
    """`list`: the items of `path` (everyone's with --all), a few lines each, or JSON."""
    found = fetch(path + ("?all=1" if everyone else ""), failure=f"Failed to list {path[1:]}",
                  as_json=as_json, tool=tool)
    if found is None:
        return
    if not found["items"]:
        click.echo(empty)
    for item in found["items"]:
        for line in lines(item):
            click.echo(line)


def change(method: str, path: str, body: object = None, *, failure: str,
           tool: str = TOOL) -> None:
    """PUT or DELETE one rule or schedule; prints the API's message."""
    answer = request_or_fail(client_from_environment(), method, path, json_body=body, tool=tool,
                             failure=failure)
    click.echo(f"{answer['message']}.")


def _rule_line(rule: dict[str, Any]) -> list[str]:
    state = "enabled" if rule["enabled"] else "disabled"
    return [f"{rule['id']}: {rule['name']} ({state}, {rule['owner']}"
            f"{', admin' if rule['admin'] else ''}): {rule['trigger']} -> {rule['actions']}, "
            f"cooldown {rule['cooldown_minutes']:g} min"]


@gridrule.command(name="list", context_settings=_CONTEXT)
@click.option("--all", "everyone", is_flag=True, help="Admins: everyone's rules.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(everyone: bool, as_json: bool) -> None:
    """List my rules."""
    list_items("/rules", everyone=everyone, as_json=as_json, empty="No rules.", lines=_rule_line)


@gridrule.command(context_settings=_CONTEXT)
@click.argument("rule_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(rule_id: int, as_json: bool) -> None:
    """Show a rule, its definition and its latest firings."""
    rule = fetch(f"/rules/{rule_id}", failure=f"Failed to show rule {rule_id}", as_json=as_json)
    if rule is None:
        return
    click.echo(f"Rule {rule['id']}: {rule['name']} ({'enabled' if rule['enabled'] else 'disabled'})")
    click.echo(f"  trigger:  {rule['trigger']}")
    click.echo(f"  actions:  {rule['actions']}")
    click.echo(f"  cooldown: {rule['cooldown_minutes']:g} min")
    click.echo("  definition: " + json.dumps(rule["definition"]))
    for firing in rule["firings"]:
        click.echo(f"  fired {firing['fired_at']} on campaign {firing['campaign_id']}: "
                   f"{firing['trigger']} [{firing['state']}] {firing['outcome'] or ''}".rstrip())


@gridrule.command(name="test", context_settings=_CONTEXT)
@click.argument("rule_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def test_(rule_id: int, as_json: bool) -> None:
    """Dry run: what the rule would have done over the last day (nothing is done)."""
    found = fetch(f"/rules/{rule_id}/test", failure=f"Failed to test rule {rule_id}",
                  as_json=as_json)
    if found is None:
        return
    if not found["items"]:
        click.echo(f"Rule {rule_id} would not have fired over the last day.")
    for item in found["items"]:
        click.echo(f"{item['at']}: campaign {item['campaign_id']}: {item['trigger']} -> "
                   f"would {item['actions']}")


def _switch(enabled: bool, summary: str) -> None:
    """The `enable` and `disable` commands: one PUT, with {"enabled": ...}."""

    @gridrule.command(name="enable" if enabled else "disable", context_settings=_CONTEXT,
                      help=summary)
    @click.argument("rule_id", type=click.IntRange(min=1))
    def switch(rule_id: int) -> None:
        change("PUT", f"/rules/{rule_id}", {"enabled": enabled},
               failure=f"Failed to change rule {rule_id}")


_switch(True, "Enable a rule.")
_switch(False, "Disable a rule (it stays stored; its pending firings still run).")


@gridrule.command(context_settings=_CONTEXT)
@click.argument("rule_id", type=click.IntRange(min=1))
def remove(rule_id: int) -> None:
    """Remove a rule and its history."""
    change("DELETE", f"/rules/{rule_id}", failure=f"Failed to remove rule {rule_id}")


def main() -> None:
    run_tool(TOOL, gridrule)
