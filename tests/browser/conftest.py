"""The browser tests' shared fixtures: one headless Chromium per module, a fresh page (its own
context, so its own cookies) per test, and the API served over a fresh PostgreSQL database (a
module that needs a grid behind it overrides `site`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import Engine

from cigri.domain.clock import FakeClock
from tests.browser.browser_helpers import Site, chromium, serve


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


@pytest.fixture
def site(pg_engine: Engine, clock: FakeClock) -> Iterator[Site]:
    with serve(pg_engine, clock) as found:
        yield found


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    found = context.new_page()
    yield found
    context.close()
