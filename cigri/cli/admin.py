"""`cigri`: the administrator's command (database, configuration, clusters, daemons, demo).

Sub-commands live in their own modules and are attached here; each is a few lines over storage.
"""

from __future__ import annotations

import sys

import click

from cigri import __version__
from cigri.cli.clusters import cluster
from cigri.cli.db import db
from cigri.cli.demo import demo
from cigri.cli.jdl import jdl
from cigri.cli.maintenance import maintenance
from cigri.cli.metrics import metrics
from cigri.cli.settings import config
from cigri.cli.status import status
from cigri.cli.tokens import token
from cigri.cli.users import user_mapping, user_priority
from cigri.domain.errors import CigriError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cigri")
def cli() -> None:
    """Administer a cigri grid: database, configuration, clusters, daemons.

    Configuration comes from /etc/cigri/cigri.conf, or the file named by CIGRI_CONF; any key can be
    overridden by a CIGRI_<KEY> environment variable.
    """


for command in (db, config, jdl, cluster, user_priority, user_mapping, token, status, demo,
                maintenance, metrics):
    cli.add_command(command)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except CigriError as error:
        click.echo(f"cigri: {error.message}", err=True)
        sys.exit(1)
