"""Which queued tasks the meta-scheduler sends back to the bag: those of a couple that gets
nothing queued any more because the cluster is disabled or gone or the campaign is blacklisted
there; not those of a cluster-wide blacklist (a passing outage: the runner resets the taps of
the campaigns queued there) nor of a stressed cluster; and only where something is queued."""

from __future__ import annotations

from cigri.domain.clusters import Cluster
from cigri.domain.scheduling import CampaignCluster, Snapshot, plan_queue_withdrawals


def _snapshot() -> Snapshot:
    couples = [CampaignCluster(campaign_id=campaign, cluster_id=cluster, grid_user="u")
               for campaign in (1, 2) for cluster in (10, 20, 30, 40)]
    couples.append(CampaignCluster(campaign_id=1, cluster_id=50, grid_user="u"))  # 50 is gone
    clusters = {10: Cluster(id=10, name="ok", api_url="http://x/"),
                20: Cluster(id=20, name="off", api_url="http://x/", enabled=False),
                30: Cluster(id=30, name="down", api_url="http://x/"),
                40: Cluster(id=40, name="stressed", api_url="http://x/", stress_factor=0.9)}
    queued = {(c.campaign_id, c.cluster_id): 3 for c in couples}
    queued.pop((2, 30))
    return Snapshot(couples=couples, clusters=clusters, queued_jobs=queued,
                    blacklisted_clusters=frozenset({30}), blacklisted_couples=frozenset({(2, 10)}),
                    stress_threshold=0.8)


def test_queued_tasks_of_blocked_couples_are_withdrawn_and_no_others() -> None:
    snapshot = _snapshot()
    assert sorted(plan_queue_withdrawals(snapshot)) == [(1, 20), (1, 50), (2, 10), (2, 20)]


def test_nothing_is_withdrawn_where_nothing_is_queued() -> None:
    snapshot = _snapshot()
    empty = Snapshot(couples=snapshot.couples, clusters=snapshot.clusters,
                     blacklisted_clusters=snapshot.blacklisted_clusters,
                     blacklisted_couples=snapshot.blacklisted_couples)
    assert plan_queue_withdrawals(empty) == []
