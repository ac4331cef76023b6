"""The injection policies (`cigri.domain.injection`), pure: how many tasks a runner pass submits
under `capacity`, `pi` and `tap`, the waiting reference, and the view built from a usage sample."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cigri.domain.injection import (
    CAPACITY,
    PI,
    TAP,
    ClusterView,
    InjectionSettings,
    PiState,
    capacity_tasks,
    cluster_view,
    decide,
    pi_step,
    policy_of,
    queue_rate,
    reference,
    share,
    start_cost,
)
from cigri.domain.stats import UsageSample

SETTINGS = InjectionSettings(reference=4, max_jobs=1000, kp=1.0, ki=0.2, interval=5.0, poll=1.0)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _view(**fields: object) -> ClusterView:
    return ClusterView(**fields)  # type: ignore[arg-type]


# --- capacity ------------------------------------------------------------------------------------

def test_capacity_fills_every_free_core_plus_the_reference_at_once() -> None:
    view = _view(capacity=1000, used_by_others=200, running=0, waiting=0)
    assert capacity_tasks(view, SETTINGS) == 800 + 4


def test_capacity_then_keeps_the_waiting_queue_at_the_reference() -> None:
    full = _view(capacity=16, used_by_others=0, running=16, waiting=1)
    assert capacity_tasks(full, SETTINGS) == 3  # 4 waiting again
    assert capacity_tasks(_view(capacity=16, running=16, waiting=4), SETTINGS) == 0
    # topped up once a quarter of the reference started: one POST for 2 jobs, not 1 per job
    eight = InjectionSettings(reference=8)
    assert capacity_tasks(_view(capacity=16, running=16, waiting=7), eight) == 0
    assert capacity_tasks(_view(capacity=16, running=16, waiting=6), eight) == 2
    assert capacity_tasks(_view(capacity=16, running=16, waiting=9), SETTINGS) == 0


def test_capacity_counts_its_own_waiting_jobs_as_taking_free_cores() -> None:
    # 10 free cores, 6 cigri jobs already on their way: 4 more fill them, plus the reference
    view = _view(capacity=20, used_by_others=5, running=5, waiting=6)
    assert capacity_tasks(view, SETTINGS) == 4 + 4


def test_capacity_without_a_usage_sample_keeps_only_the_reference() -> None:
    assert capacity_tasks(_view(capacity=None, running=50, waiting=1), SETTINGS) == 3


def test_capacity_never_submits_more_than_the_largest_pass() -> None:
    small = InjectionSettings(reference=4, max_jobs=100)
    assert capacity_tasks(_view(capacity=1000), small) == 100


def test_the_reference_covers_the_jobs_ending_during_a_pass_and_a_start() -> None:
    # 600 running jobs of 60 s end at 10/s; a freed core waits up to 1 s (the updater sees it)
    # + 5 s (the runner refills) + 10 s (OAR starts the job): 160, twice for the waves
    view = _view(capacity=1000, running=600, task_seconds=60.0, start_latency=10.0)
    assert reference(view, SETTINGS) == 320
    assert reference(_view(capacity=8, running=8, task_seconds=2.0, start_latency=2.0),
                     SETTINGS) == 16  # never above twice the usable cores
    assert reference(_view(running=8), SETTINGS) == 4  # no duration yet: the setting


# --- pi ------------------------------------------------------------------------------------------

def test_pi_submits_kp_times_the_error_plus_ki_times_its_sum() -> None:
    first = pi_step(_view(waiting=0), PiState(), SETTINGS, available=100)
    assert first.tasks == 5  # 1.0 * 4 + 0.2 * 4 = 4.8
    assert first.pi == PiState(4.0)
    second = pi_step(_view(waiting=0), first.pi, SETTINGS, available=100)
    assert second.tasks == 6  # the integral grows while the queue stays empty: 4 + 0.2 * 8
    assert second.pi == PiState(8.0)


def test_pi_submits_nothing_above_the_reference_and_its_integral_comes_down() -> None:
    decision = pi_step(_view(waiting=10), PiState(8.0), SETTINGS, available=100)
    assert decision.tasks == 0
    assert decision.pi == PiState(2.0)


def test_pi_does_not_wind_up_while_the_campaign_has_nothing_to_give() -> None:
    decision = pi_step(_view(waiting=0), PiState(4.0), SETTINGS, available=2)
    assert decision.tasks == 2 and decision.pi == PiState(4.0)


def test_pi_integral_is_bounded() -> None:
    settings = InjectionSettings(reference=4, max_jobs=10, kp=0.0, ki=1.0)
    decision = pi_step(_view(waiting=0), PiState(9.0), settings, available=1000)
    assert decision.pi == PiState(10.0) and decision.tasks == 10


# --- decide --------------------------------------------------------------------------------------

def test_tap_gives_the_tap_rate_whatever_the_cluster() -> None:
    view = _view(capacity=1000)
    decision = decide(TAP, view, SETTINGS, tap_rate=3, pi=PiState(), available=100)
    assert decision.tasks == 3


def test_decide_never_takes_more_than_the_queued_tasks() -> None:
    view = _view(capacity=1000)
    assert decide(CAPACITY, view, SETTINGS, tap_rate=3, pi=PiState(), available=7).tasks == 7
    assert decide(PI, _view(), SETTINGS, tap_rate=3, pi=PiState(), available=2).tasks == 2


def test_the_flow_is_what_the_policy_wants_per_pass_whatever_is_queued() -> None:
    # the meta-scheduler queues up to 10 × the tap rate; the runner records the flow there
    view = _view(capacity=1000)
    decision = decide(CAPACITY, view, SETTINGS, tap_rate=2, pi=PiState(), available=20)
    assert (decision.tasks, decision.flow) == (20, 1000)  # at most the largest pass
    # a full cluster: what 1,000 jobs of 60 s free per 5 s pass, so ~10 passes are queued
    full = _view(capacity=1000, running=1000, waiting=400, task_seconds=60.0)
    assert decide(CAPACITY, full, SETTINGS, tap_rate=2, pi=PiState(), available=20).flow == 84


def test_test_mode_submits_one_job_at_a_time_under_every_policy() -> None:
    view = _view(capacity=1000)
    for policy in (CAPACITY, PI, TAP):
        assert decide(policy, view, SETTINGS, tap_rate=9, pi=PiState(), available=50,
                      test_mode=True).tasks == 1
        assert decide(policy, view, SETTINGS, tap_rate=9, pi=PiState(), available=50,
                      test_mode=True, campaign_waiting=1).tasks == 0


def test_a_cluster_policy_overrides_the_grid_default() -> None:
    assert policy_of("pi", CAPACITY) == PI
    assert policy_of(None, CAPACITY) == CAPACITY
    assert policy_of("bogus", TAP) == TAP


# --- the view ------------------------------------------------------------------------------------

def test_the_view_takes_other_users_from_the_sample_and_cigri_from_the_database() -> None:
    sample = UsageSample(cluster_id=1, max_resources=100, used_resources=70,
                         unavailable_resources=10, used_by_cigri=50)
    view = cluster_view(sample, running=30, waiting=5, start_latency=None, task_seconds=None)
    assert (view.capacity, view.used_by_others) == (90, 20)
    assert view.free == 90 - 20 - 30 - 5  # the sample's 50 cigri jobs are 30 now
    assert cluster_view(None, running=1, waiting=0, start_latency=None,
                        task_seconds=None).free is None


def test_start_cost_is_a_low_percentile_of_recent_starts_and_bounded() -> None:
    # the jobs that waited in the queue on purpose do not make starting look slow
    pairs = [(T0, T0 + timedelta(seconds=s)) for s in (2, 3, 40, 50, 60, 70, 80, 90, 95, 99)]
    assert start_cost([*pairs, (T0, None)]) == 3.0
    assert start_cost([(T0, T0 + timedelta(days=365))]) == 30.0  # clock skew, not a start
    assert start_cost([(T0 + timedelta(seconds=5), T0)]) == 0.0
    assert start_cost([]) is None


def test_campaigns_share_a_pass_equally_and_pass_on_what_they_cannot_take() -> None:
    assert [share(20, 2), share(10, 1)] == [10, 10]
    assert share(18, 1) == 18  # the first campaign took 2 of its 10
    assert share(7, 3) == 3 and share(0, 2) == 0


def test_the_rate_recorded_for_the_meta_scheduler_queues_ten_passes_not_ten_fills() -> None:
    # an empty cluster of 1,000: the pass wants 1,004, so at least that much must be queued, but
    # not 10 × that (the whole campaign dealt out at once; a slow cluster then holds the tail)
    empty = decide(CAPACITY, _view(capacity=1000), SETTINGS, tap_rate=2, pi=PiState(),
                   available=20)
    assert empty.queue_rate == 100  # 10 × 100 ≥ the 1,000 of the largest pass
    # a full cluster: ten passes of what 1,000 jobs of 60 s free per 5 s pass
    full = _view(capacity=1000, running=1000, waiting=400, task_seconds=60.0)
    assert decide(CAPACITY, full, SETTINGS, tap_rate=2, pi=PiState(),
                  available=20).queue_rate == 84
    assert queue_rate(wanted=0, consumed=0) == 0
