"""Dispatch logic against fake client sessions: retries, batching, failures and timeouts, the clients'
windows and the wait queue (the breaker, pinning, affinity and accounts: test_dispatch_health.py)."""

import asyncio
import time

import pytest

from arenahub.platform.dispatch import Attempt
from arenahub.platform.tunnel_session import ClientGone
from arenahub.protocol import frames
from arenahub.protocol.errors import NoClientAvailable, QueueFull, UpstreamError, UpstreamTimeout
from tests.platform.dispatch_support import (
    Clock,
    FakeSession,
    chunk,
    collect,
    dispatcher,
    end,
    exchange,
    finish,
    in_window,
    serve,
    settle,
)


async def test_a_client_gone_before_the_first_byte_is_retried_elsewhere():
    gone = FakeSession("a", [ClientGone("killed")], max_concurrent=8)  # preferred: more capacity
    good = FakeSession("b", [chunk("hi"), end])
    ex = exchange()
    attempt = await dispatcher(gone, good).start(ex)
    assert attempt.session is good and ex.attempts == 2 and ex.client_id == "b"
    assert await collect(attempt) == [["Chunk", "End"]]


async def test_retryable_errors_move_on_and_final_errors_do_not():
    busy = FakeSession("a", [lambda rid: frames.Error(id=rid, code="rate_limited", message="429", status=429,
                                                      retryable=True)], max_concurrent=8)
    bad = FakeSession("b", [lambda rid: frames.Error(id=rid, code="content_rejected", message="no", status=422)])
    with pytest.raises(UpstreamError) as info:
        await dispatcher(busy, bad).start(exchange())
    assert info.value.status == 422 and info.value.code == "content_rejected"
    assert busy.opened and bad.opened


async def test_no_client_is_a_503_at_once_naming_the_reason():
    with pytest.raises(NoClientAvailable, match="no connected client serves model 'm'"):
        await asyncio.wait_for(dispatcher().start(exchange()), 0.5)


async def test_chunks_queued_before_an_error_are_delivered_before_it_is_raised():
    session = FakeSession("a", [chunk("a"), chunk("b"),
                                lambda rid: frames.Error(id=rid, code="upstream_error", message="boom")])
    attempt = await dispatcher(session).start(exchange())
    seen = []
    with pytest.raises(UpstreamError) as raised:
        async for batch in attempt.batches():
            seen.extend(type(f).__name__ for f in batch)
    assert seen == ["Chunk", "Chunk"]
    assert raised.value.upstream_message == "boom"  # the client's words, apart from the platform's own


async def test_a_client_gone_mid_answer_ends_the_stream_with_a_named_error():
    session = FakeSession("a", [chunk("a"), ClientGone("socket closed")])
    attempt = await dispatcher(session).start(exchange())
    with pytest.raises(UpstreamError) as info:
        await collect(attempt)
    assert info.value.code == "client_disconnected" and "socket closed" in info.value.message


async def test_a_silent_client_times_out_and_is_told_to_stop():
    session = FakeSession("a", [chunk("a")])
    attempt = await dispatcher(session, idle_timeout_seconds=0.1).start(exchange())
    with pytest.raises(UpstreamTimeout):
        await asyncio.wait_for(collect(attempt), 2)
    assert session.cancelled == ["the client went quiet"]


async def test_no_first_byte_in_time_tries_the_next_client():
    slow = FakeSession("a", [], max_concurrent=8)
    good = FakeSession("b", [chunk("x"), end])
    attempt = await dispatcher(slow, good, first_byte_timeout_seconds=0.1).start(exchange())
    assert attempt.session is good
    assert slow.cancelled == ["no first byte in time"]


async def test_abandon_cancels_unfinished_work_and_only_finishes_finished_work():
    session = FakeSession("a", [chunk("a"), end])
    attempt = await dispatcher(session).start(exchange())
    attempt.abandon("consumer disconnected")
    assert session.cancelled == ["consumer disconnected"]
    attempt2 = await dispatcher(session).start(exchange())
    await collect(attempt2)
    attempt2.abandon("consumer disconnected")
    assert session.cancelled == ["consumer disconnected"] and session.finished == ["r1"]


# -- clients' rate limits ----------------------------------------------------------------------

async def test_each_placement_takes_a_slot_in_the_clients_window_and_a_full_window_is_skipped():
    limited = FakeSession("a", [chunk("x"), end], max_concurrent=8, rpm=2)  # preferred: more capacity
    other = FakeSession("b", [chunk("x"), end])
    d = dispatcher(limited, other)
    d.clock = Clock()
    assert [await serve(d) for _ in range(4)] == ["a", "a", "b", "b"]
    assert in_window(d, limited) == 2
    d.clock.now += 60  # the first two leave the window
    assert await serve(d) == "a"


async def test_every_client_at_its_rate_limit_is_a_503_with_the_soonest_retry_after():
    a = FakeSession("a", [chunk("x"), end], rpm=1)
    b = FakeSession("b", [chunk("x"), end], rpm=2)
    d = dispatcher(a, b, queue_size=0)  # no queue: refused at once
    d.clock = clock = Clock(1000.0)
    await serve(d)
    clock.now = 1010.0
    await serve(d)
    clock.now = 1020.5
    await serve(d)
    clock.now = 1030.0
    with pytest.raises(NoClientAvailable, match=r"all 2 client\(s\) serving model 'm' are at their rate limit") as info:
        await d.start(exchange())
    # a took the request at 1000, b those at 1010 and 1020.5: a's slot frees first, at 1060.
    assert info.value.status == 503 and info.value.headers == {"Retry-After": "30"}
    clock.now = 1059.5
    with pytest.raises(NoClientAvailable) as info:
        await d.start(exchange())
    assert info.value.headers == {"Retry-After": "1"}  # rounded up
    clock.now = 1060.0
    assert await serve(d) in {"a", "b"}


async def test_a_retry_counts_on_the_client_it_is_placed_on():
    gone = FakeSession("a", [ClientGone("killed")], max_concurrent=8, rpm=1)
    good = FakeSession("b", [chunk("x"), end], rpm=1)
    d = dispatcher(gone, good)
    d.clock = Clock()
    ex = exchange()
    assert await serve(d, ex) == "b" and ex.attempts == 2
    assert in_window(d, gone) == 1 and in_window(d, good) == 1
    with pytest.raises(NoClientAvailable, match="at their rate limit"):
        await d.start(exchange())


async def test_concurrent_requests_never_overfill_a_window():
    slow = FakeSession("a", [chunk("x"), end], rpm=3, delay=0.05)
    d = dispatcher(slow)
    results = await asyncio.gather(*(d.start(exchange(id=f"r{i}")) for i in range(6)), return_exceptions=True)
    placed = [r for r in results if isinstance(r, Attempt)]
    assert len(placed) == 3 and len(slow.opened) == 3
    assert all(isinstance(r, NoClientAvailable) for r in results if r not in placed)


async def test_tickets_are_closed_and_idle_windows_are_swept():
    a = FakeSession("a", [chunk("x"), end], rpm=5)
    failing = FakeSession("b", [lambda rid: frames.Error(id=rid, code="upstream_error", message="no", status=500)],
                          max_concurrent=8, rpm=5)
    d = dispatcher(a, failing)
    d.clock = clock = Clock()
    a.available = False
    with pytest.raises(UpstreamError):
        await d.start(exchange())  # b fails, and nobody else can take it
    a.available, failing.available = True, False
    assert await serve(d) == "a"
    assert len(d.client_limits) == 2
    clock.now += 61
    with pytest.raises(NoClientAvailable):
        await d.start(exchange(model="other"))  # any request sweeps, at most once a minute
    assert len(d.client_limits) == 0  # nothing was left in flight


# -- the wait queue ------------------------------------------------------------------------------
async def test_a_request_waits_for_a_full_client_and_the_waiters_are_served_in_order():
    solo = FakeSession("a", [chunk("x")], max_concurrent=1)
    d = dispatcher(solo, queue_timeout_seconds=5)
    current = await d.start(exchange(id="r0"))
    waiting = [asyncio.create_task(d.start(exchange(id=f"r{i}"))) for i in (1, 2, 3)]
    await settle()
    assert d.queued == 3 and solo.opened == ["r0"] and not any(t.done() for t in waiting)
    for i, task in enumerate(waiting):
        await finish(current, f"r{i}")
        current = await asyncio.wait_for(task, 1)
        assert current.session is solo and solo.opened == [f"r{j}" for j in range(i + 2)]
        assert d.queued == 2 - i and not any(t.done() for t in waiting[i + 1:])
    await finish(current, "r3")
    assert solo.active == 0


async def test_a_new_request_does_not_jump_the_queue():
    solo = FakeSession("a", [chunk("x")], max_concurrent=1)
    d = dispatcher(solo, queue_timeout_seconds=5)
    first = await d.start(exchange(id="r0"))
    waiting = asyncio.create_task(d.start(exchange(id="r1")))
    await settle()
    solo.deliver("r0", end)  # the slot is free, and nobody has been told yet
    newcomer = asyncio.create_task(d.start(exchange(id="r2")))
    await settle()
    assert solo.opened == ["r0", "r1"] and d.queued == 1
    await collect(first)
    first.abandon("done")
    await finish(await asyncio.wait_for(waiting, 1), "r1")
    await finish(await asyncio.wait_for(newcomer, 1), "r2")
    assert solo.opened == ["r0", "r1", "r2"]


async def test_a_full_queue_is_a_429_with_retry_after():
    solo = FakeSession("a", [chunk("x")], max_concurrent=1)
    d = dispatcher(solo, queue_size=2, queue_timeout_seconds=5)
    await d.start(exchange(id="r0"))
    waiting = [asyncio.create_task(d.start(exchange(id=f"r{i}"))) for i in (1, 2)]
    await settle()
    with pytest.raises(QueueFull) as info:
        await d.start(exchange(id="r3"))
    assert info.value.status == 429 and info.value.headers == {"Retry-After": "1"}
    assert "2 requests are already waiting" in info.value.message and "concurrency limit" in info.value.message
    assert d.queued == 2
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert d.queued == 0


async def test_the_wait_runs_out_as_a_503_with_retry_after():
    solo = FakeSession("a", [chunk("x")], max_concurrent=1)
    d = dispatcher(solo, queue_timeout_seconds=0.2)
    await d.start(exchange(id="r0"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NoClientAvailable) as info:
        await d.start(exchange(id="r1"))
    assert 0.19 <= loop.time() - started < 1
    assert info.value.status == 503 and info.value.headers == {"Retry-After": "1"}
    assert info.value.message == ("No client could take this request within 0.2 s: all 1 client(s) serving "
                                  "model 'm' are at their concurrency limit.")
    assert d.queued == 0 and solo.opened == ["r0"]


async def test_a_consumer_who_stops_waiting_leaves_the_queue():
    solo = FakeSession("a", [chunk("x")], max_concurrent=1)
    d = dispatcher(solo, queue_timeout_seconds=5)
    first = await d.start(exchange(id="r0"))
    task = asyncio.create_task(d.start(exchange(id="r1")))
    await settle()
    assert d.queued == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert d.queued == 0
    await finish(first, "r0")
    await settle()
    assert solo.opened == ["r0"]  # the freed slot went to nobody
    await finish(await d.start(exchange(id="r2")), "r2")
    assert solo.opened == ["r0", "r2"]


async def test_a_consumer_leaving_as_it_is_placed_gives_the_slot_back():
    solo = FakeSession("a", [chunk("x")], max_concurrent=1)
    d = dispatcher(solo, queue_timeout_seconds=5)
    d.clock = Clock()
    first = await d.start(exchange(id="r0"))
    task = asyncio.create_task(d.start(exchange(id="r1")))
    await settle()
    solo.deliver("r0", end)
    await collect(first)
    first.abandon("done")  # the slot is offered to r1 on the next turn of the loop ...
    task.cancel()  # ... and r1's consumer leaves in the same turn
    with pytest.raises(asyncio.CancelledError):
        await task
    assert solo.opened == ["r0", "r1"] and solo.cancelled == ["consumer disconnected"]
    assert solo.active == 0 and d.queued == 0
    assert d.health["a"].failures == 0
    await finish(await asyncio.wait_for(d.start(exchange(id="r2")), 1), "r2")


@pytest.mark.parametrize(("setup", "message"), [
    (lambda s: setattr(s, "models", {"other"}), "no connected client serves model 'm'"),
    (lambda s: setattr(s, "available", False), "(1 unhealthy)"),
    (lambda s: setattr(s, "admin_draining", True), "(1 draining)"),
])
async def test_no_eligible_client_is_a_503_at_once_even_with_a_queue(setup, message):
    session = FakeSession("a", [chunk("x"), end])
    setup(session)
    d = dispatcher(session, queue_timeout_seconds=5)
    with pytest.raises(NoClientAvailable) as info:
        await asyncio.wait_for(d.start(exchange()), 0.5)
    assert message in info.value.message and info.value.headers == {"Retry-After": "5"}
    assert d.queued == 0


async def test_a_rate_limit_that_outlasts_the_wait_is_refused_at_once():
    limited = FakeSession("a", [chunk("x"), end], rpm=1)
    d = dispatcher(limited, queue_timeout_seconds=5)
    d.clock = clock = Clock(1000.0)
    await serve(d)
    clock.now = 1050.0  # the slot frees in 10 s, after the 5 s wait would run out
    with pytest.raises(NoClientAvailable, match="at their rate limit") as info:
        await asyncio.wait_for(d.start(exchange()), 0.5)
    assert info.value.headers == {"Retry-After": "10"} and d.queued == 0


async def test_a_rate_limit_that_frees_within_the_wait_is_waited_for():
    limited = FakeSession("a", [chunk("x"), end], rpm=1)
    d = dispatcher(limited, queue_timeout_seconds=2)
    offset = [0.0]
    d.clock = lambda: offset[0] + time.monotonic()
    await serve(d, exchange(id="r0"))
    offset[0] += 59.9  # the slot frees in 0.1 s
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(serve(d, exchange(id="r1")), 1.5) == "a"
    assert 0.05 <= loop.time() - started < 1
    assert limited.opened == ["r0", "r1"]


async def test_a_queue_full_of_rate_limited_waiters_says_when_to_retry():
    limited = FakeSession("a", [chunk("x"), end], rpm=1)
    d = dispatcher(limited, queue_size=1, queue_timeout_seconds=5)
    d.clock = clock = Clock(1000.0)
    await serve(d)
    clock.now = 1057.0  # the slot frees in 3 s
    task = asyncio.create_task(d.start(exchange(id="r1")))
    await settle()
    assert d.queued == 1
    with pytest.raises(QueueFull) as info:
        await d.start(exchange(id="r2"))
    assert info.value.headers == {"Retry-After": "3"}
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- the circuit breaker ---------------------------------------------------------------------------
