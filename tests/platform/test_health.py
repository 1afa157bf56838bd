"""Client health: decayed speed, the circuit breaker (window, cooldown, one probe) and maintenance."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from arenahub.platform.health import HOUR, Breaker, ClientHealth, HealthPolicy

T0 = 1000.0


def health(**policy: float) -> ClientHealth:
    return ClientHealth("a", HealthPolicy(**policy))  # type: ignore[arg-type]


def tripped(**policy: float) -> ClientHealth:
    """A client whose breaker opened at T0 (min_requests failures in a row)."""
    h = health(**policy)
    for _ in range(h.policy.min_requests - 1):
        assert not h.failed(T0)
    assert h.failed(T0)
    assert h.breaker(T0) is Breaker.OPEN
    return h


def run(h: ClientHealth, outcomes: str, now: float = T0) -> list[bool]:
    """Feeds ``outcomes`` ("s" success, "f" failure) to a closed breaker; what each call returned."""
    out = []
    for o in outcomes:
        h.placed(now)
        out.append(h.succeeded(now) if o == "s" else h.failed(now))
    return out


# --- opening --------------------------------------------------------------------------------

@pytest.mark.parametrize(("outcomes", "trips_at"), [
    ("fff", None),  # every request failed, but fewer than min_requests are known
    ("ffff", 3),
    ("sfsf", 3),  # 2 of 4: exactly the ratio
    ("sssf", None),  # 1 of 4
    ("ssssf", None),
    ("sssffsf", None),  # 3 of 7 < 0.5
    ("sssfffs", 5),  # 3 of 6 on the sixth
])
def test_the_breaker_opens_exactly_when_the_failed_share_reaches_the_ratio(outcomes: str, trips_at: int | None) -> None:
    h = health(window=10, min_requests=4, failure_ratio=0.5)
    returned = run(h, outcomes)
    assert returned == [i == trips_at for i in range(len(outcomes))]
    assert h.breaker(T0) is (Breaker.CLOSED if trips_at is None else Breaker.OPEN)


def test_only_the_last_window_requests_count() -> None:
    h = health(window=10, min_requests=4, failure_ratio=0.5)
    assert not any(run(h, "s" * 20 + "ffff"))  # 4 failures among the last 10
    assert run(h, "f") == [True]  # the fifth: 5 of 10


def test_a_lower_ratio_and_a_larger_minimum_and_the_check_is_made_on_failures() -> None:
    h = health(window=5, min_requests=5, failure_ratio=0.2)
    assert run(h, "fssss") == [False] * 5  # 1 of 5 once the fifth is known, but that one succeeded
    assert run(h, "f") == [True]  # s s s s f


def test_a_failure_while_open_is_not_another_trip() -> None:
    h = tripped(cooldown=30)
    assert not h.failed(T0 + 1)  # placed before it opened
    assert h.blocked_for(T0 + 1) == pytest.approx(29)
    assert h.failures == 5


# --- cooldown and the probe -----------------------------------------------------------------

def test_an_open_breaker_blocks_for_the_cooldown_then_lets_one_probe_through() -> None:
    h = tripped(cooldown=30)
    assert h.blocked_for(T0) == pytest.approx(30)
    assert h.blocked_for(T0 + 29.5) == pytest.approx(0.5)
    assert h.breaker(T0 + 29.999) is Breaker.OPEN
    assert h.breaker(T0 + 30) is Breaker.HALF_OPEN
    assert h.blocked_for(T0 + 30) is None
    h.placed(T0 + 30)
    assert h.blocked_for(T0 + 30) == 0.0  # the probe is out: nothing else goes
    assert h.blocked_for(T0 + 500) == 0.0
    assert h.breaker(T0 + 500) is Breaker.HALF_OPEN


def test_a_successful_probe_closes_the_breaker_with_a_clean_window() -> None:
    h = tripped(cooldown=30, min_requests=4)
    h.placed(T0 + 30)
    assert h.succeeded(T0 + 31) is True
    assert h.breaker(T0 + 31) is Breaker.CLOSED and h.blocked_for(T0 + 31) is None
    # The failures that opened it are forgotten: min_requests new outcomes are needed again.
    assert run(h, "fff", T0 + 32) == [False, False, False]
    assert run(h, "f", T0 + 32) == [True]


def test_successes_of_requests_from_before_the_trip_are_forgotten_when_the_probe_closes_it() -> None:
    h = tripped(cooldown=30, min_requests=4)
    assert not h.succeeded(T0 + 1)  # placed before the breaker opened
    h.placed(T0 + 30)
    assert h.succeeded(T0 + 30)
    assert run(h, "fff", T0 + 31) == [False, False, False]


def test_a_success_while_closed_does_not_report_a_change() -> None:
    h = health()
    assert h.succeeded(T0) is False


def test_a_failed_probe_reopens_with_the_cooldown_doubled() -> None:
    h = tripped(cooldown=30)
    now = T0 + 30
    h.placed(now)
    assert h.failed(now) is True
    assert h.breaker(now) is Breaker.OPEN and h.blocked_for(now) == pytest.approx(60)
    assert h.breaker(now + 59.9) is Breaker.OPEN
    now += 60
    assert h.blocked_for(now) is None
    h.placed(now)
    assert h.failed(now)
    assert h.blocked_for(now) == pytest.approx(120)


def test_the_cooldown_doubles_per_trip_up_to_the_maximum() -> None:
    h = tripped(cooldown=30, max_cooldown=200)
    now, cooldowns = T0, []
    for _ in range(5):
        cooldown = h.blocked_for(now)
        assert cooldown is not None
        cooldowns.append(round(cooldown, 6))
        now += cooldown
        h.placed(now)
        h.failed(now)
    assert cooldowns == [30, 60, 120, 200, 200]


def test_trips_more_than_an_hour_ago_do_not_double_the_cooldown() -> None:
    h = tripped(cooldown=30)  # a trip at T0
    h.placed(T0 + 30)
    h.succeeded(T0 + 30)
    run(h, "ffff", T0 + 3599)  # within the hour of the first trip
    assert h.blocked_for(T0 + 3599) == pytest.approx(60)
    h.placed(T0 + 3659)
    h.succeeded(T0 + 3659)
    run(h, "ffff", T0 + 3599 + HOUR)  # the trip at T0 + 3599 is an hour old: neither counts
    assert h.blocked_for(T0 + 3599 + HOUR) == pytest.approx(30)


def test_a_consumer_leaving_frees_the_probe_without_deciding() -> None:
    h = tripped(cooldown=30)
    now = T0 + 30
    probe = h.placed(now)
    assert probe and h.blocked_for(now) == 0.0
    h.ended(now, probe)
    assert h.breaker(now) is Breaker.HALF_OPEN
    assert h.blocked_for(now) is None  # the next request is the probe
    assert h.placed(now) not in (0, probe)
    assert h.blocked_for(now) == 0.0
    assert h.succeeded(now)
    assert h.breaker(now) is Breaker.CLOSED


def test_a_request_ending_neither_way_leaves_a_closed_or_open_breaker_alone() -> None:
    h = health(min_requests=2)
    h.ended(T0, h.placed(T0))
    assert h.breaker(T0) is Breaker.CLOSED
    run(h, "ff")
    h.ended(T0 + 1, 0)
    assert h.breaker(T0 + 1) is Breaker.OPEN
    assert h.successes == 0 and h.failures == 2


def test_requests_placed_while_closed_are_not_probes() -> None:
    h = health()
    assert h.placed(T0) == 0
    assert h.blocked_for(T0) is None


def test_only_the_probe_leaving_frees_the_half_open_breaker() -> None:
    h = health(min_requests=1, cooldown=30)
    early = h.placed(T0)  # still in flight when the breaker opens
    h.placed(T0)
    assert h.failed(T0)
    now = T0 + 30
    probe = h.placed(now)
    h.ended(now, early)
    assert h.blocked_for(now) == 0.0  # the probe is still out
    h.ended(now, probe)
    assert h.blocked_for(now) is None


def test_a_probe_from_an_earlier_half_open_period_does_not_free_the_current_one() -> None:
    h = health(min_requests=1, cooldown=30)
    h.placed(T0)
    h.placed(T0)
    assert h.failed(T0)
    old_probe = h.placed(T0 + 30)
    assert h.failed(T0 + 30)  # the request placed before the trip fails: open again, for 60 s
    probe = h.placed(T0 + 90)
    h.ended(T0 + 90, old_probe)
    assert h.blocked_for(T0 + 90) == 0.0
    h.ended(T0 + 90, probe)
    assert h.blocked_for(T0 + 90) is None


# --- maintenance ----------------------------------------------------------------------------

def test_maintenance_after_the_set_number_of_drops_in_an_hour() -> None:
    h = health(maintenance_drops=5, min_requests=100, window=100)
    for i in range(4):
        assert not h.failed(T0 + i * 900)  # 0, 900, ... 2700 s
    assert h.maintenance is None
    assert h.failed(T0 + 3599)
    assert h.maintenance == "dropped 5 requests in the last hour"
    assert not h.failed(T0 + 3600)  # already in maintenance: no new change
    assert h.maintenance == "dropped 5 requests in the last hour"


def test_drops_spread_over_more_than_an_hour_do_not_cause_maintenance() -> None:
    h = health(maintenance_drops=5, min_requests=100, window=100)
    for i in range(20):
        assert not h.failed(T0 + i * 901)
    assert h.maintenance is None
    assert h.drops_last_hour(T0 + 19 * 901) == 4
    assert h.drops_last_hour(T0 + 19 * 901 + HOUR) == 0


def test_drops_count_while_the_breaker_is_open() -> None:
    h = health(maintenance_drops=5, min_requests=2)
    changed = [h.failed(T0) for _ in range(5)]
    assert changed == [False, True, False, False, True]  # the trip, then maintenance
    assert h.maintenance is not None and h.breaker(T0) is Breaker.OPEN


def test_zero_maintenance_drops_turns_it_off() -> None:
    h = health(maintenance_drops=0, min_requests=1000, window=1000)
    for i in range(500):
        h.failed(T0 + i)
    assert h.maintenance is None and h.drops_last_hour(T0 + 500) == 500


def test_clear_maintenance_starts_counting_again() -> None:
    h = health(maintenance_drops=3, min_requests=100, window=100)
    for _ in range(3):
        h.failed(T0)
    assert h.maintenance is not None
    h.clear_maintenance()
    assert h.maintenance is None and h.drops_last_hour(T0) == 0
    assert not h.failed(T0 + 1) and not h.failed(T0 + 2)
    assert h.maintenance is None
    assert h.failed(T0 + 3)
    assert h.maintenance == "dropped 3 requests in the last hour"


# --- speed and the snapshot ----------------------------------------------------------------

def test_speed_is_an_exponentially_weighted_average() -> None:
    h = health(ewma_alpha=0.2)
    assert h.ttft is None and h.throughput is None and h.samples == 0
    h.succeeded(T0, ttft=1.0, tokens=100, duration=2.0)  # 50 tokens/s
    assert (h.ttft, h.throughput, h.samples, h.last_sample_at) == (1.0, 50.0, 1, T0)
    h.succeeded(T0 + 1, ttft=2.0, tokens=100, duration=1.0)  # 100 tokens/s
    assert h.ttft == pytest.approx(1.2) and h.throughput == pytest.approx(60.0)
    h.succeeded(T0 + 2, ttft=0.2, tokens=0, duration=1.0)  # no text: throughput unchanged
    assert h.ttft == pytest.approx(1.0) and h.throughput == pytest.approx(60.0) and h.samples == 3
    h.succeeded(T0 + 3, ttft=1.0, tokens=10, duration=0.0)  # no duration: throughput unchanged
    assert h.throughput == pytest.approx(60.0) and h.samples == 4
    h.succeeded(T0 + 4)  # not measured (no first byte time)
    assert h.samples == 4 and h.last_sample_at == T0 + 3 and h.successes == 5


def test_snapshot_closed_and_measured() -> None:
    h = health()
    h.succeeded(T0, ttft=0.25, tokens=90, duration=3.0)
    h.failed(T0)
    assert h.snapshot(T0) == {"breaker": "closed", "breaker_retry_in": None, "maintenance": None,
                              "drops_last_hour": 1, "ttft_ms": 250.0, "tokens_per_second": 30.0,
                              "samples": 1, "successes": 1, "failures": 1}


def test_snapshot_open_half_open_and_in_maintenance() -> None:
    h = tripped(cooldown=30, maintenance_drops=4, min_requests=4)
    snap = h.snapshot(T0 + 10)
    assert snap["breaker"] == "open" and snap["breaker_retry_in"] == 20.0
    assert snap["maintenance"] == "dropped 4 requests in the last hour" and snap["drops_last_hour"] == 4
    assert snap["ttft_ms"] is None and snap["tokens_per_second"] is None
    assert snap["samples"] == 0 and snap["successes"] == 0 and snap["failures"] == 4
    half = h.snapshot(T0 + 30)
    assert half["breaker"] == "half_open" and half["breaker_retry_in"] is None
    assert h.snapshot(T0 + HOUR)["drops_last_hour"] == 0


# --- properties -----------------------------------------------------------------------------

policies = st.builds(HealthPolicy, window=st.integers(1, 6), min_requests=st.integers(1, 4),
                     failure_ratio=st.sampled_from([0.25, 0.5, 1.0]), cooldown=st.sampled_from([1.0, 5.0]),
                     max_cooldown=st.sampled_from([5.0, 60.0]), maintenance_drops=st.integers(0, 6))
# Each step: place a request, end one in flight (success, failure, consumer gone), or let time pass.
steps = st.lists(st.one_of(st.just(("place", 0)),
                           st.tuples(st.sampled_from(["succeed", "fail", "end"]), st.integers(0, 3)),
                           st.tuples(st.just("wait"), st.sampled_from([0.5, 1.0, 10.0, 100.0, 1000.0]))),
                 min_size=10, max_size=60)


@settings(max_examples=500, deadline=None)
@given(policies, steps)
@example(HealthPolicy(min_requests=1, cooldown=1.0),  # a request from before the trip leaves while the probe is out
         [("place", 0), ("place", 0), ("fail", 0), ("wait", 1.0), ("place", 0), ("end", 0), ("place", 0)])
def test_a_half_open_breaker_never_has_two_probes_out(policy: HealthPolicy, script: list[tuple[str, float]]) -> None:
    h = ClientHealth("a", policy)
    now = T0
    inflight: list[tuple[int, int]] = []  # (request number, what placed returned)
    probes: set[int] = set()  # those placed while half-open, in this half-open period
    state = h.breaker(now)
    for n, (op, arg) in enumerate(script):
        if op == "place":
            if h.blocked_for(now) is not None:
                continue
            if h.breaker(now) is Breaker.HALF_OPEN:
                assert not probes & {r for r, _ in inflight}, "a second probe went out while the first was in flight"
                probes.add(n)
            inflight.append((n, h.placed(now)))
        elif op == "wait":
            now += arg
        elif inflight:
            _, probe = inflight.pop(int(arg) % len(inflight))
            if op == "end":
                h.ended(now, probe)
            else:
                (h.succeeded if op == "succeed" else h.failed)(now)
        new = h.breaker(now)
        if new is not Breaker.HALF_OPEN or state is not Breaker.HALF_OPEN:
            probes.clear()  # a new period (or none): earlier probes were decided
        state = new
        blocked = h.blocked_for(now)
        assert blocked is None or blocked >= 0
        assert (blocked is not None and blocked > 0) == (h.breaker(now) is Breaker.OPEN)


@settings(max_examples=200, deadline=None)
@given(policies, steps)
def test_a_client_that_never_fails_never_trips(policy: HealthPolicy, script: list[tuple[str, float]]) -> None:
    h = ClientHealth("a", policy)
    now, inflight = T0, 0
    for op, arg in script:
        if op == "place":
            h.placed(now)
            inflight += 1
        elif op == "wait":
            now += arg
        elif inflight:
            inflight -= 1
            h.ended(now, 0) if op == "end" else h.succeeded(now)
        assert h.breaker(now) is Breaker.CLOSED and h.blocked_for(now) is None
    assert h.maintenance is None and h.failures == 0 and h.drops_last_hour(now) == 0
