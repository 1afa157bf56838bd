"""A client whose upstream (arena.ai) answers 429: the request goes elsewhere, the client is routed
around until its Retry-After has passed, and with nobody else free the consumer gets 429 + Retry-After."""

import asyncio

import pytest

from arenahub.platform.attempt import client_error
from arenahub.platform.tunnel_session import bounded_status
from arenahub.protocol import frames
from arenahub.protocol.errors import UpstreamError, UpstreamRateLimited
from tests.platform.test_dispatch import FakeSession, chunk, collect, dispatcher, end, exchange


def limited(retry_after=None):
    return lambda rid: frames.Error(id=rid, code="upstream_rate_limited", message="arena.ai is rate limiting",
                                    status=429, retryable=True, retry_after=retry_after)


async def test_a_429_goes_to_another_client_and_the_limited_one_is_skipped_until_its_retry_after():
    busy = FakeSession("a", [limited(30)], max_concurrent=8)  # preferred: more capacity
    good = FakeSession("b", [chunk("hi"), end])
    d = dispatcher(busy, good)
    attempt = await d.start(exchange(id="r1"))
    assert attempt.session is good and await collect(attempt) == [["Chunk", "End"]]
    attempt.abandon("done")
    assert 29 < busy.upstream_wait() <= 30
    attempt = await d.start(exchange(id="r2"))
    assert attempt.session is good and busy.opened == ["r1"], "the limited client was not asked again"


async def test_with_nobody_else_the_consumer_gets_429_with_the_clients_retry_after():
    only = FakeSession("a", [limited(42)])
    d = dispatcher(only)
    with pytest.raises(UpstreamError) as first:
        await d.start(exchange(id="r1"))
    assert first.value.status == 429 and first.value.headers == {"Retry-After": "42"}
    assert first.value.type == "rate_limit_error"
    with pytest.raises(UpstreamRateLimited) as second:  # routed around at once: no second call upstream
        await asyncio.wait_for(d.start(exchange(id="r2")), 1)
    assert second.value.status == 429 and 40 <= int(second.value.headers["Retry-After"]) <= 42
    assert "rate limited by their upstream" in second.value.message and only.opened == ["r1"]


async def test_a_429_without_retry_after_waits_the_default_and_a_huge_one_is_capped():
    quiet = FakeSession("a", [limited(None)])
    with pytest.raises(UpstreamError) as info:
        await dispatcher(quiet).start(exchange())
    assert "Retry-After" not in info.value.headers and 25 < quiet.upstream_wait() <= 30
    huge = FakeSession("b", [limited(10**9)])
    with pytest.raises(UpstreamError) as info:
        await dispatcher(huge).start(exchange())
    assert info.value.headers == {"Retry-After": "3600"} and huge.upstream_wait() <= 3600


async def test_a_limited_client_is_used_again_once_its_wait_has_passed():
    client = FakeSession("a", [chunk("back"), end])
    client.upstream_rate_limited(0.2)
    d = dispatcher(client)
    with pytest.raises(UpstreamRateLimited):
        await d.start(exchange(id="r1"))
    await asyncio.sleep(0.25)
    attempt = await d.start(exchange(id="r2"))
    assert attempt.session is client


def test_only_a_429_frame_carries_a_retry_after():
    other = frames.Error(id="r", code="x", message="m", status=503, retry_after=30)
    assert client_error(other).headers == {}
    negative = frames.Error(id="r", code="x", message="m", status=429, retry_after=-5)
    assert client_error(negative).headers == {}


def test_a_clients_session_report_is_cut_to_size():
    huge = frames.SessionStatus(state="x" * 1000, action="y" * 10_000, last_error="z" * 10_000, checks=[
        frames.SessionCheck(name="n" * 100, ok=True, detail="d" * 5000, advice="a" * 5000)] * 500)
    kept = bounded_status(huge)
    assert kept is not None
    assert len(kept.state) == 40 and len(kept.action) == 500 and len(kept.last_error) == 500
    assert len(kept.checks) == 20 and {len(c.name) for c in kept.checks} == {40}
    assert {len(c.detail) for c in kept.checks} == {300} and {len(c.advice) for c in kept.checks} == {300}
    assert bounded_status(None) is None


async def test_a_429_is_not_a_failure_for_the_breaker():
    client = FakeSession("a", [limited(5)])
    d = dispatcher(client)
    results = []
    for i in range(3):
        try:
            await d.start(exchange(id=f"r{i}"))
        except (UpstreamError, UpstreamRateLimited) as exc:
            results.append(type(exc))
    assert results == [UpstreamError, UpstreamRateLimited, UpstreamRateLimited]
    assert d.health["a"].failures == 0 and client.opened == ["r0"]


async def test_a_client_another_instance_would_not_place_now_is_routed_around_and_the_request_waits_for_it(
        monkeypatch):
    """A remote client whose instance answers NotHere (busy by then, or moving away): no attempt is spent, and
    with nobody else the request waits in the queue for it instead of a 429 (seen in a rolling restart)."""
    from arenahub.platform import dispatch
    from arenahub.platform.tunnel_session import ClientGone

    monkeypatch.setattr(dispatch, "BUSY_SECONDS", 0.2)
    answers = iter([[lambda rid: ClientGone("the client is busy", busy=True)], [chunk("hi"), end]])

    class Remote(FakeSession):
        def open(self, request_id, body, kind="chat.completions"):
            self.script = next(answers)
            return super().open(request_id, body, kind)

    only = Remote("a", [])
    d = dispatcher(only, max_attempts=1)
    started = asyncio.get_running_loop().time()
    attempt = await asyncio.wait_for(d.start(exchange(id="r1")), 2)
    assert await collect(attempt) == [["Chunk", "End"]]
    assert only.opened == ["r1", "r1"] and asyncio.get_running_loop().time() - started >= 0.2
