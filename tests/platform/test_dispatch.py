"""Dispatch logic against fake client sessions: retries, batching, failures and timeouts."""

import asyncio

import msgspec
import pytest

from arenahub.platform.dispatch import Attempt, Dispatcher
from arenahub.platform.exchange import Exchange
from arenahub.platform.registry import LocalClientRegistry
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.platform.tunnel_session import ClientGone
from arenahub.protocol import frames
from arenahub.protocol.errors import NoClientAvailable, UpstreamError, UpstreamTimeout
from arenahub.protocol.openai import parse_chat_request


class FakeSession:
    """Answers each request it is given with a scripted list of frames."""

    def __init__(self, client_id, script, max_concurrent=4):
        self.client_id, self.script, self.max_concurrent = client_id, script, max_concurrent
        self.models, self.available, self.active = {"m"}, True, 0
        self.opened, self.cancelled, self.finished = [], [], []

    def serves(self, model):
        return model in self.models

    def open(self, request_id, body):
        self.opened.append(request_id)
        queue = asyncio.Queue()
        for item in self.script:
            queue.put_nowait(item(request_id) if callable(item) else item)
        return queue

    def cancel(self, request_id, reason):
        self.cancelled.append(reason)

    def finish(self, request_id):
        self.finished.append(request_id)


def chunk(text):
    return lambda rid: frames.Chunk(id=rid, events=[[{"index": 0, "delta": {"content": text}}]])


def end(rid):
    return frames.End(id=rid)


def exchange(stream=True):
    key = ConsumerKey(id="key_1", name="k", key_hash="h", rpm=None, disabled=False, updated_at=None)
    body = msgspec.json.encode({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "x"}]})
    return Exchange(id="r1", key=key, request=parse_chat_request(body), body=body)


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
