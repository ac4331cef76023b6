"""The dashboard in a real headless Chromium, over a real PostgreSQL and the OAR emulator: sign
in with a token, ownership, live progress without reload, pause, fix-and-resubmit, CSRF, and
keyboard reach of every action."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine, insert, select

from cigri.domain.clock import FakeClock
from cigri.storage.tables import campaigns, jobs
from tests.browser.browser_helpers import ACTIONS, Site, serve, sign_in, tab_through
from tests.integration.engine_helpers import (
    USER,
    Grid,
    job_rows,
    new_campaign,
    queue_tasks,
    start_grid,
)


@pytest.fixture
def grid(pg_engine: Engine, clock: FakeClock) -> Iterator[Grid]:
    with start_grid(pg_engine, clock, clusters=1, nodes=2, cores=2) as found:
        yield found


@pytest.fixture
def site(grid: Grid) -> Iterator[Site]:
    with serve(grid.engine, grid.clock) as found:
        yield found


def _state(engine: Engine, campaign_id: int) -> str:
    with engine.begin() as conn:
        return str(conn.execute(select(campaigns.c.state)
                                .where(campaigns.c.id == campaign_id)).scalar_one())


def test_sign_in_with_a_token_shows_my_campaigns_and_a_403_page_on_another_users(
        grid: Grid, site: Site, page: Page) -> None:
    mine = new_campaign(grid, ["a", "b"])
    with grid.engine.begin() as conn:
        conn.execute(campaigns.update().where(campaigns.c.id == mine).values(name="my-campaign"))
    theirs = new_campaign(grid, ["x"])
    with grid.engine.begin() as conn:
        conn.execute(campaigns.update().where(campaigns.c.id == theirs)
                     .values(grid_user="bob", name="bobs-campaign"))

    page.goto(f"{site.url}/ui/campaigns")
    expect(page).to_have_url(re.compile(r"/ui/login"))  # nobody signed in: to the form
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("not valid")

    sign_in(page, site, site.token(USER))
    rows = page.locator("#campaign-rows tr[data-campaign]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("my-campaign")
    expect(page.locator("body")).not_to_contain_text("bobs-campaign")
    cookie = next(c for c in page.context.cookies() if c["name"] == "cigri_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > 0

    page.click("text=my-campaign")
    expect(page.locator("h1")).to_contain_text("my-campaign")

    response = page.goto(f"{site.url}/ui/campaigns/{theirs}")
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_contain_text("403")
    expect(page.locator("[role=alert]")).to_contain_text("does not belong to you")

    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.goto(f"{site.url}/ui/campaigns/{mine}")
    expect(page).to_have_url(re.compile(r"/ui/login"))


def test_progress_moves_without_reload_and_the_pause_button_pauses(
        grid: Grid, site: Site, page: Page) -> None:
    # cigri's clock on the emulator's, so the jobs' OAR times fall in the throughput window
    grid.clock.advance(datetime.fromtimestamp(grid.emu_clock.time(), UTC) - grid.clock.now())
    campaign = new_campaign(grid, [f"t{i} sleep 10" for i in range(8)])
    queue_tasks(grid, campaign)
    grid.runner().run(loops=1)  # 3 jobs submitted (the initial tap)
    grid.advance(1)
    grid.updater().run(loops=1)
    sign_in(page, site, site.token(USER))
    page.goto(f"{site.url}/ui/campaigns/{campaign}")
    expect(page.locator("#progress")).to_have_attribute("data-done", "0")
    expect(page.locator(".verdict")).to_contain_text("Progressing")
    page.evaluate("window.notReloaded = true")
    bar = page.locator("#progress span").first
    assert bar.evaluate("el => parseFloat(el.style.width)") == 0

    grid.advance(15)  # the emulated jobs end
    grid.updater().run(loops=1)
    assert sum(1 for row in job_rows(grid.engine, campaign) if row.state == "terminated") == 3

    expect(page.locator("#progress")).to_have_attribute("data-done", "3", timeout=10_000)
    assert bar.evaluate("el => parseFloat(el.style.width)") == 37.5
    assert page.evaluate("window.notReloaded") is True  # the fragment moved, not the page
    expect(page.locator(".spark svg")).to_have_attribute("aria-label", re.compile(r": 3 in all"))

    page.get_by_role("button", name=f"Pause campaign {campaign}").click()
    expect(page.locator(".notice")).to_contain_text(f"Campaign {campaign} paused")
    expect(page.locator("#campaign-state")).to_have_text("paused")
    assert _state(grid.engine, campaign) == "paused"
    page.get_by_role("button", name=f"Resume campaign {campaign}").click()
    expect(page.locator("#campaign-state")).to_have_text("in treatment")
    assert _state(grid.engine, campaign) == "in_treatment"


def test_fix_with_resubmit_runs_the_task_again(grid: Grid, site: Site, page: Page) -> None:
    campaign = new_campaign(grid, ["ok sleep 5", "bad sleep 5 exit 3"])
    queue_tasks(grid, campaign)
    grid.runner().run(loops=1)
    grid.advance(10)
    grid.updater().run(loops=1)
    failed = next(row for row in job_rows(grid.engine, campaign) if row.state == "event")
    sign_in(page, site, site.token(USER))
    page.goto(f"{site.url}/ui/campaigns/{campaign}/tasks/{failed.param_id}")
    expect(page.locator("#history tr[data-job]")).to_have_count(1)
    expect(page.locator("#history")).to_contain_text("EXIT_ERROR")

    page.goto(f"{site.url}/ui/campaigns/{campaign}")
    expect(page.locator(".verdict")).to_contain_text("need you (EXIT_ERROR on c1")
    # The exit error, and the blacklist of the campaign on c1 it caused.
    expect(page.locator("#events tr[data-event]")).to_have_count(2)
    page.locator("#events tr", has_text="EXIT_ERROR").get_by_role(
        "button", name=re.compile(r"Fix event \d+ and resubmit")).click()
    expect(page.locator(".notice")).to_contain_text("task resubmitted")
    expect(page.locator("#events")).not_to_contain_text("EXIT_ERROR")
    page.goto(f"{site.url}/ui/campaigns/{campaign}/tasks/{failed.param_id}")
    expect(page.locator("#task-state")).to_have_text("waiting resubmission")
    page.goto(f"{site.url}/ui/campaigns/{campaign}")
    page.locator("#events tr", has_text="BLACKLIST").get_by_role(
        "button", name=re.compile(r"Fix event \d+$")).click()  # lift the blacklist on c1
    expect(page.locator("#events")).to_contain_text("No open event")

    queue_tasks(grid, campaign)  # the meta-scheduler's part
    grid.runner().run(loops=1)
    grid.advance(1)
    grid.updater().run(loops=1)
    page.goto(f"{site.url}/ui/campaigns/{campaign}/tasks/{failed.param_id}")
    history = page.locator("#history tr[data-job]")
    expect(history).to_have_count(2)
    expect(history.nth(1)).to_contain_text("running")
    expect(page.locator("#task-state")).to_have_text("running")


def test_a_form_posted_without_its_csrf_token_is_refused(
        grid: Grid, site: Site, page: Page) -> None:
    campaign = new_campaign(grid, ["a"])
    sign_in(page, site, site.token(USER))
    page.goto(f"{site.url}/ui/campaigns/{campaign}")
    page.evaluate("""() => document.querySelectorAll('form input[name=csrf_token]')
                            .forEach(input => input.remove())""")
    page.get_by_role("button", name=f"Pause campaign {campaign}").click()
    expect(page.locator("h1")).to_contain_text("403")
    expect(page.locator("[role=alert]")).to_contain_text("CSRF")
    assert _state(grid.engine, campaign) == "in_treatment"
    # A forged token, sent with the browser's own cookie, is refused too.
    response = page.request.post(f"{site.url}/ui/campaigns/{campaign}/cancel",
                                 form={"csrf_token": "forged"})
    assert response.status == 403
    assert _state(grid.engine, campaign) == "in_treatment"


def test_keyboard_navigation_reaches_every_action(grid: Grid, site: Site, page: Page) -> None:
    campaign = new_campaign(grid, ["ok sleep 5", "bad sleep 5 exit 3"])
    queue_tasks(grid, campaign)
    grid.runner().run(loops=1)
    grid.advance(10)
    grid.updater().run(loops=1)
    with grid.engine.begin() as conn:  # one more job, running, so every kind of row shows
        conn.execute(insert(jobs).values(campaign_id=campaign, param_id=None, state="running",
                                         cluster_id=grid.clusters[0].id))
    sign_in(page, site, site.token(USER))
    for path in ("/ui/campaigns", f"/ui/campaigns/{campaign}", "/ui/clusters", "/ui/settings",
                 f"/ui/campaigns/{campaign}/events?all=1"):
        page.goto(site.url + path)
        every = page.evaluate(ACTIONS)
        assert any(a.startswith("button") for a in every) or path == "/ui/clusters"
        reached = tab_through(page)
        missing = [a for a in every if a not in reached]
        assert missing == [], f"{path}: Tab never reaches {missing}"
    # and Enter on a focused button acts
    page.goto(f"{site.url}/ui/campaigns/{campaign}")
    page.get_by_role("button", name=f"Pause campaign {campaign}").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#campaign-state")).to_have_text("paused")
