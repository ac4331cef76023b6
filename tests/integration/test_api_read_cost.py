"""Issue 16 point 8: what one campaign read costs the API (the figures `bench/api_load.py` times).

Under 20 concurrent clients the time went into per-request overhead, not the queries: two pool
checkouts (each with its liveness ping) and two transactions per call (the token check, then the
route), and the statements rebuilt on every call. Now one checkout and one transaction serve the
token check and the route, and the statements are built once.
"""

from __future__ import annotations

from sqlalchemy import Engine, event

from cigri.domain.clock import FakeClock
from cigri.storage import queries
from cigri.storage.tokens import create_token
from tests.integration.api_helpers import jdl, make_api


def test_a_campaign_read_with_a_token_takes_one_connection_and_one_transaction(
        pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    campaign_id = api.submit(jdl(nb_jobs=50))
    with pg_engine.begin() as conn:
        token = create_token(conn, grid_user="alice", now=clock.now())[1]
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get(f"/campaigns/{campaign_id}", headers=headers).status_code == 200
    seen = {"checkouts": 0, "commits": 0}

    def checkout(*_args: object) -> None:
        seen["checkouts"] += 1

    def commit(*_args: object) -> None:
        seen["commits"] += 1

    event.listen(pg_engine.pool, "checkout", checkout)
    event.listen(pg_engine, "commit", commit)
    try:
        for _ in range(5):
            response = api.client.get(f"/campaigns/{campaign_id}", headers=headers)
            assert response.status_code == 200 and response.get_json()["total_jobs"] == 50
    finally:
        event.remove(pg_engine.pool, "checkout", checkout)
        event.remove(pg_engine, "commit", commit)
    assert seen == {"checkouts": 5, "commits": 5}


def test_the_campaign_read_statements_are_built_once(pg_engine: Engine, clock: FakeClock) -> None:
    api = make_api(pg_engine, clock)
    campaign_id = api.submit(jdl(nb_jobs=5))
    with pg_engine.begin() as conn:
        first = queries.get_campaign_detail(conn, campaign_id)
        detail, summary = queries._detail_select(), queries._summary_by_id(conn.dialect.name)
        again = queries.get_campaign_detail(conn, campaign_id)
        assert queries._detail_select() is detail
        assert queries._summary_by_id(conn.dialect.name) is summary
    assert first == again and first.summary.total_jobs == 5
