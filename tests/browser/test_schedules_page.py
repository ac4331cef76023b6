"""The dashboard's schedules page in a real headless Chromium over a real PostgreSQL (issue 13):
it shows my schedule (kind, expression, time zone, the campaign it created) and not another
user's; its Pause button (a CSRF form) pauses it and Resume resumes it; another user's schedule
is refused (403)."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from sqlalchemy import Engine, select

from cigri.config import build_settings
from cigri.daemons.schedules import run_due_schedules
from cigri.domain.clock import FakeClock
from cigri.storage.clusters import add_cluster
from cigri.storage.schedules import add_schedule
from cigri.storage.tables import campaign_schedules
from tests.browser.browser_helpers import Site, assert_refused, sign_in

USER = "alice"


def _schedule(engine: Engine, clock: FakeClock, owner: str, name: str) -> int:
    with engine.begin() as conn:
        return add_schedule(conn, owner=owner, now=clock.now(), source={
            "jdl": {"name": name, "nb_jobs": 2, "clusters": {"dahu": {"exec_file": "run.sh"}}},
            "every_minutes": 90, "time_zone": "Europe/Paris"})


def _enabled(engine: Engine, schedule_id: int) -> bool:
    with engine.begin() as conn:
        return bool(conn.execute(select(campaign_schedules.c.enabled).where(
            campaign_schedules.c.id == schedule_id)).scalar_one())


def test_the_schedules_page_shows_my_schedule_and_pauses_it(
        site: Site, page: Page, pg_engine: Engine, clock: FakeClock) -> None:
    with pg_engine.begin() as conn:
        add_cluster(conn, name="dahu", api_url="http://127.0.0.1:9/oarapi/")
    mine = _schedule(pg_engine, clock, USER, "nightly-sweep")
    theirs = _schedule(pg_engine, clock, "bob", "bob-sweep")
    run_due_schedules(pg_engine, build_settings({}), clock.now())

    sign_in(page, site, site.token(USER))
    page.get_by_role("link", name="Schedules").click()
    row = page.locator(f"tr[data-schedule='{mine}']")
    expect(row).to_contain_text("nightly-sweep")
    expect(row).to_contain_text("every")
    expect(row).to_contain_text("90 min")
    expect(row).to_contain_text("Europe/Paris")
    expect(row.get_by_role("link")).to_have_count(1)
    expect(row.locator(".tag")).to_have_text("active")
    expect(page.locator(f"tr[data-schedule='{theirs}']")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("bob-sweep")

    page.get_by_role("button", name=f"Pause schedule {mine}").click()
    expect(page.locator("[role=status]")).to_have_text(f"Schedule {mine} paused")
    expect(row.locator(".tag")).to_have_text("paused")
    assert not _enabled(pg_engine, mine)
    page.get_by_role("button", name=f"Resume schedule {mine}").click()
    expect(row.locator(".tag")).to_have_text("active")
    assert _enabled(pg_engine, mine)

    # another user's schedule: the form's endpoint refuses it, with or without a CSRF token
    assert_refused(page, site, f"/ui/schedules/{theirs}/pause")
    assert_refused(page, site, f"/ui/schedules/{theirs}/remove")
    assert _enabled(pg_engine, theirs)
