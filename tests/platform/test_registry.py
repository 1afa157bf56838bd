"""The client registries: this instance's own, and the cluster view the dispatcher routes over."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from arenahub.platform.registry import ClusterView, LocalClientRegistry, served_models


def session(client_id: str, *models: str, available: bool = True) -> Any:
    return SimpleNamespace(client_id=client_id, models=set(models), available=available, moving=False)


def test_served_models_are_those_of_the_sessions_that_can_answer() -> None:
    sessions = [session("a", "m1", "m2"), session("b", "m2", "m3"), session("c", "m4", available=False)]
    assert served_models(sessions) == {"m1", "m2", "m3"}
    assert served_models([]) == set()


def test_the_cluster_view_serves_the_models_of_both_its_own_and_the_other_instances_clients() -> None:
    local = LocalClientRegistry()
    local.add(session("a", "m1"))
    local.add(session("b", "m2", available=False))
    remote = [session("a", "m9"), session("c", "m3")]  # "a" is connected here too: this instance's copy counts
    assert local.models() == {"m1"}
    assert ClusterView(local, lambda: iter(remote)).models() == {"m1", "m3"}
