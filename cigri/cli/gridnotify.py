"""`gridnotify`: my notification subscriptions (v3 options and output, `cigri-v3-user.md` §2.5):
list, subscribe a mail address, a Jabber id, a webhook URL, an Apprise URL (Slack, Discord,
Mattermost, Teams, ntfy and the other services of Apprise's URL syntax) or a log tag (the
notifier's log or journald, for sites without mail or XMPP) with a minimum severity, unsubscribe.
The API checks an Apprise URL and lists it masked; a refusal is one line, never the URL itself."""

from __future__ import annotations

from typing import Final

import click

from cigri import __version__
from cigri.cli.client import (
    client_from_environment,
    dump_json,
    echo_answer,
    fail,
    quoted,
    request_or_fail,
    run_tool,
)

TOOL = "gridnotify"
SHOWN_TYPE: Final = {"xmpp": "jabber"}


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=(
    "Apprise URLs name a service and its tokens: slack://A/B/C (from "
    "https://hooks.slack.com/services/A/B/C), discord://ID/TOKEN, mmosts://host/KEY (Mattermost), "
    "workflows://host:port/ID/SIG (Teams), ntfy://host/topic, json://host/path; see the Apprise "
    "URL list for the others. Quote them for the shell."))
@click.option("-l", "--list", "list_", is_flag=True, help="List my subscriptions.")
@click.option("-m", "--mail", help="E-mail address to subscribe (or unsubscribe with -u).")
@click.option("-j", "--jabber", help="Jabber/XMPP id to subscribe (or unsubscribe with -u).")
@click.option("-w", "--webhook",
              help="Webhook URL to subscribe (cigri's JSON payload; -u unsubscribes).")
@click.option("-a", "--apprise", "apprise_url", metavar="URL",
              help="Apprise URL to subscribe, e.g. slack://A/B/C or ntfy://host/topic "
                   "(-u unsubscribes).")
@click.option("--log", "log_", metavar="TAG",
              help="Log tag to subscribe (messages go to the notifier's log; -u unsubscribes).")
@click.option("-u", "--unsubscribe", is_flag=True, help="Unsubscribe the given identity.")
@click.option("-s", "--severity", help="Minimum severity to receive: low, medium or high.")
@click.option("-v", "--verbose", is_flag=True, help="Print the API message.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.version_option(__version__, prog_name=TOOL)
def gridnotify(list_: bool, mail: str | None, jabber: str | None, webhook: str | None,
               apprise_url: str | None, log_: str | None, unsubscribe: bool,
               severity: str | None, verbose: bool, as_json: bool) -> None:
    """Manage my notification subscriptions."""
    api = client_from_environment()
    if list_:
        found = api.get("/notifications")
        if as_json:
            dump_json(found)
            return
        if found["items"]:
            click.echo("You have the following notification subscriptions:")
        for item in found["items"]:
            kind = SHOWN_TYPE.get(item["type"], item["type"])
            click.echo(f" - {kind} on {item['identity']} with severity "
                       f"{item['severity'] or 'medium'}")
        if not (mail or jabber or webhook or apprise_url or log_):
            return
    kind, identity = next(((k, v) for k, v in (("mail", mail), ("jabber", jabber),
                                               ("webhook", webhook), ("apprise", apprise_url),
                                               ("log", log_)) if v),
                          (None, None))
    if kind is None or identity is None:
        click.echo(click.get_current_context().get_help())
        return
    named = "the Apprise URL" if kind == "apprise" else identity  # its tokens stay off screen
    if unsubscribe:
        answer = request_or_fail(api, "DELETE", f"/notifications/{kind}?identity={quoted(identity)}",
                                 tool=TOOL, failure=f"Failed to unsubscribe {named}")
    else:
        if severity not in {"low", "medium", "high"}:
            fail(TOOL, "ERROR: Severity should be 'low', 'medium' or 'high'!", 2)
        answer = request_or_fail(api, "POST", f"/notifications/{kind}",
                                 json_body={"identity": identity, "severity": severity},
                                 tool=TOOL, failure=f"Failed to subscribe with {named}")
    echo_answer(answer, as_json=as_json, verbose=verbose)


def main() -> None:
    run_tool(TOOL, gridnotify)
