"""`cigri db`: create and upgrade the database schema."""

from __future__ import annotations

import click

from cigri.app import load
from cigri.storage.migrate import head_revision, upgrade


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--url", "url", metavar="URL",
              help="Database URL (postgresql://... or sqlite:///path). Default: from cigri.conf.")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade_command(url: str | None, revision: str) -> None:
    """Create the schema in an empty database, or upgrade an existing one to REVISION."""
    target = url or load().database_url
    upgrade(target, revision)
    click.echo(f"database at revision {revision if revision != 'head' else head_revision()}: "
               f"{_redact(target)}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
