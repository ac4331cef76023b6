"""The dashboard's rules through Flask's test client over a real database: sessions (expiry,
revocation, tampering, one key for every API process), CSRF, the trusted proxy, ownership and
admin scope, task filters, tokens and cluster actions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from cigri.api import create_app
from cigri.config import build_settings
from cigri.domain.clock import FakeClock
from cigri.storage import dashboard, tokens
from cigri.storage.tables import campaigns, clusters, parameters, site_secrets
from tests.integration.api_helpers import Api, jdl, make_api

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _token(api: Api, user: str) -> str:
    with api.engine.begin() as conn:
        return tokens.create_token(conn, grid_user=user, now=api.clock.now())[1]


def _signed_in(api: Api, user: str = "alice") -> tuple[FlaskClient, str]:
    client = api.app.test_client()
    form = client.get("/ui/login")
    token = _token(api, user)
    answer = client.post("/ui/login", data={"token": token, "csrf_token": CSRF.search(
        form.text).group(1), "next": "/ui/campaigns"})  # type: ignore[union-attr]
    assert answer.status_code == 303, answer.text
    return client, token


def _csrf(client: FlaskClient, path: str) -> str:
    found = CSRF.search(client.get(path).text)
    assert found is not None
    return found.group(1)


def test_a_session_ends_when_its_token_is_revoked_or_it_expires(engine: Engine,
                                                                 clock: FakeClock) -> None:
    api = make_api(engine, clock, UI_SESSION_HOURS=2)
    client, token = _signed_in(api)
    assert client.get("/ui/campaigns").status_code == 200
    clock.advance(timedelta(hours=2, seconds=1))
    assert client.get("/ui/campaigns").headers["Location"].startswith("/ui/login")

    client, token = _signed_in(api)
    with api.engine.begin() as conn:
        found = dashboard.token_id(conn, token)
        assert found is not None
        tokens.revoke_token(conn, found, now=clock.now())
    assert client.get("/ui/campaigns").status_code == 303


def test_a_tampered_or_foreign_cookie_is_no_session(engine: Engine, clock: FakeClock) -> None:
    api = make_api(engine, clock)
    client, _ = _signed_in(api)
    cookie = client.get_cookie("cigri_ui", path="/ui/")
    assert cookie is not None
    payload, signature = cookie.value.rsplit(".", 1)
    forged = payload.replace("YWxpY2", "Ym9i") + "." + signature  # alice -> bob, same signature
    other = api.app.test_client()
    other.set_cookie("cigri_ui", forged, path="/ui/")
    assert other.get("/ui/campaigns").status_code == 303


def test_every_api_process_signs_with_the_one_stored_key(engine: Engine,
                                                         clock: FakeClock) -> None:
    api = make_api(engine, clock)
    client, _ = _signed_in(api)
    with engine.begin() as conn:
        stored = conn.execute(select(site_secrets.c.value)).scalars().all()
    assert len(stored) == 1 and len(stored[0]) >= 40
    second = create_app(build_settings({"ADMINS": "root"}), engine, clock=clock).test_client()
    cookie = client.get_cookie("cigri_ui", path="/ui/")
    assert cookie is not None
    second.set_cookie("cigri_ui", cookie.value, path="/ui/")
    assert second.get("/ui/campaigns").status_code == 200
    # A configured key wins (and the stored one no longer signs for that process).
    third = create_app(build_settings({"UI_SECRET_KEY": "k" * 40}), engine,
                       clock=clock).test_client()
    third.set_cookie("cigri_ui", cookie.value, path="/ui/")
    assert third.get("/ui/campaigns").status_code == 303


def test_forms_need_their_csrf_token_and_the_same_origin(engine: Engine,
                                                        clock: FakeClock) -> None:
    api = make_api(engine, clock)
    campaign = api.submit(jdl())
    anonymous = api.app.test_client()
    anonymous.get("/ui/login")
    refused = anonymous.post("/ui/login", data={"token": _token(api, "alice")})
    assert refused.status_code == 403 and "CSRF" in refused.text
    client, _ = _signed_in(api)
    path = f"/ui/campaigns/{campaign}/pause"
    assert client.post(path, data={}).status_code == 403
    token = _csrf(client, f"/ui/campaigns/{campaign}")
    other_site = client.post(path, data={"csrf_token": token},
                             headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 403
    with engine.begin() as conn:
        assert conn.execute(select(campaigns.c.state)).scalar_one() == "in_treatment"
    assert client.post(path, data={"csrf_token": token}).status_code == 303
    with engine.begin() as conn:
        assert conn.execute(select(campaigns.c.state)).scalar_one() == "paused"
    # Another user's token does not pass for alice's.
    bob, _ = _signed_in(api, "bob")
    bob_token = _csrf(bob, "/ui/settings")
    assert client.post(f"/ui/campaigns/{campaign}/resume",
                       data={"csrf_token": bob_token}).status_code == 403


def test_the_trusted_proxy_identifies_without_sign_in_and_still_needs_csrf(
        engine: Engine, clock: FakeClock) -> None:
    api = make_api(engine, clock)
    campaign = api.submit(jdl("proxied"))
    page = api.call("GET", "/ui/campaigns")
    assert page.status_code == 200 and "proxied" in page.text
    token = CSRF.search(api.call("GET", f"/ui/campaigns/{campaign}").text)
    assert token is not None
    assert api.call("POST", f"/ui/campaigns/{campaign}/pause", data={}).status_code == 403
    done = api.call("POST", f"/ui/campaigns/{campaign}/pause",
                    data={"csrf_token": token.group(1)})
    assert done.status_code == 303
    # The header from an untrusted address is ignored.
    untrusted = api.client.get("/ui/campaigns", headers={"X-Cigri-User": "alice"},
                               environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert untrusted.status_code == 303


def test_users_see_their_own_campaigns_admins_everybodys(engine: Engine,
                                                         clock: FakeClock) -> None:
    api = make_api(engine, clock)
    mine = api.submit(jdl("alice-one"))
    theirs = api.submit(jdl("bob-one"), user="bob")
    alice = api.call("GET", "/ui/campaigns").text
    assert "alice-one" in alice and "bob-one" not in alice
    assert api.call("GET", "/ui/campaigns?user=bob").status_code == 403
    for path in (f"/ui/campaigns/{theirs}", f"/ui/campaigns/{theirs}/live",
                 f"/ui/campaigns/{theirs}/jdl", f"/ui/campaigns/{theirs}/events",
                 f"/ui/campaigns/{theirs}/tasks/1"):
        answer = api.call("GET", path)
        assert answer.status_code == 403, path
        assert "text/html" in answer.headers["Content-Type"]
    root = api.call("GET", "/ui/campaigns", user="root").text
    assert "alice-one" in root and "bob-one" in root
    only_bob = api.call("GET", "/ui/campaigns?user=bob", user="root").text
    assert "bob-one" in only_bob and "alice-one" not in only_bob
    api.call("DELETE", f"/campaigns/{mine}")
    assert "alice-one" not in api.call("GET", "/ui/campaigns", user="root").text
    assert "alice-one" in api.call("GET", "/ui/campaigns?state=cancelled", user="root").text
    assert api.call("GET", "/ui/daemons").status_code == 403
    assert api.call("GET", "/ui/daemons", user="root").status_code == 200


def test_the_campaign_list_is_keyset_paged(engine: Engine, clock: FakeClock) -> None:
    api = make_api(engine, clock)
    ids = [api.submit(jdl(f"c{i:02d}")) for i in range(27)]
    first = api.call("GET", "/ui/campaigns").text
    assert first.count("data-campaign=") == 25
    found = re.search(r'href="([^"]+)" rel="next"', first)
    assert found is not None
    second = api.call("GET", found.group(1).replace("&amp;", "&")).text
    assert re.findall(r'data-campaign="(\d+)"', second) == [str(i) for i in ids[25:]]


def test_tasks_filter_by_state_and_search_by_parameter(engine: Engine, clock: FakeClock) -> None:
    api = make_api(engine, clock)
    campaign = api.submit(jdl(params=[f"t{i} value-{i}" for i in range(120)]))
    with engine.begin() as conn:
        dahu = conn.execute(select(clusters.c.id).where(clusters.c.name == "dahu")).scalar_one()
    api.add_job(campaign, param_id=7, cluster_id=dahu, state="running", remote_id=70)
    page = api.call("GET", f"/ui/campaigns/{campaign}").text
    assert page.count('/tasks/') >= 50 and 'rel="next"' in page
    running = api.call("GET", f"/ui/campaigns/{campaign}?task_state=running").text
    assert re.findall(r"/tasks/(\d+)\"", running) == ["7"]
    searched = api.call("GET", f"/ui/campaigns/{campaign}?q=value-11").text
    assert re.findall(r"/tasks/(\d+)\"", searched) == ["12", "111", "112", "113", "114", "115",
                                                      "116", "117", "118", "119", "120"]
    by_cluster = api.call("GET", f"/ui/campaigns/{campaign}?task_cluster=dahu").text
    assert re.findall(r"/tasks/(\d+)\"", by_cluster) == ["7"]
    assert api.call("GET", f"/ui/campaigns/{campaign}?task_state=nonsense").status_code == 400


def test_api_tokens_are_shown_once_and_revocable(engine: Engine, clock: FakeClock) -> None:
    api = make_api(engine, clock)
    client, _ = _signed_in(api)
    token = _csrf(client, "/ui/settings")
    created = client.post("/ui/settings/tokens", data={"csrf_token": token, "name": "laptop",
                                                       "expires_in_days": "30"})
    assert created.status_code == 201
    secret = re.search(r'<pre id="new-token">([^<]+)</pre>', created.text)
    assert secret is not None
    with engine.begin() as conn:
        assert tokens.authenticate_token(conn, secret.group(1), now=clock.now()) == "alice"
        laptop = next(t for t in tokens.list_tokens(conn, grid_user="alice")
                      if t.name == "laptop")
    assert secret.group(1) not in client.get("/ui/settings").text
    revoked = client.post(f"/ui/settings/tokens/{laptop.id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 303
    with engine.begin() as conn:
        assert tokens.authenticate_token(conn, secret.group(1), now=clock.now()) is None


def test_only_admins_disable_clusters(engine: Engine, clock: FakeClock) -> None:
    api = make_api(engine, clock)
    token = CSRF.search(api.call("GET", "/ui/settings").text)
    assert token is not None
    answer = api.call("POST", "/ui/clusters/1/disable", data={"csrf_token": token.group(1)})
    assert answer.status_code == 403
    admin = CSRF.search(api.call("GET", "/ui/clusters", user="root").text)
    assert admin is not None
    done = api.call("POST", "/ui/clusters/1/disable", user="root",
                    data={"csrf_token": admin.group(1)})
    assert done.status_code == 303
    with engine.begin() as conn:
        assert conn.execute(select(clusters.c.enabled).where(clusters.c.id == 1)).scalar_one() \
            is False
    assert "disabled" in api.call("GET", "/ui/clusters", user="root").text


def test_the_campaign_list_reads_the_same_figures_as_the_stats_route(
        pg_engine: Engine, clock: FakeClock) -> None:
    """The list's batched read of the maintained sums (`many_campaign_cluster_stats`) gives each
    campaign exactly what `GET /campaigns/<id>/stats` computes from them, and the open-event
    counts stop at their cap."""
    from cigri.storage.events import record_event
    from cigri.storage.stats import campaign_cluster_stats, many_campaign_cluster_stats

    api = make_api(pg_engine, clock)
    first, second, idle = (api.submit(jdl(f"c{i}", nb_jobs=20)) for i in range(3))
    for campaign, states in ((first, ["terminated"] * 5 + ["running"] * 2 + ["event"]),
                             (second, ["terminated", "launching"])):
        with pg_engine.begin() as conn:
            params = conn.execute(select(parameters.c.id).where(
                parameters.c.campaign_id == campaign).order_by(parameters.c.id)).scalars().all()
        for index, state in enumerate(states):
            job = api.add_job(campaign, param_id=params[index], cluster_id=1 + index % 2,
                              state=state,
                              start_time=clock.now() - timedelta(minutes=5 + index),
                              stop_time=clock.now() if state == "terminated" else None)
            if state == "event":
                with pg_engine.begin() as conn:
                    for _ in range(4):
                        record_event(conn, class_="job", code="EXIT_ERROR", job_id=job,
                                     campaign_id=campaign, cluster_id=1, now=clock.now())
    with pg_engine.begin() as conn:
        batched = many_campaign_cluster_stats(conn, [first, second, idle], now=clock.now(),
                                              window_seconds=3600)
        assert [s.terminated for s in batched[first]] == [3, 2, 5]
        assert batched[first][-1].failures == 4 and batched[first][-1].active == 2
        for campaign in (first, second, idle):
            assert batched[campaign] == campaign_cluster_stats(
                conn, campaign, now=clock.now(), window_seconds=3600)
        assert dashboard.open_event_counts(conn, [first, second], cap=3) == {first: 3, second: 0}
        assert dashboard.open_event_counts(conn, [first], cap=100) == {first: 4}


def test_a_search_looks_at_a_bounded_window_and_offers_to_go_on(
        engine: Engine, clock: FakeClock, monkeypatch: Any) -> None:
    from cigri.api.ui import views

    monkeypatch.setattr(views, "TEXT_WINDOW", 30)
    api = make_api(engine, clock)
    campaign = api.submit(jdl(params=[f"t{i} {'needle' if i in (5, 70) else 'hay'}"
                                      for i in range(100)]))
    first = api.call("GET", f"/ui/campaigns/{campaign}?q=needle").text
    assert re.findall(r"/tasks/(\d+)\"", first) == ["6"]
    assert "stopped after looking at" in first
    further = re.search(r'href="([^"]+)" rel="next">Search further', first)
    assert further is not None
    second = api.call("GET", further.group(1).replace("&amp;", "&")).text  # tasks 31-60
    assert re.findall(r"/tasks/(\d+)\"", second) == []
    third_link = re.search(r'href="([^"]+)" rel="next"', second)
    assert third_link is not None
    third = api.call("GET", third_link.group(1).replace("&amp;", "&")).text  # tasks 61-90
    assert re.findall(r"/tasks/(\d+)\"", third) == ["71"]


def test_settings_subscribe_an_apprise_url_shown_masked_and_removed_by_id(
        engine: Engine, clock: FakeClock) -> None:
    """The dashboard offers the Apprise channel, checks the URL as the API does, never prints
    its secret back (listing or hidden field), and unsubscribes by id, only the viewer's own."""
    from cigri.storage import subscriptions

    api = make_api(engine, clock)
    client, _ = _signed_in(api)
    token = _csrf(client, "/ui/settings")
    bad = client.post("/ui/settings/subscriptions", data={
        "csrf_token": token, "type": "apprise", "identity": "nosuch://x/y", "severity": "low"})
    assert bad.status_code == 400 and "Invalid Apprise URL" in bad.text
    secret = "T0KENsecretVALUE"
    url = f"slack://TA1B2C3D4/BA1B2C3D4/{secret}"
    added = client.post("/ui/settings/subscriptions", data={
        "csrf_token": token, "type": "apprise", "identity": url, "severity": "low"},
        follow_redirects=True)
    assert added.status_code == 200 and secret not in added.text
    page = client.get("/ui/settings").text
    assert "apprise" in page and secret not in page
    with engine.begin() as conn:
        (mine,) = subscriptions.list_subscriptions(conn, grid_user="alice")
    assert mine.identity == url
    bob, _ = _signed_in(api, "bob")
    stolen = bob.post("/ui/settings/subscriptions/remove",
                      data={"csrf_token": _csrf(bob, "/ui/settings"), "id": str(mine.id)})
    assert stolen.status_code == 404
    removed = client.post("/ui/settings/subscriptions/remove",
                          data={"csrf_token": token, "id": str(mine.id)})
    assert removed.status_code == 303
    with engine.begin() as conn:
        assert subscriptions.list_subscriptions(conn, grid_user="alice") == []
