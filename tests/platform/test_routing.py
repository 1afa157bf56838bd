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
