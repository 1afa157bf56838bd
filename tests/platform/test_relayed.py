"""Requests another instance routes to a client held here (cluster/relayed.py): this instance places and
judges them as its own, so the client's RPM and breaker hold for the whole cluster, and says how long a
refusal lasts when it knows."""

from arenahub.platform.attempt import Placement
from arenahub.platform.cluster import relayed
from arenahub.platform.tunnel_session import ClientGone
from arenahub.protocol import frames
from tests.platform.dispatch_support import FakeSession, dispatcher


def test_the_clients_rpm_counts_relayed_requests_with_its_own_and_says_when_a_slot_frees():
    client = FakeSession("a", [], max_concurrent=10, rpm=2)
    d = dispatcher(client)
    placed = [relayed.place(d, client, f"r{n}", b"{}", frames.CHAT) for n in range(2)]
    assert all(isinstance(p, Placement) for p in placed)
    for p in placed:
        assert isinstance(p, Placement)
        relayed.ended(d, p, frames.End(id="x"), None)
    refused = relayed.place(d, client, "r3", b"{}", frames.CHAT)
    assert isinstance(refused, relayed.NotPlaced) and refused.reason == "the client is at its rate limit"
    assert refused.retry_after is not None and 55 < refused.retry_after <= 60
    assert client.opened == ["r0", "r1"]


def test_failures_of_relayed_requests_open_the_clients_breaker_here():
    client = FakeSession("a", [], max_concurrent=10)
    d = dispatcher(client, breaker_window=4, breaker_min_requests=4)
    for n in range(4):
        p = relayed.place(d, client, f"r{n}", b"{}", frames.CHAT)
        assert isinstance(p, Placement)
        relayed.ended(d, p, frames.Error(id=f"r{n}", code="bridge_error", message="boom", status=502), None)
    refused = relayed.place(d, client, "r9", b"{}", frames.CHAT)
    assert isinstance(refused, relayed.NotPlaced) and "circuit breaker is open" in refused.reason
    assert refused.retry_after is not None and refused.retry_after > 0
    assert d.blocked(client) is not None  # and this instance's own requests go around it too


def test_what_is_not_the_clients_fault_leaves_its_breaker_closed():
    client = FakeSession("a", [], max_concurrent=10)
    d = dispatcher(client, breaker_window=4, breaker_min_requests=4)
    endings = [frames.Error(id="x", code="invalid_request", message="no", status=400), None,
               ClientGone("the platform instance is shutting down", by_platform=True),
               frames.Error(id="x", code="bad", message="no", status=404)]
    for n, last in enumerate(endings):
        p = relayed.place(d, client, f"r{n}", b"{}", frames.CHAT)
        assert isinstance(p, Placement)
        relayed.ended(d, p, last, None)
    assert d.blocked(client) is None
    assert isinstance(relayed.place(d, client, "r9", b"{}", frames.CHAT), Placement)


def test_an_upstream_429_routes_around_the_client_here_for_its_retry_after():
    client = FakeSession("a", [], max_concurrent=10)
    d = dispatcher(client)
    p = relayed.place(d, client, "r1", b"{}", frames.CHAT)
    assert isinstance(p, Placement)
    relayed.ended(d, p, frames.Error(id="r1", code="upstream_rate_limited", message="slow down", status=429,
                                     retry_after=20), None)
    refused = relayed.place(d, client, "r2", b"{}", frames.CHAT)
    assert isinstance(refused, relayed.NotPlaced) and "rate limited by its upstream" in refused.reason
    assert refused.retry_after is not None and 19 < refused.retry_after <= 20


def test_a_busy_drained_or_gone_client_is_not_placed():
    client = FakeSession("a", [], max_concurrent=1)
    d = dispatcher(client)
    assert isinstance(relayed.place(d, client, "r1", b"{}", frames.CHAT), Placement)
    assert relayed.place(d, client, "r2", b"{}", frames.CHAT) == relayed.NotPlaced("the client is busy")
    client.inflight.clear()
    client.self_draining = True
    assert relayed.place(d, client, "r3", b"{}", frames.CHAT).reason == "the client takes no requests now"
    client.self_draining, client.closed = False, True
    assert relayed.place(d, client, "r4", b"{}", frames.CHAT).reason == "the client is not connected here"
