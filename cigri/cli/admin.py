"""`cigri`: the administrator's command (database, configuration, clusters, daemons, demo).

Sub-commands live in their own modules and are attached here; each is a few lines over storage.
"""

from __future__ import annotations

import sys

import click

from cigri import __version__
from cigri.cli.db import db
from cigri.cli.settings import config
from cigri.domain.errors import CigriError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cigri")
def cli() -> None:
    """Administer a cigri grid: database, configuration, clusters, daemons.

    Configuration comes from /etc/cigri/cigri.conf, or the file named by CIGRI_CONF; any key can be
    overridden by a CIGRI_<KEY> environment variable.
    """


cli.add_command(db)
cli.add_command(config)


def _attach_optional_commands() -> None:
    """Attach commands built in other modules (jdl, cluster, status, demo...) when present."""
    import importlib

    for module_name, attribute in [
        ("cigri.cli.jdl", "jdl"),
        ("cigri.cli.clusters", "cluster"),
        ("cigri.cli.status", "status"),
        ("cigri.cli.demo", "demo"),
        ("cigri.cli.users", "user_priority"),
        ("cigri.cli.users", "user_mapping"),
        ("cigri.cli.tokens", "token"),
        ("cigri.cli.maintenance", "maintenance"),
    ]:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        command = getattr(module, attribute, None)
        if isinstance(command, click.Command):
            cli.add_command(command)


_attach_optional_commands()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except CigriError as error:
        click.echo(f"cigri: {error.message}", err=True)
        sys.exit(1)
