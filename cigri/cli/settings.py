"""`cigri config`: check and show the configuration."""

from __future__ import annotations

import click

from cigri.app import load
from cigri.config import describe_settings


@click.group()
def config() -> None:
    """Configuration: check it, show it, list every key."""


@config.command("check")
def check() -> None:
    """Load and validate the configuration; print every problem (exit 1) or OK."""
    settings = load()
    click.echo(f"configuration OK (database: {settings.database_url.split('@')[-1]})")


@config.command("keys")
def keys() -> None:
    """List every configuration key with its type, default and meaning."""
    for name, kind, default, help_text in describe_settings():
        click.echo(f"{name} ({kind}, default {default!r})\n    {help_text}")
