"""Console-script entry points. Each imports its command module only when run (fast start-up) and
says plainly when that command is not part of this build yet."""

from __future__ import annotations

import importlib
import sys
from typing import Final, NoReturn

# console script -> module whose `main()` runs it
COMMANDS: Final[dict[str, str]] = {
    "gridsub": "cigri.cli.gridsub",
    "gridstat": "cigri.cli.gridstat",
    "griddel": "cigri.cli.griddel",
    "gridevents": "cigri.cli.gridevents",
    "gridnotify": "cigri.cli.gridnotify",
    "gridclean": "cigri.cli.gridclean",
    "gridclusters": "cigri.cli.gridclusters",
    "gridtoken": "cigri.cli.gridtoken",
    "cigri-api": "cigri.api.server",
    "cigri-metascheduler": "cigri.daemons.metascheduler",
    "cigri-runner": "cigri.daemons.runner",
    "cigri-updater": "cigri.daemons.updater",
    "cigri-nikita": "cigri.daemons.nikita",
    "cigri-collector": "cigri.daemons.collector",
    "cigri-notifier": "cigri.daemons.notifier",
    "cigri-almighty": "cigri.daemons.almighty",
    "cigri-oar-emulator": "cigri.emulator.cli",
}


def _run(command: str) -> NoReturn:
    module_name = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        print(f"{command}: not built yet in this version of cigri", file=sys.stderr)
        sys.exit(2)
    module.main()
    sys.exit(0)


def gridsub() -> None: _run("gridsub")
def gridstat() -> None: _run("gridstat")
def griddel() -> None: _run("griddel")
def gridevents() -> None: _run("gridevents")
def gridnotify() -> None: _run("gridnotify")
def gridclean() -> None: _run("gridclean")
def gridclusters() -> None: _run("gridclusters")
def gridtoken() -> None: _run("gridtoken")
def api() -> None: _run("cigri-api")
def metascheduler() -> None: _run("cigri-metascheduler")
def runner() -> None: _run("cigri-runner")
def updater() -> None: _run("cigri-updater")
def nikita() -> None: _run("cigri-nikita")
def collector() -> None: _run("cigri-collector")
def notifier() -> None: _run("cigri-notifier")
def almighty() -> None: _run("cigri-almighty")
def oar_emulator() -> None: _run("cigri-oar-emulator")
