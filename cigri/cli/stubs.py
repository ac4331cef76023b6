"""Entry points of commands that are declared but not built yet: each says so and exits 2."""

from __future__ import annotations

import sys
from typing import NoReturn


def _not_built(name: str) -> NoReturn:
    print(f"{name}: not built yet in this version of cigri", file=sys.stderr)
    sys.exit(2)


def gridsub() -> None: _not_built("gridsub")
def gridstat() -> None: _not_built("gridstat")
def griddel() -> None: _not_built("griddel")
def gridevents() -> None: _not_built("gridevents")
def gridnotify() -> None: _not_built("gridnotify")
def gridclean() -> None: _not_built("gridclean")
def gridclusters() -> None: _not_built("gridclusters")
def gridtoken() -> None: _not_built("gridtoken")
def api() -> None: _not_built("cigri-api")
def metascheduler() -> None: _not_built("cigri-metascheduler")
def runner() -> None: _not_built("cigri-runner")
def updater() -> None: _not_built("cigri-updater")
def nikita() -> None: _not_built("cigri-nikita")
def collector() -> None: _not_built("cigri-collector")
def notifier() -> None: _not_built("cigri-notifier")
def almighty() -> None: _not_built("cigri-almighty")
def oar_emulator() -> None: _not_built("cigri-oar-emulator")
