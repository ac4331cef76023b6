"""Shared set-up of the dashboard's browser tests: the API application served over real HTTP in a
thread, and Debian's headless Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import Engine
from werkzeug.serving import make_server

from cigri.api import create_app
from cigri.config import build_settings
from cigri.domain.clock import FakeClock
from cigri.storage import tokens

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass
class Site:
    app: Flask
    url: str
    engine: Engine
    clock: FakeClock

    def token(self, user: str) -> str:
        with self.engine.begin() as conn:
            return tokens.create_token(conn, grid_user=user, now=self.clock.now())[1]


@contextmanager
def serve(engine: Engine, clock: FakeClock, **settings: Any) -> Iterator[Site]:
    """The whole API (JSON and dashboard) on a free port of 127.0.0.1, in a thread."""
    raw = {"ADMINS": "root", "UI_POLL_SECONDS": 0.3}
    raw.update(settings)
    app = create_app(build_settings(raw), engine, clock=clock)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(app=app, url=f"http://127.0.0.1:{server.server_port}", engine=engine,
                   clock=clock)
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, site: Site, token: str) -> None:
    page.goto(f"{site.url}/ui/")
    assert "/ui/login" in page.url
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/campaigns.*"))


def assert_refused(page: Page, site: Site, path: str) -> None:
    """A POST to another user's object's form endpoint is a 403, with a forged CSRF token and
    with the viewer's own valid one."""
    forged = page.request.post(f"{site.url}{path}", form={"csrf_token": "x"})
    assert forged.status == 403
    token = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    refused = page.request.post(f"{site.url}{path}", form={"csrf_token": token})
    assert refused.status == 403 and "does not belong to you" in refused.text()


def tab_through(page: Page, *, limit: int = 400) -> list[str]:
    """What the Tab key reaches, in order, from the top of the page (one description each)."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.evaluate("window.scrollTo(0, 0)")
    reached: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        described = page.evaluate(DESCRIBE_FOCUSED)
        if described is None or (reached and described == reached[0]):
            break
        reached.append(described)
    return reached


# One stable description of an element: tag, where it goes or posts, and its label.
DESCRIBE = """(el) => {
  const form = el.form ? el.form.getAttribute('action') : '';
  const label = el.getAttribute('aria-label') || el.textContent.trim() || el.name || el.id;
  return [el.tagName.toLowerCase(), el.getAttribute('href') || form || '', label].join(' ');
}"""
DESCRIBE_FOCUSED = f"""() => {{
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  return ({DESCRIBE})(el);
}}"""
ACTIONS = f"""() => Array.from(document.querySelectorAll(
  'a[href], button, input:not([type=hidden]), select, textarea'))
  .filter(el => el.offsetParent !== null || el.classList.contains('skip'))
  .map({DESCRIBE})"""
