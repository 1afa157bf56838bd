"""Dispatch logic against fake client sessions: retries, batching, failures and timeouts, the wait
queue, the circuit breaker, pinning and affinity, the strategy in use, account changes and drain."""

import asyncio
import time

import msgspec
import pytest

from arenahub.platform.dispatch import Attempt, Dispatcher
from arenahub.platform.exchange import Exchange
from arenahub.platform.limits import Limits
from arenahub.platform.registry import LocalClientRegistry
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.accounts import ClientAccount, ConsumerKey
from arenahub.platform.tunnel_session import ClientGone
from arenahub.protocol import frames
from arenahub.protocol.errors import (
    ApiError,
    NoClientAvailable,
    QueueFull,
    UpstreamError,
    UpstreamTimeout,
)
from arenahub.protocol.openai import parse_chat_request


class FakeSession:
    """Answers each request it is given with a scripted list of frames.

    Like a real session, a request holds a slot (counts in ``active``) until its End or Error
    arrives or it is finished or cancelled; ``deliver`` sends more frames later.
    """

    def __init__(self, client_id, script, max_concurrent=4, rpm=None, delay=0.0):
        self.client_id, self.script, self.max_concurrent = client_id, script, max_concurrent
        self.hello_max_concurrent = max_concurrent
        self.rpm, self.limits, self.limit_subject = rpm, Limits(rpm=rpm), f"client:{client_id}"
        self.delay = delay  # seconds before the scripted frames arrive
        self.models, self.available = {"m"}, True
        self.priority, self.weight, self.preferred_strategy = 0, 1, None
        self.admin_draining, self.self_draining, self.drain_reason = False, False, ""
        self.opened, self.cancelled, self.finished = [], [], []
        self.inflight = {}  # request id -> its queue
        self.limited_until = 0.0  # its upstream's 429, as ClientSession keeps it

    @property
    def active(self):
        return len(self.inflight)

    @property
    def draining(self):
        return self.admin_draining or self.self_draining

    def serves(self, model):
        return model in self.models

    def upstream_rate_limited(self, seconds):
        self.limited_until = max(self.limited_until, time.monotonic() + min(seconds, 3600))

    def upstream_wait(self):
        return max(0.0, self.limited_until - time.monotonic())

    def open(self, request_id, body):
        self.opened.append(request_id)
        self.inflight[request_id] = queue = asyncio.Queue()

        def answer():
            for item in self.script:
                self.deliver(request_id, item)

        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, answer)
        else:
            answer()
        return queue

    def deliver(self, request_id, item):
        queue = self.inflight.get(request_id)
        if queue is None:
            return
        frame = item(request_id) if callable(item) else item
        queue.put_nowait(frame)
        if not isinstance(frame, frames.Chunk):
            del self.inflight[request_id]

    def cancel(self, request_id, reason):
        self.cancelled.append(reason)
        self.inflight.pop(request_id, None)

    def finish(self, request_id):
        self.finished.append(request_id)
        self.inflight.pop(request_id, None)


def chunk(text):
    return lambda rid: frames.Chunk(id=rid, events=[[{"index": 0, "delta": {"content": text}}]])


def end(rid):
    return frames.End(id=rid)


def exchange(stream=True, model="m", id="r1"):
    key = ConsumerKey(id="key_1", name="k", key_hash="h", rpm=None, disabled=False, updated_at=None)
    body = msgspec.json.encode({"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]})
    return Exchange(id=id, key=key, request=parse_chat_request(body), body=body)


def dispatcher(*sessions, **settings):
    registry = LocalClientRegistry()
    for s in sessions:
        registry._sessions[s.client_id] = s
    return Dispatcher(registry, PlatformSettings(**settings))


async def collect(attempt: Attempt):
    out = []
    async for batch in attempt.batches():
        out.append([type(f).__name__ for f in batch])
    return out


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
    with pytest.raises(UpstreamError, match="boom"):
        async for batch in attempt.batches():
            seen.extend(type(f).__name__ for f in batch)
    assert seen == ["Chunk", "Chunk"]


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
class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def in_window(d, session):
    status = d.client_limits.status(session.limit_subject, session.limits, now=d.clock())
    return status.limit_requests - status.remaining_requests


async def serve(d, ex=None):
    """One request read to its end, as the consumer API does it."""
    attempt = await d.start(ex or exchange())
    try:
        await collect(attempt)
    finally:
        attempt.abandon("done")
    return attempt.session.client_id


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
    with pytest.raises(UpstreamError):
        await d.start(exchange())  # b is preferred and fails for good
    failing.available = False
    assert await serve(d) == "a"
    assert len(d.client_limits) == 2
    clock.now += 61
    with pytest.raises(NoClientAvailable):
        await d.start(exchange(model="other"))  # any request sweeps, at most once a minute
    assert len(d.client_limits) == 0  # nothing was left in flight


# -- the wait queue ------------------------------------------------------------------------------
def error(status, retryable=False, code="upstream_error"):
    return lambda rid: frames.Error(id=rid, code=code, message=f"status {status}", status=status,
                                    retryable=retryable)


async def settle():
    """Lets every task that can run, run (requests reach the queue, freed slots are offered)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def finish(attempt, request_id):
    """The client ends the answer, the consumer reads it all: the slot frees."""
    attempt.session.deliver(request_id, end)
    await collect(attempt)
    attempt.abandon("done")


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


@pytest.mark.parametrize(("status", "retryable", "counts"), [
    (400, False, False), (404, False, False), (422, False, False),
    (500, False, True), (502, False, True), (422, True, True),
])
async def test_only_errors_that_are_the_clients_fault_count(status, retryable, counts):
    client = FakeSession("a", [error(status, retryable)])
    d = dispatcher(client, **BREAKER)
    d.clock = Clock()
    results = [type(await attempt(d)) for _ in range(5)]
    health = d.health["a"]
    if counts:  # the breaker opened after two
        assert results == [UpstreamError] * 2 + [NoClientAvailable] * 3
        assert (health.failures, len(client.opened)) == (2, 2)
    else:
        assert results == [UpstreamError] * 5
        assert (health.failures, len(client.opened)) == (0, 5)
    assert health.successes == 0


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
