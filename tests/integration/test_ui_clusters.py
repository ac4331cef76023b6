"""The dashboard's clusters page through Flask's test client over a real database: each
cluster's usage over the last 24 hours as an inline SVG chart whose words carry the samples'
figures (averaged per 15 minutes, so a day of one-minute samples stays 97 bars), and the open
cluster-wide events an admin closes there (a non-admin sees no button and is refused)."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from sqlalchemy import Engine, select

from cigri.domain.clock import FakeClock
from cigri.domain.stats import UsageSample
from cigri.storage.events import is_cluster_blacklisted, record_event
from cigri.storage.stats import record_grid_usage
from cigri.storage.tables import events
from tests.integration.api_helpers import make_api

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
DAHU, LUKE = 1, 2  # make_api's clusters


def _sample(engine: Engine, clock: FakeClock, cluster_id: int, at: timedelta, *, cigri: int,
            used: int, unavailable: int = 12) -> None:
    with engine.begin() as conn:
        record_grid_usage(conn, [UsageSample(
            cluster_id=cluster_id, max_resources=512, used_resources=used,
            unavailable_resources=unavailable, used_by_cigri=cigri)], now=clock.now() - at)


def _figure(text: str, cluster: str) -> str:
    return text.split(f'data-usage="{cluster}"', 1)[1].split("</figure>", 1)[0]


def test_the_clusters_page_charts_the_last_day_of_usage(engine: Engine,
                                                         clock: FakeClock) -> None:
    api = make_api(engine, clock)
    clock.advance(timedelta(days=2, minutes=7))  # 00:07: the periods are 00:00, 00:15, ...
    for minutes, cigri in ((66, 90), (62, 100), (61, 110)):  # 23:01, 23:05, 23:06: one period
        _sample(engine, clock, DAHU, timedelta(minutes=minutes), cigri=cigri, used=300)
    _sample(engine, clock, DAHU, timedelta(0), cigri=50, used=250, unavailable=0)
    _sample(engine, clock, DAHU, timedelta(hours=30), cigri=500, used=500)  # out of the window
    for minute in range(25 * 60):  # a sample a minute on luke
        _sample(engine, clock, LUKE, timedelta(minutes=minute), cigri=10, used=20, unavailable=2)

    text = api.call("GET", "/ui/clusters").text
    dahu = _figure(text, "dahu")
    assert "<svg" in dahu and 'role="img"' in dahu
    assert ("<title>23:00–23:15 UTC: 100 by cigri, 200 by others, 12 unavailable, 200 free of "
            "512</title>") in dahu
    assert "00:00: cigri 50 · others 200 · unavailable 0 · free 262 of 512" in dahu
    summary = re.search(r'<title id="usage-1">([^<]+)</title>', dahu)
    assert summary is not None
    words = html.unescape(summary.group(1))
    assert "2 periods of 15 min" in words and "Mean: 75 by cigri, 200 by others" in words
    assert "cigri's peak: 100 at 23:00 UTC" in words
    assert dahu.count("<g><title>") == 2
    luke = _figure(text, "luke")
    assert luke.count("<g><title>") == 97  # 1,440 samples in the window, one bar per period
    assert "10 by cigri, 10 by others, 2 unavailable, 490 free of 512" in luke

    clock.advance(timedelta(days=2))
    assert "no sample in the last 24 hours" in _figure(api.call("GET", "/ui/clusters").text,
                                                       "dahu")


def test_admins_close_cluster_wide_events_on_the_clusters_page(engine: Engine,
                                                                clock: FakeClock) -> None:
    api = make_api(engine, clock)
    with engine.begin() as conn:
        cause = record_event(conn, class_="cluster", code="CONNECTION_REFUSED", cluster_id=DAHU,
                             now=clock.now(), message="connection refused")
        blacklist = record_event(conn, class_="cluster", code="BLACKLIST", cluster_id=DAHU,
                                 parent=cause, now=clock.now())

    page = api.call("GET", "/ui/clusters").text
    assert "CONNECTION_REFUSED" in page and "Lift blacklist" not in page
    assert f'/ui/events/{blacklist}/fix' not in page
    token = CSRF.search(api.call("GET", "/ui/settings").text)  # the page has no form for her
    assert token is not None
    refused = api.call("POST", f"/ui/events/{blacklist}/fix",
                       data={"csrf_token": token.group(1)})
    assert refused.status_code == 403 and "only an admin may close it" in refused.text

    admin = api.call("GET", "/ui/clusters", user="root").text
    assert f'aria-label="Close event {cause} (CONNECTION_REFUSED) on dahu"' in admin
    assert f'aria-label="Lift blacklist event {blacklist} (BLACKLIST) on dahu"' in admin
    admin_token = CSRF.search(admin)
    assert admin_token is not None
    lifted = api.call("POST", f"/ui/events/{blacklist}/fix", user="root",
                      data={"csrf_token": admin_token.group(1), "next": "/ui/clusters"})
    assert lifted.status_code == 303
    assert lifted.headers["Location"].startswith("/ui/clusters?notice=")
    closed = api.call("POST", f"/ui/events/{cause}/fix", user="root",
                      data={"csrf_token": admin_token.group(1), "next": "/ui/clusters"})
    assert closed.status_code == 303
    with engine.begin() as conn:
        assert not is_cluster_blacklisted(conn, DAHU)
        assert set(conn.execute(select(events.c.state)).scalars()) == {"closed"}
    assert "CONNECTION_REFUSED" not in api.call("GET", "/ui/clusters", user="root").text
