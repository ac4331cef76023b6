"""The dashboard's rules page in a real headless Chromium over a real PostgreSQL (issue 13): it
shows the viewer's rule with its trigger, actions and last firing, its Disable button (a CSRF
form) disables it, and another user's rule is neither listed nor changeable."""

from __future__ import annotations

import threading
from datetime import timedelta

from playwright.sync_api import Page, expect
from sqlalchemy import Engine, select

from cigri.config import build_settings
from cigri.daemons.automations import AutomationsDaemon
from cigri.daemons.base import DaemonContext
from cigri.domain.clock import FakeClock
from cigri.domain.states import EventClass
from cigri.storage.automations import add_rule
from cigri.storage.campaigns import create_campaign
from cigri.storage.events import record_event
from cigri.storage.tables import automation_rules
from tests.browser.browser_helpers import Site, assert_refused, sign_in

USER = "alice"


def _rule(engine: Engine, clock: FakeClock, owner: str, name: str) -> int:
    with engine.begin() as conn:
        return add_rule(conn, owner=owner, admin=False, now=clock.now(), source={
            "name": name, "trigger": {"kind": "event", "code": "EXIT_ERROR"},
            "actions": ["pause", {"do": "notify", "message": "failing"}],
            "cooldown_minutes": 30})


def _enabled(engine: Engine, rule_id: int) -> bool:
    with engine.begin() as conn:
        return bool(conn.execute(select(automation_rules.c.enabled)
                                 .where(automation_rules.c.id == rule_id)).scalar_one())


def test_the_rules_page_shows_my_rule_and_its_firing_and_disables_it(
        site: Site, page: Page, pg_engine: Engine, clock: FakeClock) -> None:
    with pg_engine.begin() as conn:
        campaign = create_campaign(conn, grid_user=USER, name="sim", jobs_type="normal", jdl={},
                                   properties={}, params=["a"], now=clock.now())
    mine = _rule(pg_engine, clock, USER, "pause on failure")
    theirs = _rule(pg_engine, clock, "bob", "bob's rule")
    daemon = AutomationsDaemon(DaemonContext(
        settings=build_settings({}), engine=pg_engine, clock=clock, stop=threading.Event(),
        oar_factory=lambda cluster: None),  # type: ignore[arg-type,return-value]
        interval=timedelta(0), owner="test-automations")
    daemon.run_once()
    with pg_engine.begin() as conn:
        record_event(conn, class_=EventClass.JOB, code="EXIT_ERROR", campaign_id=campaign,
                     now=clock.now())
    daemon.run_once()

    sign_in(page, site, site.token(USER))
    page.get_by_role("link", name="Rules").click()
    row = page.locator(f"tr[data-rule='{mine}']")
    expect(row).to_contain_text("pause on failure")
    expect(row).to_contain_text("event EXIT_ERROR")
    expect(row).to_contain_text("pause, notify")
    expect(row).to_contain_text("30 min")
    expect(row).to_contain_text(f"campaign {campaign}: EXIT_ERROR event")
    expect(row).to_contain_text(f"pause: campaign {campaign} paused")
    expect(row.locator(".tag")).to_have_text("enabled")
    expect(page.locator(f"tr[data-rule='{theirs}']")).to_have_count(0)

    page.get_by_role("button", name=f"Disable rule {mine}").click()
    expect(page.locator("[role=status]")).to_have_text(f"Rule {mine} disabled")
    expect(row.locator(".tag")).to_have_text("disabled")
    assert not _enabled(pg_engine, mine)
    page.get_by_role("button", name=f"Enable rule {mine}").click()
    expect(row.locator(".tag")).to_have_text("enabled")
    assert _enabled(pg_engine, mine)

    # another user's rule: the form's endpoint refuses it, and without the CSRF token too
    assert_refused(page, site, f"/ui/rules/{theirs}/disable")
    assert_refused(page, site, f"/ui/rules/{theirs}/remove")
    assert _enabled(pg_engine, theirs)
