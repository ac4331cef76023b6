"""Console-script entry points and their common error boundary (`cigri.cli.failures.guard`):
whatever goes wrong, a command prints one line on stderr and exits non-zero, never a traceback.

Each entry imports its command module only when run (fast start-up) and says plainly when that
command is not part of this build yet. The servers (`cigri-api`, the daemons) take no arguments:
`-h`/`--help` prints their usage and `--version` the version, both without starting anything; any
other argument is a usage error. Before a server starts, it loads the configuration and checks the
database (reachable, schema at this build's revision): a problem there is one line and exit 1, and
the supervisor (systemd's `Restart=on-failure`, almighty) starts it again later.
"""

from __future__ import annotations

import importlib
import sys
from typing import Final, NoReturn

import click

from cigri import __version__
from cigri.cli.failures import check_database, guard

# console script -> module whose `main()` runs it (or "module:attribute" for a click command)
COMMANDS: Final[dict[str, str]] = {
    "gridsub": "cigri.cli.gridsub",
    "gridstat": "cigri.cli.gridstat",
    "griddel": "cigri.cli.griddel",
    "gridevents": "cigri.cli.gridevents",
    "gridnotify": "cigri.cli.gridnotify",
    "gridclean": "cigri.cli.gridclean",
    "gridclusters": "cigri.cli.gridclusters",
    "gridtoken": "cigri.cli.gridtoken",
    "gridrule": "cigri.cli.gridrule",
    "gridschedule": "cigri.cli.gridschedule",
    "cigri-api": "cigri.api.server",
    "cigri-metascheduler": "cigri.daemons.metascheduler",
    "cigri-runner": "cigri.daemons.runner",
    "cigri-updater": "cigri.daemons.updater",
    "cigri-nikita": "cigri.daemons.nikita",
    "cigri-collector": "cigri.daemons.collector",
    "cigri-notifier": "cigri.daemons.notifier",
    "cigri-automations": "cigri.daemons.automations",
    "cigri-almighty": "cigri.daemons.almighty",
    "cigri-oar-emulator": "cigri.emulator.cli:command",
}

# the servers: what each does, for its --help
SERVERS: Final[dict[str, str]] = {
    "cigri-api": "Serve cigri's REST API on API_LISTEN (host:port) and, when set, the Unix "
                 "socket API_SOCKET.",
    "cigri-metascheduler": "Run the meta-scheduler: decide which tasks go to which cluster.",
    "cigri-runner": "Run the runners, one per enabled cluster: submit the queued tasks to OAR.",
    "cigri-updater": "Run the updater: follow the jobs on the clusters, end campaigns, keep stats.",
    "cigri-nikita": "Run nikita: delete on the clusters the jobs users or admins cancelled.",
    "cigri-collector": "Run the collector: gather the campaigns' result files.",
    "cigri-notifier": "Run the notifier: send the mail, XMPP and webhook notifications.",
    "cigri-automations": "Run the automations: evaluate the users' and admins' rules and run "
                         "their actions.",
    "cigri-almighty": "Run every daemon of this host under one supervisor, and the periodic "
                      "maintenance.",
}

SERVER_USAGE: Final = """Usage: {name} [-h | --help] [--version]

{summary}

Takes no arguments: the configuration comes from /etc/cigri/cigri.conf, or the file named by
CIGRI_CONF; any key can be overridden by a CIGRI_<KEY> environment variable (`cigri config keys`
lists them; `cigri config check` checks them and the database). Stops on SIGTERM or Ctrl-C.
At start-up it exits 1 with one line when the configuration is invalid, the database cannot be
reached or its schema is not this version's (`cigri db upgrade`)."""


def server_arguments(name: str, args: list[str]) -> None:
    """Handle a server's command line: usage (exit 0), version (exit 0), or a usage error."""
    if any(arg in {"-h", "--help"} for arg in args):
        click.echo(SERVER_USAGE.format(name=name, summary=SERVERS[name]))
        sys.exit(0)
    if args == ["--version"]:
        click.echo(f"{name}, version {__version__}")
        sys.exit(0)
    if args:
        click.echo(f"{name}: unexpected argument {args[0]!r}: it takes none "
                   f"(see `{name} --help`)", err=True)
        sys.exit(2)


def _start_server(name: str, module: object) -> object:
    from cigri.app import load

    check_database(load().database_url)
    return module.main()  # type: ignore[attr-defined]


def _run(command: str) -> NoReturn:
    module_name, _, attribute = COMMANDS[command].partition(":")
    if command in SERVERS:
        server_arguments(command, sys.argv[1:])
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        print(f"{command}: not built yet in this version of cigri", file=sys.stderr)
        sys.exit(2)
    if attribute:
        click_command = getattr(module, attribute)
        guard(command, lambda: click_command.main(prog_name=command, standalone_mode=False))
    if command in SERVERS:
        guard(command, lambda: _start_server(command, module))
    guard(command, module.main)


def gridsub() -> None: _run("gridsub")
def gridstat() -> None: _run("gridstat")
def griddel() -> None: _run("griddel")
def gridevents() -> None: _run("gridevents")
def gridnotify() -> None: _run("gridnotify")
def gridclean() -> None: _run("gridclean")
def gridclusters() -> None: _run("gridclusters")
def gridtoken() -> None: _run("gridtoken")
def gridrule() -> None: _run("gridrule")
def gridschedule() -> None: _run("gridschedule")
def api() -> None: _run("cigri-api")
def metascheduler() -> None: _run("cigri-metascheduler")
def runner() -> None: _run("cigri-runner")
def updater() -> None: _run("cigri-updater")
def nikita() -> None: _run("cigri-nikita")
def collector() -> None: _run("cigri-collector")
def notifier() -> None: _run("cigri-notifier")
def automations() -> None: _run("cigri-automations")
def almighty() -> None: _run("cigri-almighty")
def oar_emulator() -> None: _run("cigri-oar-emulator")
