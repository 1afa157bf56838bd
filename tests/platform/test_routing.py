import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from arenahub.platform.routing import (
    STRATEGIES,
    Fastest,
    LeastLoad,
    NoRoute,
    Priority,
    RoundRobin,
    WeightedRandom,
    least_load,
    make_strategy,
    select,
)


@dataclass
class Fake:
    client_id: str
    max_concurrent: int
    active: int = 0
    available: bool = True
    models: set = field(default_factory=lambda: {"m"})
    priority: int = 0
    weight: int = 1
    draining: bool = False

    def serves(self, model):
        return model in self.models


def test_picks_lowest_relative_load():
    a, b = Fake("a", 4, active=2), Fake("b", 10, active=3)
    assert least_load([a, b], "m") is b


def test_ties_go_to_larger_capacity():
    assert least_load([Fake("a", 2), Fake("b", 8)], "m").client_id == "b"


def test_never_exceeds_max_concurrent():
    with pytest.raises(NoRoute, match="concurrency limit"):
        least_load([Fake("a", 2, active=2)], "m")


def test_skips_excluded_unhealthy_and_other_models():
    clients = [Fake("a", 4), Fake("b", 4, available=False), Fake("c", 4, models={"other"}), Fake("d", 4, active=1)]
    assert least_load(clients, "m", exclude={"a"}).client_id == "d"


@pytest.mark.parametrize("clients, exclude, fragment", [
    ([], set(), "no connected client serves model 'm'"),
    ([Fake("a", 1, models={"x"})], set(), "no connected client serves"),
    ([Fake("a", 1)], {"a"}, "failed this request"),
    ([Fake("a", 1, available=False), Fake("b", 1, active=1)], set(), "1 unhealthy, 1 at capacity"),
])
def test_no_route_says_why(clients, exclude, fragment):
    with pytest.raises(NoRoute, match=fragment):
        least_load(clients, "m", exclude)


def waits(**seconds):
    """A ``rate_wait`` holding back the named clients for the given seconds."""
    return lambda c: seconds.get(c.client_id, 0.0)


def test_clients_at_their_rate_limit_are_skipped_for_the_least_loaded_of_the_rest():
    clients = [Fake("a", 8), Fake("b", 4, active=3), Fake("c", 4, active=1), Fake("d", 4, active=2)]
    assert least_load(clients, "m", rate_wait=waits(a=12.0)).client_id == "c"
    assert least_load(clients, "m", rate_wait=waits(a=12.0, c=3.0)).client_id == "d"
    assert least_load(clients, "m", rate_wait=waits()).client_id == "a"


def test_all_at_their_rate_limit_says_so_and_when_the_soonest_frees():
    clients = [Fake("a", 4), Fake("b", 4), Fake("c", 4, models={"x"})]
    with pytest.raises(NoRoute, match=r"all 2 client\(s\) serving model 'm' are at their rate limit") as info:
        least_load(clients, "m", rate_wait=waits(a=12.5, b=7.25, c=1.0))
    assert info.value.retry_after == 7.25


def test_rate_limit_among_other_reasons_is_counted_and_has_no_retry_after():
    clients = [Fake("a", 1, available=False), Fake("b", 1, active=1), Fake("c", 2)]
    with pytest.raises(NoRoute, match=r"1 unhealthy, 1 at capacity, 1 at their rate limit") as info:
        least_load(clients, "m", rate_wait=waits(c=5.0))
    assert info.value.retry_after is None


def test_rate_wait_is_asked_only_of_clients_that_could_take_the_request():
    asked = []

    def rate_wait(c):
        asked.append(c.client_id)
        return 0.0

    clients = [Fake("a", 4, active=1), Fake("b", 4, active=4), Fake("c", 4, available=False), Fake("d", 4),
               Fake("e", 4, draining=True), Fake("f", 4, models={"x"})]
    assert least_load(clients, "m", rate_wait=rate_wait).client_id == "d"
    assert asked == ["a", "d"]


# --- the strategies -------------------------------------------------------------------------

@dataclass
class Speed:
    ttft: float | None = None
    throughput: float | None = None
    samples: int = 0


def speeds(**by_id):
    return lambda client_id: by_id.get(client_id)


def picks(strategy, clients, n, model="m"):
    return Counter(strategy.choose(clients, model).client_id for _ in range(n))


def test_make_strategy_knows_every_name_and_refuses_others():
    assert [make_strategy(name, speeds()).name for name in STRATEGIES] == list(STRATEGIES)
    with pytest.raises(ValueError, match="unknown routing strategy 'best'"):
        make_strategy("best", speeds())


def test_least_load_ignores_weight_and_priority():
    clients = [Fake("a", 4, active=1, weight=100, priority=9), Fake("b", 4)]
    assert LeastLoad().choose(clients, "m").client_id == "b"


def test_round_robin_cycles_in_client_id_order():
    rr = RoundRobin()
    clients = [Fake("c", 4), Fake("a", 4), Fake("b", 4)]
    assert [rr.choose(clients, "m").client_id for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_keeps_a_turn_per_model():
    rr = RoundRobin()
    clients = [Fake("a", 4, models={"m", "n"}), Fake("b", 4, models={"m", "n"})]
    assert rr.choose(clients, "m").client_id == "a"
    assert rr.choose(clients, "n").client_id == "a"
    assert rr.choose(clients, "m").client_id == "b"
    assert rr.choose(clients, "n").client_id == "b"


def test_round_robin_skips_clients_that_are_not_ready():
    rr = RoundRobin()
    a, b, c, d = Fake("a", 4), Fake("b", 1), Fake("c", 4, draining=True), Fake("d", 4)
    chosen = []
    for i in range(6):
        b.active = 1 if i in (1, 2) else 0  # b is full for two turns
        chosen.append(select([a, b, c, d], "m", rr).client_id)
    assert chosen == ["a", "d", "a", "b", "d", "a"]


def test_round_robin_carries_on_after_the_last_client_leaves():
    rr = RoundRobin()
    assert rr.choose([Fake("a", 4), Fake("b", 4), Fake("c", 4)], "m").client_id == "a"
    assert rr.choose([Fake("a", 4), Fake("b", 4), Fake("c", 4)], "m").client_id == "b"
    assert rr.choose([Fake("a", 4), Fake("c", 4)], "m").client_id == "c"  # b left: the next after it
    assert rr.choose([Fake("a", 4), Fake("b", 4)], "m").client_id == "a"  # c left: wrap around


def test_weighted_random_follows_the_weights():
    clients = [Fake("a", 4, weight=1), Fake("b", 4, weight=3), Fake("c", 4, weight=0)]  # 0 counts as 1
    counts = picks(WeightedRandom(random.Random(7)), clients, 10_000)
    assert counts["b"] / 10_000 == pytest.approx(0.6, abs=0.02)
    assert counts["a"] / 10_000 == pytest.approx(0.2, abs=0.02)
    assert counts["c"] / 10_000 == pytest.approx(0.2, abs=0.02)


def test_weighted_random_with_a_seed_is_repeatable():
    clients = [Fake(x, 4, weight=w) for x, w in zip("abcd", (1, 2, 3, 4), strict=True)]
    one, two = WeightedRandom(random.Random(3)), WeightedRandom(random.Random(3))
    first = [one.choose(clients, "m").client_id for _ in range(50)]
    assert [two.choose(clients, "m").client_id for _ in range(50)] == first
    assert len(set(first)) == 4


def no_explore(speed):
    return Fastest(speed, random.Random(0), explore=0.0)


def test_fastest_picks_the_lowest_expected_time():
    # a: 1 s + 100 tokens at 100/s = 2 s; b: 0.5 s + 100 at 50/s = 2.5 s; c: 3 s, no throughput known.
    speed = speeds(a=Speed(1.0, 100.0, 5), b=Speed(0.5, 50.0, 5), c=Speed(3.0, None, 5))
    fastest = no_explore(speed)
    clients = [Fake("b", 4), Fake("a", 4), Fake("c", 4)]
    assert fastest.expected(clients[1]) == pytest.approx(2.0)
    assert fastest.expected(clients[2]) == pytest.approx(3.0)
    assert fastest.choose(clients, "m").client_id == "a"


def test_fastest_scales_the_expected_time_by_load():
    speed = speeds(a=Speed(1.0, 100.0, 5), b=Speed(0.5, 50.0, 5))
    fastest = no_explore(speed)
    a, b = Fake("a", 4, active=2), Fake("b", 4)  # a: 2 s * 1.5 = 3 s > b: 2.5 s
    assert fastest.expected(a) == pytest.approx(3.0)
    assert fastest.choose([a, b], "m").client_id == "b"
    a.active = 1  # 2 s * 1.25 = 2.5 s: a tie goes to the first
    b.active = 1  # 2.5 s * 1.25
    assert fastest.choose([a, b], "m").client_id == "a"


def test_fastest_measures_unmeasured_clients_first():
    speed = speeds(a=Speed(0.1, 1000.0, 10), b=Speed(5.0, 1.0, 2), d=Speed(None, None, 0))
    fastest = no_explore(speed)
    a, b, c = Fake("a", 4), Fake("b", 4), Fake("c", 4)  # c: never measured
    assert fastest.expected(b) == -1.0 and fastest.expected(c) == -1.0
    assert fastest.choose([a, b, c], "m").client_id == "b"  # least loaded unmeasured (b first on a tie)
    b.active = 1  # b: 2 answered + 1 in flight will measure it; c still needs requests
    assert fastest.choose([a, b, c], "m").client_id == "c"
    c.active = 3
    assert fastest.choose([a, b, c], "m").client_id == "a"  # both will be measured: back to the fastest


def test_fastest_with_only_unmeasured_clients_spreads_the_load():
    fastest = no_explore(speeds())
    clients = [Fake("a", 4, active=3), Fake("b", 8, active=4), Fake("c", 4, active=3)]
    assert fastest.choose(clients, "m").client_id == "b"  # none needs measuring, none is measured


def test_fastest_explores_about_five_percent_of_the_time():
    speed = speeds(a=Speed(0.1, 1000.0, 10), b=Speed(5.0, 1.0, 10), c=Speed(9.0, 1.0, 10))
    fastest = Fastest(speed, random.Random(11))
    counts = picks(fastest, [Fake("a", 4), Fake("b", 4), Fake("c", 4)], 20_000)
    # 5% of choices are uniform over the three: 1/3 of those land on a anyway.
    assert (counts["b"] + counts["c"]) / 20_000 == pytest.approx(0.05 * 2 / 3, abs=0.006)
    assert counts["b"] == pytest.approx(counts["c"], rel=0.25)


def test_fastest_with_exploration_off_never_strays():
    speed = speeds(a=Speed(0.1, 1000.0, 10), b=Speed(5.0, 1.0, 10))
    assert picks(no_explore(speed), [Fake("a", 4), Fake("b", 4)], 1000) == {"a": 1000}


def test_priority_picks_only_from_the_top_priority_and_by_weight_within_it():
    clients = [Fake("low", 4, priority=1, weight=100), Fake("a", 4, priority=5, weight=1),
               Fake("b", 4, priority=5, weight=4), Fake("neg", 4, priority=-1)]
    counts = picks(Priority(random.Random(5)), clients, 10_000)
    assert set(counts) == {"a", "b"}
    assert counts["b"] / 10_000 == pytest.approx(0.8, abs=0.02)


def test_priority_falls_to_the_next_group_when_the_top_is_not_ready():
    top = Fake("top", 1, priority=9, active=1)
    clients = [top, Fake("mid", 4, priority=5), Fake("low", 4, priority=1)]
    assert {select(clients, "m", Priority(random.Random(1))).client_id for _ in range(50)} == {"mid"}
    top.active = 0
    assert {select(clients, "m", Priority(random.Random(1))).client_id for _ in range(50)} == {"top"}


# --- select: who is ready -------------------------------------------------------------------

class Refuse:
    """A strategy that must not be asked."""

    name = "refuse"

    def choose(self, ready, model):
        raise AssertionError(f"asked to choose among {[c.client_id for c in ready]}")


def blocks(**why):
    """A ``blocked`` callback: each named client's (kind, seconds until it may or None)."""
    return lambda c: why.get(c.client_id)


def no_route(clients, **kwargs):
    with pytest.raises(NoRoute) as info:
        select(clients, "m", LeastLoad(), **kwargs)
    return info.value


def test_a_single_ready_client_is_taken_without_asking_the_strategy():
    clients = [Fake("a", 4, active=4), Fake("b", 4), Fake("c", 4, draining=True)]
    assert select(clients, "m", Refuse()).client_id == "b"


def test_draining_and_blocked_clients_are_not_ready():
    clients = [Fake("a", 8), Fake("b", 8, draining=True), Fake("c", 8), Fake("d", 8), Fake("e", 4)]
    blocked = blocks(a=("maintenance", None), c=("cooling", 5.0), d=("probing", None))
    assert select(clients, "m", LeastLoad(), blocked=blocked).client_id == "e"


def test_blocked_is_asked_only_of_connected_clients_that_are_not_draining():
    asked = []

    def blocked(c):
        asked.append(c.client_id)

    clients = [Fake("a", 4, available=False), Fake("b", 4, draining=True), Fake("c", 4, active=4), Fake("d", 4),
               Fake("e", 4, models={"x"})]
    select(clients, "m", LeastLoad(), blocked=blocked)
    assert asked == ["c", "d"]


def test_only_the_pinned_client_is_considered():
    clients = [Fake("a", 8), Fake("b", 2, active=1), Fake("c", 8)]
    assert select(clients, "m", LeastLoad(), pinned="b").client_id == "b"
    error = no_route(clients, pinned="zz")
    assert str(error) == ("client 'zz' is not connected, does not serve model 'm', or already failed this request")
    assert not error.busy
    error = no_route(clients, pinned="b", exclude={"b"})
    assert "already failed this request" in str(error)


def test_a_pinned_client_at_capacity_is_busy():
    error = no_route([Fake("a", 8), Fake("b", 1, active=1)], pinned="b")
    assert error.busy and error.retry_after is None and "client 'b'" in str(error)
    assert "concurrency limit" in str(error)


def test_sticky_goes_to_the_conversations_client_while_it_is_ready():
    clients = [Fake("a", 4, active=3), Fake("b", 4), Fake("c", 4, active=1)]
    assert select(clients, "m", LeastLoad(), sticky="a").client_id == "a"
    assert select(clients, "m", Refuse(), sticky="c").client_id == "c"


@pytest.mark.parametrize("change", [
    {"active": 4}, {"draining": True}, {"available": False}, {"models": {"x"}},
])
def test_sticky_is_ignored_when_its_client_is_not_ready(change):
    a = Fake("a", 4, active=1)
    for name, value in change.items():
        setattr(a, name, value)
    assert select([a, Fake("b", 4, active=2), Fake("c", 4)], "m", LeastLoad(), sticky="a").client_id == "c"


def test_sticky_is_ignored_when_its_client_is_blocked_limited_or_excluded():
    clients = [Fake("a", 4), Fake("b", 4, active=1)]
    assert select(clients, "m", LeastLoad(), sticky="b", blocked=blocks(b=("cooling", 3.0))).client_id == "a"
    assert select(clients, "m", LeastLoad(), sticky="b", rate_wait=waits(b=3.0)).client_id == "a"
    assert select(clients, "m", LeastLoad(), sticky="b", exclude={"b"}).client_id == "a"
    assert select(clients, "m", LeastLoad(), sticky="gone").client_id == "a"


# --- select: why nothing is ready -----------------------------------------------------------

def test_every_client_excluded_says_each_failed():
    error = no_route([Fake("a", 4), Fake("b", 4)], exclude={"a", "b"})
    assert str(error) == "every client serving model 'm' failed this request" and not error.busy


def test_every_client_at_capacity_is_busy_without_a_known_wait():
    error = no_route([Fake("a", 1, active=1), Fake("b", 2, active=2)])
    assert str(error) == "all 2 client(s) serving model 'm' are at their concurrency limit"
    assert error.busy and error.retry_after is None


def test_every_client_cooling_is_not_busy_and_says_when_the_first_is_back():
    error = no_route([Fake("a", 4), Fake("b", 4)], blocked=blocks(a=("cooling", 20.0), b=("cooling", 7.5)))
    assert str(error) == "the 2 client(s) serving model 'm' are unhealthy or busy (2 cooling down after failures)"
    assert not error.busy and error.retry_after == 7.5


def test_a_probe_in_flight_is_busy_and_hides_the_cooldown():
    error = no_route([Fake("a", 4), Fake("b", 4)], blocked=blocks(a=("probing", None), b=("cooling", 7.5)))
    assert "1 cooling down after failures, 1 being probed" in str(error)
    assert error.busy and error.retry_after is None


def test_a_full_client_hides_a_known_wait():
    error = no_route([Fake("a", 1, active=1), Fake("b", 4)], rate_wait=waits(b=4.0))
    assert "1 at capacity, 1 at their rate limit" in str(error)
    assert error.busy and error.retry_after is None


def test_a_rate_limit_and_a_cooldown_give_the_sooner_wait():
    error = no_route([Fake("a", 4), Fake("b", 4)], rate_wait=waits(a=9.0), blocked=blocks(b=("cooling", 3.0)))
    assert error.busy and error.retry_after == 3.0
    error = no_route([Fake("a", 4), Fake("b", 4)], rate_wait=waits(a=2.0), blocked=blocks(b=("cooling", 3.0)))
    assert error.retry_after == 2.0


def test_maintenance_offline_and_draining_are_not_busy():
    clients = [Fake("a", 4), Fake("b", 4, available=False), Fake("c", 4, draining=True)]
    error = no_route(clients, blocked=blocks(a=("maintenance", None)))
    assert str(error) == ("the 3 client(s) serving model 'm' are unhealthy or busy "
                          "(1 unhealthy, 1 draining, 1 in maintenance)")
    assert not error.busy and error.retry_after is None


def test_every_reason_is_counted_in_order():
    clients = [Fake("a", 4, available=False), Fake("b", 4, draining=True), Fake("c", 4), Fake("d", 4),
               Fake("e", 4), Fake("f", 1, active=1), Fake("g", 4), Fake("h", 4, models={"x"})]
    error = no_route(clients, blocked=blocks(c=("maintenance", None), d=("cooling", 1.0), e=("probing", None)),
                     rate_wait=waits(g=1.0), exclude={"zz"})
    assert str(error).endswith("(1 unhealthy, 1 draining, 1 in maintenance, 1 cooling down after failures, "
                               "1 being probed, 1 at capacity, 1 at their rate limit)")
    assert str(error).startswith("the 7 client(s) serving model 'm'")
    assert error.busy and error.retry_after is None
