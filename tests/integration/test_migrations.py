"""The Alembic migrations build exactly the schema that `cigri.storage.tables` describes."""

from __future__ import annotations

from datetime import UTC, datetime

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


def test_0012_links_the_campaigns_of_existing_schedules_from_their_announcement(
        db_url: str) -> None:
    """Campaigns a schedule submitted before 0012 get its id from their NEW_CAMPAIGN event;
    a campaign without the text, or naming a schedule that is gone, links nothing."""
    from alembic import command
    from sqlalchemy import insert, text

    from cigri.storage.db import make_engine
    from cigri.storage.migrate import alembic_config
    from cigri.storage.tables import campaign_schedules, events

    when = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    command.downgrade(alembic_config(db_url), "0011")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(campaign_schedules).values(
                id=5, owner="alice", name="nightly", definition="{}", created_at=when))
            for campaign in (1, 2, 3):
                conn.execute(text(
                    "INSERT INTO campaigns (id, grid_user, state, type, nb_jobs) "
                    "VALUES (:id, 'alice', 'terminated', 'normal', 0)"), {"id": campaign})
            for campaign, tail in ((1, "; from schedule 5"), (2, ""), (3, "; from schedule 9")):
                conn.execute(insert(events).values(
                    class_="notify", code="NEW_CAMPAIGN", state="closed", campaign_id=campaign,
                    date_open=when, date_closed=when,
                    message=f"Campaign {campaign} submitted with 3 tasks{tail}"))
        upgrade(db_url)
        with engine.begin() as conn:
            linked = dict(conn.execute(text("SELECT id, schedule_id FROM campaigns")).all())
        assert linked == {1: 5, 2: None, 3: None}
    finally:
        engine.dispose()
