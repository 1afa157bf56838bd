"""Dispatch logic against fake client sessions: retries, batching, failures and timeouts."""

import asyncio

import msgspec
import pytest

from arenahub.platform.dispatch import Attempt, Dispatcher
from arenahub.platform.exchange import Exchange
from arenahub.platform.limits import Limits
from arenahub.platform.registry import LocalClientRegistry
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.platform.tunnel_session import ClientGone
from arenahub.protocol import frames
from arenahub.protocol.errors import NoClientAvailable, UpstreamError, UpstreamTimeout
from arenahub.protocol.openai import parse_chat_request


class FakeSession:
    """Answers each request it is given with a scripted list of frames."""

    def __init__(self, client_id, script, max_concurrent=4, rpm=None, delay=0.0):
        self.client_id, self.script, self.max_concurrent = client_id, script, max_concurrent
        self.rpm, self.limits, self.limit_subject = rpm, Limits(rpm=rpm), f"client:{client_id}"
        self.delay = delay  # seconds before the scripted frames arrive
        self.models, self.available, self.active = {"m"}, True, 0
        self.priority, self.weight, self.draining, self.preferred_strategy = 0, 1, False, None
        self.opened, self.cancelled, self.finished = [], [], []

    def serves(self, model):
        return model in self.models

    def open(self, request_id, body):
        self.opened.append(request_id)
        queue = asyncio.Queue()

        def answer():
            for item in self.script:
                queue.put_nowait(item(request_id) if callable(item) else item)

        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, answer)
        else:
            answer()
        return queue

    def cancel(self, request_id, reason):
        self.cancelled.append(reason)

    def finish(self, request_id):
        self.finished.append(request_id)


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
    attempt = await d.start(ex or exchange())
    await collect(attempt)
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
