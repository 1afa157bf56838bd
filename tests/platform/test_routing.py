from dataclasses import dataclass, field

import pytest

from arenahub.platform.routing import NoRoute, least_load


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
