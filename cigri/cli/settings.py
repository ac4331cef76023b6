"""`cigri config`: check and show the configuration."""

from __future__ import annotations

import click

from cigri.app import load
from cigri.cli.failures import check_database, redacted
from cigri.config import describe_settings


@click.group()
def config() -> None:
    """Configuration: check it, show it, list every key."""


@config.command("check")
def check() -> None:
    """Load and validate the configuration, connect to the database and check that its schema
    is at this version's revision; print OK, or the problem (exit 1)."""
    settings = load()
    revision = check_database(settings.database_url)
    click.echo(f"configuration OK; database {redacted(settings.database_url)} reachable, "
               f"schema at revision {revision} (current)")


@config.command("keys")
def keys() -> None:
    """List every configuration key with its type, default and meaning."""
    for name, kind, default, help_text in describe_settings():
        click.echo(f"{name} ({kind}, default {default!r})\n    {help_text}")
