"""The dashboard's schedules page through Flask's test client over a real database (issue 13):
my schedules and the campaigns they created, not another user's; Pause and Resume forms; another
user's schedule refused; an admin sees everyone's with the owner."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import Engine, select

from cigri.config import build_settings
from cigri.daemons.schedules import run_due_schedules
from cigri.domain.clock import FakeClock
from cigri.storage.schedules import add_schedule
from cigri.storage.tables import campaign_schedules
from tests.integration.api_helpers import Api, jdl, make_api

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _schedule(api: Api, owner: str, name: str, **when: object) -> int:
    with api.engine.begin() as conn:
        return add_schedule(conn, owner=owner, now=api.clock.now(),
                            source={"jdl": jdl(f"{name}-{{DATE}}", nb_jobs=2), **when})


def _enabled(engine: Engine, schedule_id: int) -> bool:
    with engine.begin() as conn:
        return bool(conn.execute(select(campaign_schedules.c.enabled).where(
            campaign_schedules.c.id == schedule_id)).scalar_one())


def _token(api: Api, user: str) -> str:
    found = CSRF.search(api.call("GET", "/ui/schedules", user=user).text)
    assert found is not None
    return found.group(1)


def test_the_schedules_page_shows_mine_and_the_campaigns_they_created(
        engine: Engine, clock: FakeClock) -> None:
    api = make_api(engine, clock)
    mine = _schedule(api, "alice", "nightly", every_minutes=60, time_zone="Europe/Paris")
    cron = _schedule(api, "alice", "weekly", cron="0 3 * * 1", skip_if_running=True)
    theirs = _schedule(api, "bob", "bobs", every_minutes=30)
    by_hand = api.submit(jdl("nightly-by-hand"))
    run_due_schedules(engine, build_settings({}), clock.now())
    clock.advance(timedelta(hours=1))
    run_due_schedules(engine, build_settings({}), clock.now())

    text = api.call("GET", "/ui/schedules").text
    row = text.split(f'data-schedule="{mine}"', 1)[1].split("</tr>", 1)[0]
    assert "<td>every</td>" in row and "<code>60 min</code>" in row
    assert "Europe/Paris" in row and "<td>no</td>" in row and "active" in row
    links = re.findall(r'href="/ui/campaigns/(\d+)"', row)
    assert len(links) == 2 and str(by_hand) not in links  # its two runs, newest first
    assert int(links[0]) > int(links[1]) and "2 runs" in row
    cron_row = text.split(f'data-schedule="{cron}"', 1)[1].split("</tr>", 1)[0]
    assert "<td>cron</td>" in cron_row and "<code>0 3 * * 1</code>" in cron_row
    assert "none yet" in cron_row and "<td>yes</td>" in cron_row
    assert f'data-schedule="{theirs}"' not in text and "bobs" not in text

    admin = api.call("GET", "/ui/schedules", user="root").text
    assert f'data-schedule="{theirs}"' in admin and "<td>bob</td>" in admin


def test_pause_and_resume_are_forms_and_another_users_schedule_is_refused(
        engine: Engine, clock: FakeClock) -> None:
    api = make_api(engine, clock)
    mine = _schedule(api, "alice", "nightly", cron="0 2 * * *")
    theirs = _schedule(api, "bob", "bobs", cron="0 2 * * *")
    token = _token(api, "alice")
    assert api.call("POST", f"/ui/schedules/{mine}/pause", data={}).status_code == 403
    assert _enabled(engine, mine)
    paused = api.call("POST", f"/ui/schedules/{mine}/pause", data={"csrf_token": token})
    assert paused.status_code == 303 and "paused" in paused.headers["Location"]
    assert not _enabled(engine, mine)
    assert "Resume schedule" in api.call("GET", "/ui/schedules").text
    api.call("POST", f"/ui/schedules/{mine}/resume", data={"csrf_token": token})
    assert _enabled(engine, mine)

    for action in ("pause", "remove"):
        refused = api.call("POST", f"/ui/schedules/{theirs}/{action}",
                           data={"csrf_token": token})
        assert refused.status_code == 403 and "does not belong to you" in refused.text
    assert _enabled(engine, theirs)
    assert api.call("POST", "/ui/schedules/99999/pause",
                    data={"csrf_token": token}).status_code == 404
    assert api.call("POST", f"/ui/schedules/{2**40}/pause",
                    data={"csrf_token": token}).status_code == 404
    removed = api.call("POST", f"/ui/schedules/{mine}/remove", data={"csrf_token": token})
    assert removed.status_code == 303
    with engine.begin() as conn:
        assert conn.execute(select(campaign_schedules.c.id)).scalars().all() == [theirs]
