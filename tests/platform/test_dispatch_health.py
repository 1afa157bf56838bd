"""Dispatch against fake client sessions: the circuit breaker and a client's errors, pinning and affinity,
the strategy in use, account changes and drain."""

import asyncio

import pytest

from arenahub.platform.accounting.limits import Limits
from arenahub.platform.storage.accounts import ClientAccount
from arenahub.platform.tunnel_session import ClientGone
from arenahub.protocol.errors import ApiError, NoClientAvailable, UpstreamError
from tests.platform.dispatch_support import (
    Clock,
    FakeSession,
    chunk,
    dispatcher,
    end,
    error,
    exchange,
    finish,
    serve,
    settle,
)

BREAKER = {"breaker_window": 4, "breaker_min_requests": 2, "breaker_failure_ratio": 0.5,
           "breaker_cooldown_seconds": 30.0}


async def attempt(d, ex=None):
    """One consumer request: the client that answered it, or the error the consumer got."""
    try:
        return await serve(d, ex)
    except ApiError as exc:
        return exc


@pytest.mark.parametrize("failure", [
    [ClientGone("killed")],
    [error(503, retryable=True)],
    [error(500)],  # not retried, but the client's fault
    [],  # nothing before the first-byte timeout
    # (a 429 routes around the client until its Retry-After: test_dispatch_upstream_limits.py)
])
async def test_a_failing_client_is_cooled_down_then_probed_once(failure):
    bad = FakeSession("bad", failure, max_concurrent=8)  # preferred: more capacity
    good = FakeSession("good", [chunk("x"), end])
    d = dispatcher(bad, good, first_byte_timeout_seconds=0.05, **BREAKER)
    d.clock = clock = Clock()
    changes = []
    d.on_routing_change = changes.append
    for _ in range(2):
        await attempt(d)
    assert len(bad.opened) == 2 and changes == ["bad"]
    assert d.health["bad"].snapshot(clock.now)["breaker"] == "open"
    for _ in range(4):
        assert await attempt(d) == "good"
    clock.now += 29.9
    assert await attempt(d) == "good" and len(bad.opened) == 2
    clock.now += 0.1
    bad.script = [chunk("x")]  # the client is back; its probe hangs until it is ended below
    probe = await d.start(exchange(id="probe"))
    assert probe.session is bad
    for _ in range(3):
        assert await attempt(d) == "good"  # only one probe at a time
    assert len(bad.opened) == 3
    await finish(probe, "probe")
    assert changes == ["bad", "bad"]  # closed again
    bad.script = [chunk("x"), end]
    assert await attempt(d) == "bad"


async def test_the_last_client_cooling_down_is_a_503_at_once_with_its_cooldown():
    bad = FakeSession("bad", [ClientGone("killed")])
    d = dispatcher(bad, **BREAKER)
    d.clock = clock = Clock()
    for _ in range(2):
        assert isinstance(await attempt(d), UpstreamError)
    clock.now += 12.5
    with pytest.raises(NoClientAvailable, match="cooling down after failures") as info:
        await asyncio.wait_for(d.start(exchange()), 0.5)
    assert info.value.headers == {"Retry-After": "18"}


async def test_a_request_waits_while_the_probe_is_out_and_goes_once_it_succeeded():
    bad = FakeSession("bad", [ClientGone("killed")])
    d = dispatcher(bad, queue_timeout_seconds=5, **BREAKER)
    d.clock = clock = Clock()
    for _ in range(2):
        await attempt(d)
    clock.now += 30
    bad.script = [chunk("x")]
    probe = await d.start(exchange(id="probe"))
    waiting = asyncio.create_task(d.start(exchange(id="next")))
    await settle()
    assert d.queued == 1 and bad.opened[-1] == "probe"
    await finish(probe, "probe")
    follow = await asyncio.wait_for(waiting, 1)
    assert follow.session is bad and bad.opened[-1] == "next"
    await finish(follow, "next")


async def test_a_probe_whose_consumer_leaves_lets_the_next_request_probe():
    bad = FakeSession("bad", [ClientGone("killed")], max_concurrent=8)
    good = FakeSession("good", [chunk("x"), end])
    d = dispatcher(bad, good, **BREAKER)
    d.clock = clock = Clock()
    for _ in range(2):
        await attempt(d)
    clock.now += 30
    bad.script = [chunk("x")]
    probe = await d.start(exchange(id="p1"))
    assert await attempt(d) == "good"
    probe.abandon("consumer disconnected")
    assert d.health["bad"].snapshot(clock.now)["breaker"] == "half_open"
    again = await d.start(exchange(id="p2"))
    assert again.session is bad
    again.abandon("consumer disconnected")


async def test_a_request_from_before_the_trip_leaving_does_not_free_the_probe():
    bad = FakeSession("bad", [chunk("x")], max_concurrent=8)
    good = FakeSession("good", [chunk("x"), end])
    d = dispatcher(bad, good, queue_timeout_seconds=0.1, **BREAKER)
    d.clock = clock = Clock()
    early = await d.start(pinned("bad", id="early"))  # still in flight when the breaker opens
    bad.script = [ClientGone("killed")]
    for i in range(2):
        assert isinstance(await attempt(d, pinned("bad", id=f"f{i}")), UpstreamError)
    clock.now += 30
    bad.script = [chunk("x")]
    probe = await d.start(pinned("bad", id="probe"))
    early.abandon("consumer disconnected")
    with pytest.raises(NoClientAvailable, match="1 being probed"):
        await d.start(pinned("bad", id="second"))
    assert "second" not in bad.opened
    await finish(probe, "probe")
    assert d.health["bad"].snapshot(clock.now)["breaker"] == "closed"


@pytest.mark.parametrize(("status", "retryable"), [(500, False), (502, False), (503, True)])
async def test_a_clients_server_errors_count_against_its_health(status, retryable):
    client = FakeSession("a", [error(status, retryable)])
    d = dispatcher(client, **BREAKER)
    d.clock = Clock()
    results = [type(await attempt(d)) for _ in range(5)]
    health = d.health["a"]
    assert results == [UpstreamError] * 2 + [NoClientAvailable] * 3  # the breaker opened after two
    assert (health.failures, health.successes, len(client.opened)) == (2, 0, 2)


@pytest.mark.parametrize("status", [400, 403, 404, 422])
async def test_a_client_refusing_what_another_serves_loses_its_traffic(status):
    """A client that refuses everything (4xx) must lose its traffic as one that fails does (issue 11):
    its refusals count once another client serves the same request. A 429 is apart
    (test_dispatch_upstream_limits.py)."""
    refuser = FakeSession("a", [error(status)])
    good = FakeSession("b", [chunk("ok"), end])
    d = dispatcher(refuser, good, routing_strategy="round_robin", **BREAKER)
    d.clock = Clock()
    served = [await attempt(d) for _ in range(6)]
    assert served == ["b"] * 6  # each refused request was retried on b before its first byte
    assert d.health["a"].failures == 2 and len(refuser.opened) == 2  # then its breaker opened


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_a_request_every_client_refuses_counts_against_none(status):
    """A consumer cannot trip the clients' breakers with requests that every client refuses."""
    a, b = FakeSession("a", [error(status)]), FakeSession("b", [error(status)])
    d = dispatcher(a, b, **BREAKER)
    d.clock = Clock()
    results = [type(await attempt(d)) for _ in range(5)]
    assert results == [UpstreamError] * 5
    assert d.health["a"].failures == d.health["b"].failures == 0


async def test_failures_and_successes_mid_answer_feed_the_health():
    client = FakeSession("a", [chunk("abcdefgh"), ClientGone("socket closed")])
    d = dispatcher(client, **BREAKER)
    d.clock = Clock()
    with pytest.raises(UpstreamError):
        await serve(d)
    assert d.health["a"].failures == 1
    client.script = [chunk("x")]
    left = await d.start(exchange(id="left"))
    left.abandon("consumer disconnected")  # neither way
    assert (d.health["a"].failures, d.health["a"].successes) == (1, 0)
    client.script = [chunk("hello"), chunk("abcdefgh"), end]
    await serve(d)
    health = d.health["a"]
    assert health.successes == 1 and health.samples == 1 and health.ttft is not None


async def test_maintenance_after_the_drops_in_an_hour_is_reported_and_cleared_by_an_admin():
    bad = FakeSession("bad", [ClientGone("killed")], max_concurrent=8)
    good = FakeSession("good", [chunk("x"), end])
    d = dispatcher(bad, good, maintenance_drops_per_hour=3, breaker_min_requests=100, breaker_window=100)
    d.clock = clock = Clock()
    changes = []
    d.on_routing_change = changes.append
    for _ in range(3):
        assert await attempt(d) == "good"
        clock.now += 600
    assert changes == ["bad"] and d.health["bad"].maintenance == "dropped 3 requests in the last hour"
    assert [await attempt(d) for _ in range(3)] == ["good"] * 3 and len(bad.opened) == 3
    bad.script = [chunk("x"), end]
    d.apply_account(account("bad", max_concurrent=8))
    assert d.health["bad"].maintenance is None and d.health["bad"].drops_last_hour(clock.now) == 0
    assert await attempt(d) == "bad"


# -- pinning and affinity --------------------------------------------------------------------------
def pinned(client_id, **kwargs):
    ex = exchange(**kwargs)
    ex.pinned_client = client_id
    return ex


async def test_a_pinned_request_goes_only_to_its_client():
    a = FakeSession("a", [chunk("x"), end], max_concurrent=8)
    b = FakeSession("b", [chunk("x"), end])
    d = dispatcher(a, b)
    assert [await serve(d, pinned("b", id=f"r{i}")) for i in range(3)] == ["b"] * 3
    assert a.opened == []


@pytest.mark.parametrize("failure", [[ClientGone("killed")], [error(503, retryable=True)]])
async def test_a_pinned_request_is_not_retried_elsewhere(failure):
    a = FakeSession("a", [chunk("x"), end], max_concurrent=8)
    b = FakeSession("b", failure)
    d = dispatcher(a, b)
    ex = pinned("b")
    with pytest.raises(UpstreamError):
        await d.start(ex)
    assert a.opened == [] and ex.attempts == 1


async def test_a_pinned_request_waits_for_its_busy_client_and_is_refused_for_an_absent_one():
    a = FakeSession("a", [chunk("x"), end], max_concurrent=8)
    b = FakeSession("b", [chunk("x")], max_concurrent=1)
    d = dispatcher(a, b, queue_timeout_seconds=5)
    first = await d.start(pinned("b", id="r0"))
    task = asyncio.create_task(d.start(pinned("b", id="r1")))
    await settle()
    assert d.queued == 1 and a.opened == []
    await finish(first, "r0")
    second = await asyncio.wait_for(task, 1)
    assert second.session is b
    await finish(second, "r1")
    with pytest.raises(NoClientAvailable, match="client 'zz' is not connected"):
        await asyncio.wait_for(d.start(pinned("zz")), 0.5)


def conversation(key, id="r1"):
    ex = exchange(id=id)
    ex.affinity_key = key
    return ex


async def test_a_conversation_sticks_to_its_client_while_it_is_ready():
    a = FakeSession("a", [chunk("x")], max_concurrent=8)
    b = FakeSession("b", [chunk("x"), end], max_concurrent=4)
    d = dispatcher(a, b)
    held = await d.start(conversation("c1", id="first"))  # a: more capacity
    assert held.session is a
    assert await serve(d) == "b"  # a is busier now: least_load goes to b ...
    a.script = [chunk("x"), end]
    assert await serve(d, conversation("c1", id="r2")) == "a"  # ... but the conversation stays on a
    assert await serve(d, conversation("c2", id="r3")) == "b"
    assert await serve(d, conversation("c2", id="r4")) == "b"
    a.admin_draining = True
    assert await serve(d, conversation("c1", id="r5")) == "b"  # its client cannot take it: it moves
    a.admin_draining = False
    assert await serve(d, conversation("c1", id="r6")) == "b"  # and stays where it moved
    await finish(held, "first")


async def test_a_conversation_moves_when_its_client_is_full_or_cooling():
    a = FakeSession("a", [chunk("x")], max_concurrent=1)
    b = FakeSession("b", [chunk("x"), end], max_concurrent=1)
    d = dispatcher(a, b, **BREAKER)
    d.clock = Clock()
    held = await d.start(conversation("c1", id="first"))
    assert held.session is a
    assert await serve(d, conversation("c1", id="r2")) == "b"
    await finish(held, "first")
    a.script = [ClientGone("killed")]
    for i in range(2):
        await attempt(d, conversation("c3", id=f"f{i}"))  # a fails twice: its breaker opens
    assert d.health["a"].snapshot(d.clock())["breaker"] == "open"
    assert await serve(d, conversation("c3", id="r3")) == "b"


# -- strategy, accounts, drain ---------------------------------------------------------------------
def with_preferences(*names):
    sessions = []
    for i, name in enumerate(names):
        s = FakeSession(f"c{i}", [chunk("x"), end])
        s.preferred_strategy = name
        sessions.append(s)
    return sessions


@pytest.mark.parametrize(("preferences", "expected"), [
    ((), "least_load"),
    ((None, None), "least_load"),
    (("round_robin",), "round_robin"),
    (("fastest", "round_robin", "fastest", None, None, None), "fastest"),
    (("fastest", "round_robin"), "least_load"),  # a tie
    (("bogus", "bogus", "priority"), "priority"),  # unknown names do not vote
])
def test_the_strategy_is_what_most_clients_prefer(preferences, expected):
    assert dispatcher(*with_preferences(*preferences)).strategy_name == expected


def test_the_strategy_setting_overrides_the_clients():
    d = dispatcher(*with_preferences("fastest", "fastest"), routing_strategy="priority")
    assert d.strategy_name == "priority" and d._strategy().name == "priority"


async def test_the_preferred_strategy_is_recomputed_when_clients_come_and_go():
    d = dispatcher(*with_preferences("random", "random", "fastest"))
    assert d.strategy_name == "random" and d._strategy().name == "random"
    extra = with_preferences(None, None, None, "fastest", "fastest")
    for s in extra[3:]:
        s.client_id = f"x{s.client_id}"
        d._registry._sessions[s.client_id] = s
    assert d.strategy_name == "random"  # kept until the sessions are said to have changed
    d.sessions_changed()
    assert d.strategy_name == "fastest" and d._strategy().name == "fastest"


async def test_round_robin_from_the_settings_takes_turns():
    sessions = [FakeSession(x, [chunk("x"), end]) for x in "cab"]
    d = dispatcher(*sessions, routing_strategy="round_robin")
    assert [await serve(d, exchange(id=f"r{i}")) for i in range(4)] == ["a", "b", "c", "a"]


def account(client_id, **fields):
    values = {"name": client_id, "email": None, "bridge_url": "http://x", "api_key_hash": "h", "rpm": None,
              "max_concurrent": 4, "disabled": False, "models": ["m"]}
    values.update(fields)
    return ClientAccount(id=client_id, **values)


async def test_apply_account_updates_the_live_session():
    session = FakeSession("a", [chunk("x"), end], max_concurrent=6)
    d = dispatcher(session)
    changes = []
    d.on_routing_change = changes.append
    d.apply_account(account("a", rpm=7, max_concurrent=2, priority=3, weight=0, draining=True))
    assert (session.priority, session.weight, session.admin_draining) == (3, 1, True)
    assert session.max_concurrent == 2 and session.rpm == 7 and session.limits == Limits(rpm=7)
    assert changes == ["a"]
    with pytest.raises(NoClientAvailable, match="1 draining"):
        await d.start(exchange())
    d.apply_account(account("a", max_concurrent=100, weight=5))
    assert session.max_concurrent == 6 and session.weight == 5  # never more than the client offers
    assert session.rpm is None and not session.admin_draining
    assert await serve(d) == "a"


async def test_apply_account_puts_a_client_in_maintenance_and_takes_it_out():
    session = FakeSession("a", [chunk("x"), end])
    d = dispatcher(session)
    d.apply_account(account("a", maintenance_reason="flaky network"))
    assert d.health["a"].maintenance == "flaky network"
    with pytest.raises(NoClientAvailable, match="1 in maintenance"):
        await d.start(exchange())
    d.apply_account(account("a", maintenance_reason="something else"))
    assert d.health["a"].maintenance == "flaky network"  # the first reason stays
    d.apply_account(account("a"))
    assert d.health["a"].maintenance is None
    assert await serve(d) == "a"


async def test_apply_account_for_a_client_not_connected_only_keeps_its_health():
    d = dispatcher()
    d.apply_account(account("away", maintenance_reason="stolen laptop"))
    assert d.health["away"].maintenance == "stolen laptop"


async def test_a_client_draining_itself_gets_no_new_work_and_can_come_back():
    a = FakeSession("a", [chunk("x")], max_concurrent=8)
    b = FakeSession("b", [chunk("x"), end])
    d = dispatcher(a, b)
    changes = []
    d.on_routing_change = changes.append
    inflight = await d.start(exchange(id="inflight"))
    assert inflight.session is a
    d.client_drain(a, True, "going to sleep")
    assert a.self_draining and a.drain_reason == "going to sleep" and changes == ["a"]
    assert await serve(d) == "b"
    await finish(inflight, "inflight")  # the work in flight still ends normally
    assert a.finished == ["inflight"]
    d.client_drain(a, False, "ignored")
    assert not a.self_draining and a.drain_reason == "" and changes == ["a", "a"]
    a.script = [chunk("x"), end]
    assert await serve(d) == "a"


async def test_undraining_lets_a_waiting_request_in():
    a = FakeSession("a", [chunk("x"), end])
    b = FakeSession("b", [chunk("x")], max_concurrent=1)
    d = dispatcher(a, b, queue_timeout_seconds=5)
    d.client_drain(a, True, "busy")
    held = await d.start(exchange(id="r0"))
    task = asyncio.create_task(d.start(exchange(id="r1")))
    await settle()
    assert d.queued == 1
    d.client_drain(a, False, "")
    waited = await asyncio.wait_for(task, 1)
    assert waited.session is a
    await finish(held, "r0")
