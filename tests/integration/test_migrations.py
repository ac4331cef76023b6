"""The Alembic migrations build exactly the schema that `cigri.storage.tables` describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from cigri.storage.migrate import current_revision, head_revision, upgrade
from cigri.storage.tables import metadata


def test_migrations_match_table_definitions(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_database_is_at_head_revision(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()


def test_every_table_exists(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) >= set(metadata.tables)


def test_upgrade_is_idempotent(db_url: str, engine: Engine) -> None:
    upgrade(db_url)
    assert current_revision(engine) == head_revision()
