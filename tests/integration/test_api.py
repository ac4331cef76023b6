"""The REST API over a real database: v3 paths and shapes, and each v3 bug the port fixes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, insert, select

from cigri.domain.clock import FakeClock
from cigri.storage.tables import bag_of_tasks, campaigns, events, jobs, parameters
from tests.integration.api_helpers import Api, jdl, make_api


@pytest.fixture
def api(engine: Engine, clock: FakeClock) -> Iterator[Api]:
    yield make_api(engine, clock)


@pytest.fixture
def pg_api(pg_engine: Engine, clock: FakeClock) -> Iterator[Api]:
    yield make_api(pg_engine, clock)


def _task_ids(api: Api, campaign_id: int) -> list[int]:
    with api.engine.begin() as conn:
        return list(conn.execute(select(parameters.c.id).where(
            parameters.c.campaign_id == campaign_id).order_by(parameters.c.id)).scalars())


def test_submit_returns_the_campaign_summary_with_its_location(api: Api) -> None:
    response = api.call("POST", "/campaigns", json=jdl("povray", nb_jobs=3))
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/campaigns/{body['id']}"
    assert {"id", "name", "user", "state", "has_events", "submission_time", "total_jobs",
            "finished_jobs", "links"} <= set(body)
    assert (body["name"], body["user"], body["state"], body["total_jobs"]) == (
        "povray", "alice", "in_treatment", 3)
    assert response.get_data(as_text=True).endswith("\n")


def test_nb_jobs_and_params_make_the_tasks(api: Api) -> None:
    numbered = api.submit(jdl(nb_jobs=3))
    named = api.submit(jdl("p", params=["x 1", "y 2"]))
    items = api.call("GET", f"/campaigns/{numbered}/jobs").get_json()["items"]
    assert [(i["name"], i["parameters"], i["state"]) for i in items] == [
        ("0", "0", "pending"), ("1", "1", "pending"), ("2", "2", "pending")]
    items = api.call("GET", f"/campaigns/{named}/jobs").get_json()["items"]
    assert [(i["name"], i["parameters"]) for i in items] == [("x", "x 1"), ("y", "y 2")]


@pytest.mark.parametrize(("document", "expected"), [
    pytest.param({"clusters": {"dahu": {"exec_file": "e"}}, "nb_jobs": 1},
                 "Error submitting campaign: JDL file does not contain mandatory field 'name'",
                 id="no-name"),
    pytest.param({"name": "n", "clusters": {"dahu": {"exec_file": "e"}}},
                 "No parameters for your campaign are defined.", id="no-parameters"),
    pytest.param({"name": "n", "clusters": {"nowhere": {"exec_file": "e"}}, "nb_jobs": 1},
                 "unknown cluster 'nowhere'", id="unknown-cluster"),
    pytest.param({"name": "n", "clusters": {"dahu": {"exec_file": "e"}},
                  "params": ["same 1", "same 2"]}, "duplicate task name 'same'",
                 id="duplicate-task-names"),
])
def test_bad_jdls_are_refused_and_create_nothing(api: Api, document: dict[str, object],
                                                 expected: str) -> None:
    response = api.call("POST", "/campaigns", json=document)
    assert response.status_code == 400
    body = response.get_json()
    assert (body["status"], body["title"]) == (400, "Error")
    assert expected in body["message"]
    with api.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(campaigns)).scalar_one() == 0


def test_a_param_file_path_is_never_opened_by_the_server(api: Api) -> None:
    response = api.call("POST", "/campaigns", json=jdl(param_file="/etc/passwd"))
    assert response.status_code == 400
    assert "read by the client" in response.get_json()["message"]


def test_streamed_submission_takes_the_lines_after_the_jdl(api: Api) -> None:
    body = '{"name":"s","clusters":{"dahu":{"exec_file":"e"}}}\n' + "".join(
        f"t{i} {i}\n" for i in range(500))
    response = api.call("POST", "/campaigns", data=body, content_type="text/plain")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["total_jobs"] == 500


def test_stored_jdl_is_expanded(api: Api) -> None:
    campaign_id = api.submit(jdl(walltime="00:10:00", nb_jobs=2))
    stored = api.call("GET", f"/campaigns/{campaign_id}/jdl").get_json()
    cluster = stored["clusters"]["dahu"]
    assert cluster["walltime"] == "00:10:00"
    assert cluster["type"] == "best-effort"
    assert "nb_jobs" not in stored and "param_file" not in stored


def test_adding_tasks_json_or_streamed_and_reviving_a_terminated_campaign(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=2))
    with api.engine.begin() as conn:
        conn.execute(campaigns.update().where(campaigns.c.id == campaign_id)
                     .values(state="terminated"))
    response = api.call("POST", f"/campaigns/{campaign_id}/jobs", json=["a 1", "b 2"])
    assert response.status_code == 201
    assert (response.get_json()["total_jobs"], response.get_json()["state"]) == (4, "in_treatment")
    response = api.call("POST", f"/campaigns/{campaign_id}/jobs", data="c 3\nd 4\n",
                        content_type="text/plain")
    assert response.get_json()["total_jobs"] == 6
    response = api.call("POST", f"/campaigns/{campaign_id}/jobs", json=["a 9"])
    assert response.status_code == 400
    assert "duplicate task name 'a'" in response.get_json()["message"]


def test_adding_tasks_to_a_cancelled_campaign_is_refused(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=2))
    assert api.call("DELETE", f"/campaigns/{campaign_id}").status_code == 202
    response = api.call("POST", f"/campaigns/{campaign_id}/jobs", json=["a 1"])
    assert response.status_code == 400


def test_listing_shows_unfinished_by_default_and_finished_on_request(api: Api) -> None:
    running = api.submit(jdl("r"))
    paused = api.submit(jdl("p"))
    done = api.submit(jdl("d"))
    api.call("DELETE", f"/campaigns/{paused}?hold=1")
    api.call("DELETE", f"/campaigns/{done}")
    ids = [c["id"] for c in api.call("GET", "/campaigns").get_json()["items"]]
    assert ids == [running, paused]
    ids = [c["id"] for c in api.call("GET", "/campaigns?all=1").get_json()["items"]]
    assert ids == [running, paused, done]
    ids = [c["id"] for c in api.call("GET", "/campaigns?state=cancelled").get_json()["items"]]
    assert ids == [done]
    assert api.call("GET", "/campaigns?state=bogus").status_code == 400


def test_users_list_only_their_campaigns_and_admins_everyones(api: Api) -> None:
    mine = api.submit(jdl("a"))
    theirs = api.submit(jdl("b"), user="bob")
    assert [c["id"] for c in api.call("GET", "/campaigns").get_json()["items"]] == [mine]
    assert api.call("GET", "/campaigns?user=bob").status_code == 403
    everyone = api.call("GET", "/campaigns", user="root").get_json()["items"]
    assert [c["id"] for c in everyone] == [mine, theirs]
    bobs = api.call("GET", "/campaigns?user=bob", user="root").get_json()["items"]
    assert [c["id"] for c in bobs] == [theirs]


def test_task_pages_never_skip_a_task_and_list_a_resubmitted_task_once(pg_api: Api) -> None:
    api = pg_api
    campaign_id = api.submit(jdl(nb_jobs=250))
    first = _task_ids(api, campaign_id)[0]
    api.add_job(campaign_id, param_id=first, cluster_id=1, state="event")
    api.add_job(campaign_id, param_id=first, cluster_id=1, state="running", remote_id=77)
    seen: list[int] = []
    page = api.call("GET", f"/campaigns/{campaign_id}/jobs?limit=100").get_json()
    while True:
        seen += [item["id"] for item in page["items"]]
        following = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        page = api.call("GET", following[0]).get_json()
    assert seen == _task_ids(api, campaign_id)
    assert page["total"] == 250
    item = api.call("GET", f"/campaigns/{campaign_id}/jobs?limit=1").get_json()["items"][0]
    assert (item["state"], item["remote_id"], item["cluster"]) == ("running", 77, "dahu")


def test_v3_offsets_still_page_through_tasks(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=12))
    page = api.call("GET", f"/campaigns/{campaign_id}/jobs?limit=5&offset=10").get_json()
    assert [item["name"] for item in page["items"]] == ["10", "11"]


def test_a_task_shows_each_of_its_jobs(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=1))
    task = _task_ids(api, campaign_id)[0]
    with api.engine.begin() as conn:  # the runner took the task out of the bag
        conn.execute(bag_of_tasks.delete().where(bag_of_tasks.c.param_id == task))
    api.add_job(campaign_id, param_id=task, cluster_id=1, state="event", return_code=1)
    api.add_job(campaign_id, param_id=task, cluster_id=2, state="terminated", return_code=0)
    body = api.call("GET", f"/campaigns/{campaign_id}/jobs/{task}").get_json()
    assert body["state"] == "terminated"
    assert [(e["cluster_name"], e["state"]) for e in body["execution"]] == [
        ("dahu", "event"), ("luke", "terminated")]


def test_finished_jobs_count_tasks_not_prologues_and_never_exceed_the_total(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=2))
    task = _task_ids(api, campaign_id)[0]
    api.add_job(campaign_id, param_id=task, cluster_id=1, state="terminated")
    api.add_job(campaign_id, param_id=task, cluster_id=1, state="terminated")
    api.add_job(campaign_id, param_id=None, cluster_id=1, state="terminated", tag="prologue")
    body = api.call("GET", f"/campaigns/{campaign_id}").get_json()
    assert (body["finished_jobs"], body["total_jobs"]) == (2, 2)
    body = api.call("GET", "/campaigns").get_json()["items"][0]
    assert body["finished_jobs"] == 2


def test_campaign_detail_has_per_cluster_counts(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=3, prologue=["echo hi"]))
    task = _task_ids(api, campaign_id)[0]
    api.add_job(campaign_id, param_id=task, cluster_id=1, state="running")
    body = api.call("GET", f"/campaigns/{campaign_id}").get_json()
    assert body["clusters"] == {"1": {"cluster_name": "dahu", "active_jobs": 1, "queued_jobs": 0,
                                      "running_jobs": 1, "waiting_jobs": 0,
                                      "prologue_ok": False, "epilogue_ok": True,
                                      "type": "best-effort", "test_mode": False,
                                      "plan": "best-effort jobs, day and night"}}
    api.add_job(campaign_id, param_id=_task_ids(api, campaign_id)[1], cluster_id=1,
                state="remote_waiting")
    api.add_job(campaign_id, param_id=_task_ids(api, campaign_id)[2], cluster_id=1,
                state="launching")
    counts = api.call("GET", f"/campaigns/{campaign_id}").get_json()["clusters"]["1"]
    assert (counts["active_jobs"], counts["running_jobs"], counts["waiting_jobs"]) == (3, 1, 2)
    api.add_job(campaign_id, param_id=None, cluster_id=1, state="terminated", tag="prologue")
    body = api.call("GET", f"/campaigns/{campaign_id}").get_json()
    assert body["clusters"]["1"]["prologue_ok"] is True


def test_missing_objects_are_404_not_500(api: Api) -> None:
    for path in ["/campaigns/999", "/campaigns/999/stats", "/campaigns/999/jdl",
                 "/campaigns/999/jobs", "/campaigns/999/events", "/jobs/999", "/events/999",
                 "/clusters/999", "/campaigns/abc", "/campaigns/99999999999999999999"]:
        response = api.call("GET", path)
        assert response.status_code == 404, path
        assert response.get_json()["status"] == 404
    assert api.call("DELETE", "/jobs/999").status_code == 404


def test_unknown_url_and_pretty_json(api: Api) -> None:
    response = api.call("GET", "/nowhere")
    assert response.get_json() == {"status": 404, "title": "Not found",
                                   "message": "GET http://localhost/nowhere not found on this "
                                              "server"}
    assert "\n  " in api.call("GET", "/?pretty=1").get_data(as_text=True)
    assert "\n  " not in api.call("GET", "/?pretty=false").get_data(as_text=True)


def test_protected_calls_without_identity_are_403(api: Api) -> None:
    for method, path in [("GET", "/campaigns"), ("POST", "/campaigns"),
                         ("GET", "/notifications"), ("DELETE", "/campaigns/1")]:
        response = api.call(method, path, user=None)
        assert response.status_code == 403
        assert response.get_json() == {"status": 403, "title": "Forbidden",
                                       "message": "Access denied: not authenticated"}
    for anonymous in ("unknown", "NULL", ""):
        assert api.call("GET", "/campaigns", user=anonymous).status_code == 403


def test_cancel_empties_the_bag_and_opens_user_frag_once(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=5))
    response = api.call("DELETE", f"/campaigns/{campaign_id}")
    assert (response.status_code, response.get_json()["message"]) == (
        202, f"Campaign {campaign_id} cancelled")
    with api.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(bag_of_tasks)).scalar_one() == 0
        codes = list(conn.execute(select(events.c.code, events.c.state)
                                  .where(events.c.code != "NEW_CAMPAIGN")))
    assert [tuple(c) for c in codes] == [("USER_FRAG", "open")]
    again = api.call("DELETE", f"/campaigns/{campaign_id}")
    assert (again.status_code, again.get_json()["message"]) == (400, "Campaign already cancelled.")


def test_pause_and_resume_follow_the_state_rules(api: Api) -> None:
    campaign_id = api.submit(jdl())
    assert api.call("DELETE", f"/campaigns/{campaign_id}?hold=1").status_code == 202
    assert api.call("GET", f"/campaigns/{campaign_id}").get_json()["state"] == "paused"
    again = api.call("DELETE", f"/campaigns/{campaign_id}?hold=1").get_json()
    assert again["message"] == "Can't hold (pause) a paused campaign"
    assert api.call("DELETE", f"/campaigns/{campaign_id}?resume=1").status_code == 202
    again = api.call("DELETE", f"/campaigns/{campaign_id}?resume=1").get_json()
    assert again["message"] == "Can't resume a in_treatment campaign"


def test_put_renames_and_never_revives_a_finished_campaign(api: Api) -> None:
    campaign_id = api.submit(jdl())
    response = api.call("PUT", f"/campaigns/{campaign_id}?name=renamed")
    assert (response.status_code, response.get_json()["name"]) == (202, "renamed")
    assert api.call("PUT", f"/campaigns/{campaign_id}?state=bogus").status_code == 400
    assert api.call("PUT", f"/campaigns/{campaign_id}", json={"state": "paused"}).get_json()[
        "state"] == "paused"
    api.call("DELETE", f"/campaigns/{campaign_id}")
    response = api.call("PUT", f"/campaigns/{campaign_id}?state=in_treatment")
    assert response.status_code == 400
    assert api.call("GET", f"/campaigns/{campaign_id}").get_json()["state"] == "cancelled"


def test_purge_deletes_only_finished_campaigns(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=3))
    refused = api.call("DELETE", f"/campaigns/{campaign_id}?purge=1")
    assert (refused.status_code, refused.get_json()["message"]) == (
        400, "Can't purge a in_treatment campaign")
    api.call("DELETE", f"/campaigns/{campaign_id}")
    assert api.call("DELETE", f"/campaigns/{campaign_id}?purge=1").status_code == 202
    assert api.call("GET", f"/campaigns/{campaign_id}").status_code == 404
    with api.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(parameters)).scalar_one() == 0


def test_events_lists_are_200_when_empty_and_all_0_means_open_only(api: Api) -> None:
    campaign_id = api.submit(jdl())
    response = api.call("GET", f"/campaigns/{campaign_id}/events")
    assert (response.status_code, response.get_json()["items"]) == (200, [])
    assert api.call("GET", "/events").get_json()["items"] == []
    api.call("DELETE", f"/campaigns/{campaign_id}?hold=1")  # a closed PAUSED event
    assert api.call("GET", f"/campaigns/{campaign_id}/events?all=0").get_json()["items"] == []
    codes = [e["code"] for e in api.call("GET", f"/campaigns/{campaign_id}/events?all=1")
             .get_json()["items"]]
    assert codes == ["NEW_CAMPAIGN", "PAUSED"]  # the history holds the submission notice


def test_cancelling_a_job_opens_user_frag_with_its_campaign(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=1))
    job = api.add_job(campaign_id, param_id=_task_ids(api, campaign_id)[0], cluster_id=1,
                      state="running", remote_id=5)
    response = api.call("DELETE", f"/jobs/{job}")
    assert (response.status_code, response.get_json()["message"]) == (
        202, f"Job {job} cancel event created")
    listed = api.call("GET", f"/campaigns/{campaign_id}/events").get_json()["items"]
    assert [(e["code"], e["job_id"], e["campaign_id"]) for e in listed] == [
        ("USER_FRAG", job, campaign_id)]


def test_fixing_a_campaigns_events_keeps_blacklists_and_cancellations_and_resubmits_once(
        api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=1))
    task = _task_ids(api, campaign_id)[0]
    job = api.add_job(campaign_id, param_id=task, cluster_id=1, state="event")
    with api.engine.begin() as conn:
        conn.execute(bag_of_tasks.delete())
        for code in ("EXIT_ERROR", "WALLTIME", "BLACKLIST", "USER_FRAG"):
            conn.execute(insert(events).values(class_="job", code=code, state="open",
                                               job_id=job, campaign_id=campaign_id,
                                               cluster_id=1))
    response = api.call("DELETE", f"/campaigns/{campaign_id}/events?resubmit=1")
    assert (response.status_code, response.get_json()["message"]) == (
        202, f"Campaign {campaign_id} events closed")
    still_open = [e["code"] for e in api.call("GET", f"/campaigns/{campaign_id}/events")
                  .get_json()["items"]]
    assert still_open == ["BLACKLIST", "USER_FRAG"]
    with api.engine.begin() as conn:
        bag = conn.execute(select(bag_of_tasks.c.param_id, bag_of_tasks.c.priority)).all()
    assert [tuple(row) for row in bag] == [(task, 20)]


def test_users_cannot_close_cluster_wide_events_but_admins_can(api: Api) -> None:
    created = api.call("POST", "/events", user="root", json={
        "class": "cluster", "cluster_id": 1, "code": "CLUSTER_MANUALLY_DISABLED",
        "message": "Cluster 1 disabled by the administrator of the grid. Please, be patient."})
    assert created.status_code == 201
    assert api.call("POST", "/events", json={"class": "cluster", "cluster_id": 1,
                                             "code": "X"}).status_code == 403
    assert api.call("GET", "/clusters/1").get_json()["blacklisted"] is True
    event_id = int(created.headers["Location"].rsplit("/", 1)[1])
    refused = api.call("DELETE", f"/events/{event_id}")
    assert refused.status_code == 403
    assert refused.get_json()["message"].startswith(
        f"Event {event_id} is not specific to a campaign belonging to you")
    assert api.call("DELETE", f"/events/{event_id}", user="root").status_code == 202


def test_campaign_shows_events_of_its_clusters(api: Api) -> None:
    campaign_id = api.submit(jdl())
    api.call("POST", "/events", user="root", json={"class": "cluster", "cluster_id": 1,
                                                   "code": "TIMEOUT", "message": "slow"})
    body = api.call("GET", f"/campaigns/{campaign_id}").get_json()
    assert body["has_events"] is True
    listed = api.call("GET", f"/campaigns/{campaign_id}/events").get_json()["items"]
    assert [(e["code"], e["cluster_name"]) for e in listed] == [("TIMEOUT", "dahu")]


def test_stats_of_a_campaign(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=4))
    now = api.clock.now()
    from datetime import timedelta

    for index, task in enumerate(_task_ids(api, campaign_id)[:2]):
        api.add_job(campaign_id, param_id=task, cluster_id=1, state="terminated",
                    start_time=now - timedelta(seconds=100 + 20 * index),
                    stop_time=now - timedelta(seconds=50))
    stats = api.call("GET", f"/campaigns/{campaign_id}/stats").get_json()
    assert stats["average_jobs_duration"] == pytest.approx(60.0)
    assert stats["stddev_jobs_duration"] == pytest.approx(10.0)
    assert stats["jobs_throughput"] == pytest.approx(2 / 3600)
    assert stats["remaining_time"] == pytest.approx(2 / (2 / 3600))
    assert (stats["failures_rate"], stats["resubmit_rate"]) == (0.0, 0.0)


def test_notification_subscriptions(api: Api) -> None:
    created = api.call("POST", "/notifications/mail", json={"identity": "a+b@x.org",
                                                             "severity": "high"})
    assert created.status_code == 201
    assert api.call("POST", "/notifications/mail", json={"identity": "a+b@x.org",
                                                         "severity": "high"}).status_code == 400
    assert api.call("POST", "/notifications/jabber", json={"identity": "a@j",
                                                           "severity": "nope"}).status_code == 400
    assert api.call("POST", "/notifications/irc", json={"identity": "a",
                                                        "severity": "low"}).status_code == 404
    items = api.call("GET", "/notifications").get_json()["items"]
    assert [(i["type"], i["identity"], i["severity"]) for i in items] == [
        ("mail", "a+b@x.org", "high")]
    assert api.call("GET", "/notifications", user="bob").get_json()["items"] == []
    assert api.call("DELETE", "/notifications/mail?identity=a%2Bb%40x.org").status_code == 202
    assert api.call("DELETE", "/notifications/mail?identity=a%2Bb%40x.org").status_code == 404


def test_cluster_jwt_tokens_only_on_jwt_clusters(api: Api) -> None:
    response = api.call("POST", "/tokens", json={"cluster_id": 1, "token": "abc"})
    assert (response.status_code, response.get_json()["message"]) == (
        400, "Cluster 1 auth_type is not JWT!")
    assert api.call("POST", "/tokens", json={"cluster_id": 99, "token": "abc"}).status_code == 404


def test_clusters_list_and_detail_hide_credentials(api: Api) -> None:
    listed = api.call("GET", "/clusters").get_json()
    assert [c["name"] for c in listed["items"]] == ["dahu", "luke"]
    detail = api.call("GET", "/clusters/1").get_json()
    assert "api_password" not in detail and "api_username" not in detail
    assert (detail["stress_factor"], detail["blacklisted"], detail["under_stress"]) == (
        "0.0/0.8", False, False)


def test_gridusage_is_empty_not_an_error(api: Api) -> None:
    body = api.call("GET", "/gridusage").get_json()
    assert (body["items"], body["total"]) == ([], 0)
    assert api.call("GET", "/gridusage?from=abc").status_code == 400


def test_ids_and_limits_are_validated(api: Api) -> None:
    campaign_id = api.submit(jdl(nb_jobs=2))
    for query in ("limit=abc", "limit=0", "limit=-1", "offset=1.5", "after=1;DROP TABLE jobs"):
        assert api.call("GET", f"/campaigns/{campaign_id}/jobs?{query}").status_code == 400
    with api.engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 0


def test_postgresql_keeps_terminated_task_counts_through_every_kind_of_change(
        pg_api: Api) -> None:
    from sqlalchemy import delete, update

    from cigri.storage.tables import campaign_job_counts

    api = pg_api
    first, second = api.submit(jdl("a", nb_jobs=5)), api.submit(jdl("b", nb_jobs=5))

    def counted() -> dict[int, int]:
        with api.engine.begin() as conn:
            return {r.campaign_id: r.terminated_tasks
                    for r in conn.execute(select(campaign_job_counts))}

    def actual(campaign_id: int) -> int:
        with api.engine.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs).where(
                jobs.c.campaign_id == campaign_id, jobs.c.state == "terminated",
                jobs.c.param_id.is_not(None))).scalar_one())

    tasks = _task_ids(api, first) + _task_ids(api, second)
    with api.engine.begin() as conn:
        conn.execute(insert(jobs), [{"campaign_id": first if i < 5 else second, "param_id": t,
                                     "cluster_id": 1, "state": "running"}
                                    for i, t in enumerate(tasks)])
        conn.execute(insert(jobs).values(campaign_id=first, param_id=None, cluster_id=1,
                                         state="terminated", tag="prologue"))
    with api.engine.begin() as conn:  # one statement, two campaigns
        conn.execute(update(jobs).where(jobs.c.param_id.in_(tasks[3:7]))
                     .values(state="terminated"))
    assert counted() == {first: 2, second: 2} == {first: actual(first), second: actual(second)}
    with api.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.param_id == tasks[3]).values(state="event"))
        conn.execute(update(jobs).where(jobs.c.param_id == tasks[4]).values(node_name="n1"))
        conn.execute(insert(jobs).values(campaign_id=second, param_id=tasks[9], cluster_id=1,
                                         state="terminated"))
        conn.execute(delete(jobs).where(jobs.c.param_id == tasks[5], jobs.c.state == "terminated"))
    assert counted() == {first: 1, second: 2} == {first: actual(first), second: actual(second)}
    assert api.call("GET", f"/campaigns/{second}").get_json()["finished_jobs"] == 2
    api.call("DELETE", f"/campaigns/{first}")
    assert api.call("DELETE", f"/campaigns/{first}?purge=1").status_code == 400  # jobs running
    with api.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.campaign_id == first).values(state="terminated"))
    assert api.call("DELETE", f"/campaigns/{first}?purge=1").status_code == 202
    assert counted() == {second: 2}


def test_campaign_lists_page_by_keyset(api: Api) -> None:
    ids = [api.submit(jdl(f"c{i}")) for i in range(5)]
    seen: list[int] = []
    page = api.call("GET", "/campaigns?limit=2&state=in_treatment").get_json()
    while True:
        seen += [c["id"] for c in page["items"]]
        following = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        assert "state=in_treatment" in following[0]
        page = api.call("GET", following[0]).get_json()
    assert seen == ids


def test_a_post_with_a_method_field_acts_as_put_or_delete_like_v3(api: Api) -> None:
    campaign_id = api.submit(jdl())
    renamed = api.call("POST", f"/campaigns/{campaign_id}", data={"_method": "PUT", "name": "x"})
    assert (renamed.status_code, renamed.get_json()["name"]) == (202, "x")
    held = api.call("POST", f"/campaigns/{campaign_id}?hold=1", data={"_method": "delete"})
    assert (held.status_code, held.get_json()["message"]) == (202, f"Campaign {campaign_id} paused")
    assert api.call("POST", f"/campaigns/{campaign_id}", data={"x": "1"}).status_code == 405
