"""Campaign ingestion on both databases: one transaction, streamed parameters, duplicates named."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, Table, func, insert, select

from cigri.domain.clock import FakeClock
from cigri.domain.errors import CampaignNotFound, Conflict, DuplicateTaskNames, JDLError
from cigri.domain.jdl import JDLDefaults, parse_jdl
from cigri.domain.states import CampaignState
from cigri.storage.campaigns import (
    add_parameters,
    create_campaign,
    create_campaign_from_spec,
    find_campaign,
    get_campaign,
)
from cigri.storage.tables import bag_of_tasks, campaign_properties, campaigns, clusters, parameters


def _add_cluster(conn: Connection, name: str) -> int:
    return int(conn.execute(insert(clusters).values(
        name=name, api_url=f"http://{name}/oarapi/").returning(clusters.c.id)).scalar_one())


def _count(conn: Connection, table: Table, campaign_id: int) -> int:
    return int(conn.execute(select(func.count()).select_from(table)
                            .where(table.c.campaign_id == campaign_id)).scalar_one())


def _create(conn: Connection, params: Iterable[str], now: datetime,
            properties: Mapping[int | None, Mapping[str, str]] | None = None) -> int:
    return create_campaign(conn, grid_user="alice", name="c", jobs_type="normal",
                           jdl={"name": "c"}, properties=properties or {}, params=params, now=now)


def test_campaign_from_spec_stores_campaign_properties_parameters_and_tasks(
        engine: Engine, clock: FakeClock) -> None:
    spec = parse_jdl({"name": "demo", "clusters": {"luke": {"walltime": "00:05:00"}, "dahu": {}},
                      "exec_file": "~/run", "params": ["a 1", "b 2", "c 3"]},
                     defaults=JDLDefaults())
    with engine.begin() as conn:
        luke, dahu = _add_cluster(conn, "luke"), _add_cluster(conn, "dahu")
        campaign_id = create_campaign_from_spec(conn, grid_user="alice", spec=spec,
                                                params=spec.parameter_lines(), now=clock.now())
    with engine.connect() as conn:
        campaign = get_campaign(conn, campaign_id)
        assert campaign.state is CampaignState.IN_TREATMENT
        assert (campaign.grid_user, campaign.name, campaign.nb_jobs) == ("alice", "demo", 3)
        assert campaign.submission_time == clock.now()
        assert json.loads(campaign.jdl or "")["clusters"]["luke"]["exec_file"] == "$HOME/run"
        props = {(row.cluster_id, row.name): row.value
                 for row in conn.execute(select(campaign_properties))}
        assert props[(luke, "walltime")] == "00:05:00"
        assert props[(dahu, "walltime")] == "01:00:00"
        assert props[(None, "max_resubmissions")] == "5"
        rows = conn.execute(select(parameters.c.name, parameters.c.param)
                            .order_by(parameters.c.id)).all()
        assert [tuple(row) for row in rows] == [("a", "a 1"), ("b", "b 2"), ("c", "c 3")]
        priorities = conn.execute(select(bag_of_tasks.c.priority)).scalars().all()
        assert priorities == [10, 10, 10]


def test_campaign_from_spec_rejects_a_cluster_missing_from_the_database(
        engine: Engine, clock: FakeClock) -> None:
    spec = parse_jdl({"name": "d", "clusters": {"ghost": {}}, "exec_file": "e", "nb_jobs": 1},
                     defaults=JDLDefaults())
    with pytest.raises(JDLError, match="unknown cluster 'ghost'"), engine.begin() as conn:
        create_campaign_from_spec(conn, grid_user="a", spec=spec, params=spec.parameter_lines(),
                                  now=clock.now())


def test_streamed_ingestion_of_100000_lines_keeps_order_and_count_in_bounded_memory(
        engine: Engine, clock: FakeClock) -> None:
    def lines() -> Iterator[str]:
        for index in range(100_000):
            yield f"task{index} --seed {index}\n"

    with engine.begin() as conn:
        tracemalloc.start()
        try:
            campaign_id = _create(conn, lines(), clock.now())
            peak_bytes = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # Held whole, 100,000 lines and their records would take well over 15 MB.
    assert peak_bytes < 8_000_000
    with engine.connect() as conn:
        assert get_campaign(conn, campaign_id).nb_jobs == 100_000
        assert _count(conn, parameters, campaign_id) == 100_000
        assert _count(conn, bag_of_tasks, campaign_id) == 100_000
        first, last = conn.execute(select(parameters.c.param).order_by(parameters.c.id)
                                   .limit(1)).scalar_one(), conn.execute(
            select(parameters.c.param).order_by(parameters.c.id.desc()).limit(1)).scalar_one()
        assert (first, last) == ("task0 --seed 0", "task99999 --seed 99999")
        unmatched = conn.execute(
            select(func.count()).select_from(bag_of_tasks.outerjoin(
                parameters, parameters.c.id == bag_of_tasks.c.param_id))
            .where(parameters.c.id.is_(None))).scalar_one()
        assert unmatched == 0


@pytest.mark.parametrize(("lines", "expected"), [
    pytest.param(["x 1", "y", "x 2", "z", "y"],
                 ["duplicate task name 'x': used by parameter lines 1, 3",
                  "duplicate task name 'y': used by parameter lines 2, 5"], id="two-duplicates"),
    pytest.param(["a", "", "b", "  "], ["duplicate task name '': used by parameter lines 2, 4"],
                 id="blank-lines"),
])
def test_duplicate_task_names_are_reported_with_line_numbers_and_nothing_is_kept(
        engine: Engine, clock: FakeClock, lines: list[str], expected: list[str]) -> None:
    with pytest.raises(DuplicateTaskNames) as caught, engine.begin() as conn:
        _create(conn, iter(lines), clock.now())
    assert [message.split(" (")[0] for message in caught.value.errors] == expected
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(campaigns)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(parameters)).scalar_one() == 0


def test_rollback_on_a_failing_stream_leaves_nothing(engine: Engine, clock: FakeClock) -> None:
    def failing() -> Iterator[str]:
        yield "a"
        yield "b"
        raise OSError("connection reset while reading the request body")

    with pytest.raises(OSError, match="connection reset"), engine.begin() as conn:
        cluster_id = _add_cluster(conn, "luke")
        _create(conn, failing(), clock.now(), properties={cluster_id: {"walltime": "1"}})
    with engine.connect() as conn:
        for table in (campaigns, campaign_properties, parameters, bag_of_tasks, clusters):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0


def test_a_line_the_database_cannot_hold_is_named(engine: Engine, clock: FakeClock) -> None:
    with pytest.raises(JDLError, match=r"parameter line 2: task name .* longer than 255"), \
            engine.begin() as conn:
        _create(conn, iter(["ok", "x" * 300]), clock.now())


def test_add_parameters_appends_tasks_and_keeps_nb_jobs(engine: Engine, clock: FakeClock) -> None:
    with engine.begin() as conn:
        campaign_id = _create(conn, iter(["a", "b"]), clock.now())
    with engine.begin() as conn:
        assert add_parameters(conn, campaign_id, iter(["c", "d 4"]), clock.now()) == 2
    with engine.connect() as conn:
        assert get_campaign(conn, campaign_id).nb_jobs == 4
        names = conn.execute(select(parameters.c.name).order_by(parameters.c.id)).scalars().all()
        assert names == ["a", "b", "c", "d"]
        assert _count(conn, bag_of_tasks, campaign_id) == 4


def test_add_parameters_rejects_a_name_already_in_the_campaign(
        engine: Engine, clock: FakeClock) -> None:
    with engine.begin() as conn:
        campaign_id = _create(conn, iter(["a", "b"]), clock.now())
    with pytest.raises(DuplicateTaskNames, match="'b': already a task of this campaign; given "
                       "again at parameter line 2"), engine.begin() as conn:
        add_parameters(conn, campaign_id, iter(["c", "b again"]), clock.now())
    with engine.connect() as conn:
        assert get_campaign(conn, campaign_id).nb_jobs == 2
        assert _count(conn, parameters, campaign_id) == 2


def test_add_parameters_revives_a_terminated_campaign(engine: Engine, clock: FakeClock) -> None:
    with engine.begin() as conn:
        campaign_id = _create(conn, iter(["a"]), clock.now())
        conn.execute(campaigns.update().values(state="terminated",
                                               completion_time=datetime(2026, 1, 1, tzinfo=UTC)))
    with engine.begin() as conn:
        add_parameters(conn, campaign_id, iter(["b"]), clock.now())
    with engine.connect() as conn:
        campaign = get_campaign(conn, campaign_id)
        assert (campaign.state, campaign.completion_time) == (CampaignState.IN_TREATMENT, None)


def test_add_parameters_refuses_a_cancelled_campaign(engine: Engine, clock: FakeClock) -> None:
    with engine.begin() as conn:
        campaign_id = _create(conn, iter(["a"]), clock.now())
        conn.execute(campaigns.update().values(state="cancelled"))
    with pytest.raises(Conflict, match="because it was cancelled"), engine.begin() as conn:
        add_parameters(conn, campaign_id, iter(["b"]), clock.now())


def test_unknown_campaign(engine: Engine, clock: FakeClock) -> None:
    with engine.begin() as conn:
        assert find_campaign(conn, 4242) is None
        with pytest.raises(CampaignNotFound):
            get_campaign(conn, 4242)
        with pytest.raises(CampaignNotFound):
            add_parameters(conn, 4242, iter(["a"]), clock.now())


def test_two_campaigns_in_one_transaction_each_get_their_own_tasks(
        engine: Engine, clock: FakeClock) -> None:
    with engine.begin() as conn:
        first = _create(conn, iter(["a", "b"]), clock.now())
        second = _create(conn, iter(["a", "b", "c"]), clock.now())
        add_parameters(conn, first, iter(["c"]), clock.now())
    with engine.connect() as conn:
        assert (_count(conn, bag_of_tasks, first), _count(conn, bag_of_tasks, second)) == (3, 3)
