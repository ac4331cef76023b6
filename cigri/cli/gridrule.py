"""`gridrule`: my automation rules (issue 13, docs/automations.md) through the API:
`add FILE` (JSON or TOML; `-` reads stdin), `list`, `show ID`, `test ID` (a dry run: what the
rule would have done over the last day), `enable ID`, `disable ID`, `remove ID`.

A definition is checked here first (the same validation as the API's, `cigri.domain.automations`)
so a mistake is one line per problem before anything is sent; the API checks it again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cigri import __version__
from cigri.cli.client import client_from_environment, dump_json, fail, request_or_fail, run_tool
from cigri.domain.automations import RuleError, load_definition

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


@gridrule.command(context_settings=_CONTEXT)
@click.argument("file")
@click.option("--admin", is_flag=True, help="Admins: a grid-wide rule (scope all).")
@click.option("--json", "as_json", is_flag=True, help="Print the stored rule as JSON.")
def add(file: str, admin: bool, as_json: bool) -> None:
    """Add the rule defined in FILE (JSON or TOML; - for stdin)."""
    try:
        _definition, source = load_definition(_read(file), admin=admin)
    except RuleError as error:
        fail(TOOL, f"{TOOL}: {file}: " + "\n  ".join(["invalid rule:", *error.problems]), 2)
    api = client_from_environment()
    answer = request_or_fail(api, "POST", "/rules" + ("?admin=1" if admin else ""),
                             json_body=source, tool=TOOL, failure="Failed to add the rule")
    if as_json:
        dump_json(answer)
    else:
        click.echo(f"Rule {answer['id']} added: {answer['trigger']} -> {answer['actions']}")


@gridrule.command(name="list", context_settings=_CONTEXT)
@click.option("--all", "everyone", is_flag=True, help="Admins: everyone's rules.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(everyone: bool, as_json: bool) -> None:
    """List my rules."""
    found = client_from_environment().get("/rules", all=1 if everyone else None)
    if as_json:
        dump_json(found)
        return
    if not found["items"]:
        click.echo("No rules.")
    for rule in found["items"]:
        state = "enabled" if rule["enabled"] else "disabled"
        click.echo(f"{rule['id']}: {rule['name']} ({state}, {rule['owner']}"
                   f"{', admin' if rule['admin'] else ''}): {rule['trigger']} -> "
                   f"{rule['actions']}, cooldown {rule['cooldown_minutes']:g} min")


@gridrule.command(context_settings=_CONTEXT)
@click.argument("rule_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(rule_id: int, as_json: bool) -> None:
    """Show a rule, its definition and its latest firings."""
    api = client_from_environment()
    rule = request_or_fail(api, "GET", f"/rules/{rule_id}", tool=TOOL,
                           failure=f"Failed to show rule {rule_id}")
    if as_json:
        dump_json(rule)
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
    api = client_from_environment()
    found = request_or_fail(api, "GET", f"/rules/{rule_id}/test", tool=TOOL,
                            failure=f"Failed to test rule {rule_id}")
    if as_json:
        dump_json(found)
        return
    if not found["items"]:
        click.echo(f"Rule {rule_id} would not have fired over the last day.")
    for item in found["items"]:
        click.echo(f"{item['at']}: campaign {item['campaign_id']}: {item['trigger']} -> "
                   f"would {item['actions']}")


def _set_enabled(rule_id: int, enabled: bool) -> None:
    api = client_from_environment()
    answer = request_or_fail(api, "PUT", f"/rules/{rule_id}", json_body={"enabled": enabled},
                             tool=TOOL, failure=f"Failed to change rule {rule_id}")
    click.echo(f"{answer['message']}.")


@gridrule.command(context_settings=_CONTEXT)
@click.argument("rule_id", type=click.IntRange(min=1))
def enable(rule_id: int) -> None:
    """Enable a rule."""
    _set_enabled(rule_id, True)


@gridrule.command(context_settings=_CONTEXT)
@click.argument("rule_id", type=click.IntRange(min=1))
def disable(rule_id: int) -> None:
    """Disable a rule (it stays stored; its pending firings still run)."""
    _set_enabled(rule_id, False)


@gridrule.command(context_settings=_CONTEXT)
@click.argument("rule_id", type=click.IntRange(min=1))
def remove(rule_id: int) -> None:
    """Remove a rule and its history."""
    api = client_from_environment()
    answer = request_or_fail(api, "DELETE", f"/rules/{rule_id}", tool=TOOL,
                             failure=f"Failed to remove rule {rule_id}")
    click.echo(f"{answer['message']}.")


def main() -> None:
    run_tool(TOOL, gridrule)
