"""`cigri`: the administrator's command (database, configuration, clusters, daemons, demo).

Sub-commands live in their own modules and are attached here; each is a few lines over storage.
"""

from __future__ import annotations

import click

from cigri import __version__
from cigri.cli.cluster_token import cluster_token
from cigri.cli.clusters import cluster
from cigri.cli.db import db
from cigri.cli.demo import demo
from cigri.cli.failures import run_click
from cigri.cli.jdl import jdl
from cigri.cli.maintenance import maintenance
from cigri.cli.metrics import metrics
from cigri.cli.sandbox import sandbox
from cigri.cli.settings import config
from cigri.cli.status import status
from cigri.cli.tokens import token
from cigri.cli.users import user_mapping, user_priority


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cigri")
def cli() -> None:
    """Administer a cigri grid: database, configuration, clusters, daemons.

    Configuration comes from /etc/cigri/cigri.conf, or the file named by CIGRI_CONF; any key can be
    overridden by a CIGRI_<KEY> environment variable.
    """


for command in (db, config, jdl, cluster, user_priority, user_mapping, token, status, demo,
                sandbox, maintenance, metrics):
    cli.add_command(command)
cluster.add_command(cluster_token)  # `cigri cluster token NAME`


def main() -> None:
    """`cigri`, inside the error boundary: every failure is one line (`cigri.cli.failures`)."""
    run_click("cigri", cli)
