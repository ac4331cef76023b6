"""Pure scheduling decisions: limits, order, distribution over clusters, fair share."""

from __future__ import annotations

from cigri.domain.clusters import Cluster
from cigri.domain.scheduling import (
    CampaignCluster,
    CoupleLimit,
    Policy,
    Snapshot,
    TaskCandidate,
    couple_limit,
    distribute,
    plan_couples,
    plan_tagged_jobs,
)
from cigri.domain.states import JobState


def _cluster(cluster_id: int, **kwargs: object) -> Cluster:
    return Cluster(id=cluster_id, name=f"c{cluster_id}", api_url="http://x/", **kwargs)  # type: ignore[arg-type]


def _limit(campaign: int, cluster: int, user: str = "u", limit: int = 100, **kw: object) -> CoupleLimit:
    return CoupleLimit(campaign_id=campaign, cluster_id=cluster, grid_user=user,
                       user_priority=0, is_test=False, limit=limit, is_besteffort=True,
                       **kw)  # type: ignore[arg-type]


def _tasks(campaign: int, ids: range) -> list[TaskCandidate]:
    return [TaskCandidate(task_id=i, campaign_id=campaign, param_id=i, priority=10) for i in ids]


def test_couple_limit_is_max_jobs_minus_in_flight_capped_by_ten_taps() -> None:
    couple = CampaignCluster(campaign_id=1, cluster_id=1, grid_user="u", max_jobs=50)
    snapshot = Snapshot(couples=[couple], clusters={1: _cluster(1)},
                        active_jobs={(1, 1): 10}, queued_jobs={(1, 1): 5}, tap_rates={(1, 1): 2})
    assert couple_limit(snapshot, couple) == 15  # min(50 - 15, 20 - 5)
    snapshot = Snapshot(couples=[couple], clusters={1: _cluster(1)},
                        active_jobs={(1, 1): 49}, queued_jobs={(1, 1): 5}, tap_rates={(1, 1): 2})
    assert couple_limit(snapshot, couple) == 0


def test_a_task_goes_to_exactly_one_cluster_and_clusters_take_turns() -> None:
    couples = [_limit(1, 1), _limit(1, 2)]
    stacks = {(1, 1): _tasks(1, range(1, 11)), (1, 2): _tasks(1, range(1, 11))}
    entries = distribute(couples, stacks)
    assert sorted(e.task_id for e in entries) == list(range(1, 11))
    by_cluster = {c: [e.task_id for e in entries if e.cluster_id == c] for c in (1, 2)}
    assert by_cluster == {1: [1, 3, 5, 7, 9], 2: [2, 4, 6, 8, 10]}


def test_limits_cut_each_couple() -> None:
    entries = distribute([_limit(1, 1, limit=3)], {(1, 1): _tasks(1, range(1, 11))})
    assert [e.task_id for e in entries] == [1, 2, 3]


def test_fair_share_rotates_users_and_fifo_does_not() -> None:
    couples = [_limit(1, 1, "alice"), _limit(2, 1, "alice"), _limit(3, 1, "bob")]
    stacks = {(1, 1): _tasks(1, range(1, 5)), (2, 1): _tasks(2, range(11, 15)),
              (3, 1): _tasks(3, range(21, 25))}
    fair = [e.campaign_id for e in distribute(couples, stacks, policy=Policy.FAIR_SHARE)]
    assert fair[:8] == [1, 3, 1, 3, 1, 3, 1, 3]
    assert fair[8:] == [2, 2, 2, 2]
    fifo = [e.campaign_id for e in distribute(couples, stacks, policy=Policy.FIFO)]
    assert fifo == [1] * 4 + [2] * 4 + [3] * 4


def test_batches_are_runs_of_one_campaign_with_increasing_order_num() -> None:
    couples = [_limit(1, 1, "alice"), _limit(3, 1, "bob")]
    stacks = {(1, 1): _tasks(1, range(1, 3)), (3, 1): _tasks(3, range(21, 22))}
    entries = distribute(couples, stacks, first_batch_id=7)
    assert [(e.campaign_id, e.order_num, e.runner_options["batch_id"]) for e in entries] == [
        (1, 1, 7), (3, 2, 8), (1, 3, 9)]


def test_higher_user_priority_is_served_before_fair_share_applies() -> None:
    couples = [_limit(1, 1, "alice"),
               CoupleLimit(campaign_id=2, cluster_id=1, grid_user="bob", user_priority=3,
                           is_test=False, limit=100, is_besteffort=False)]
    stacks = {(1, 1): _tasks(1, range(1, 3)), (2, 1): _tasks(2, range(11, 13))}
    assert [e.campaign_id for e in distribute(couples, stacks)] == [2, 2, 1, 1]


def test_prologue_gates_couples_and_is_planned_once() -> None:
    couple = CampaignCluster(campaign_id=1, cluster_id=1, grid_user="u", has_prologue=True)
    base = {"couples": [couple], "clusters": {1: _cluster(1)}, "unscheduled_tasks": {1: 5}}
    assert plan_couples(Snapshot(**base)) == []  # type: ignore[arg-type]
    assert [p.tag for p in plan_tagged_jobs(Snapshot(**base))] == ["prologue"]  # type: ignore[arg-type]
    running = Snapshot(**base, prologue_states={(1, 1): frozenset({JobState.RUNNING})})  # type: ignore[arg-type]
    assert plan_tagged_jobs(running) == []
    done = Snapshot(**base, prologue_states={(1, 1): frozenset({JobState.TERMINATED})})  # type: ignore[arg-type]
    assert plan_tagged_jobs(done) == [] and len(plan_couples(done)) == 1
