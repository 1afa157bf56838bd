"""Issue 5 with real processes: leases, the wait queue, shutdown, cancellation, affinity, pinning
and the circuit breaker.

A stalled client is a SIGSTOPped process: its socket stays open and it sends nothing, not even
heartbeats, so these tests raise ARENAHUB_MISSED_HEARTBEATS to let the lease, not the heartbeat
watchdog, notice it.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from .harness import MODELS, Client, Platform, Stack, Upstream, ask, read_records, served_by, wait_until

MODEL = MODELS[0]
ADMIN_TOKEN = "adm-e2e-resilience"


def env(**settings: object) -> dict[str, str]:
    """The platform's environment: records written within 0.2 s, plus ``ARENAHUB_<NAME>`` settings."""
    return {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.2", **{f"ARENAHUB_{k.upper()}": str(v) for k, v in settings.items()}}


def record_of(platform: Platform, request_id: str) -> dict[str, Any]:
    return wait_until(lambda: next((r for r in read_records(platform.database_url) if r["id"] == request_id), None),
                      10, f"the record of request {request_id}")


# -- leases: a client that stalls without closing its socket ----------------------------------
@pytest.mark.parametrize("platform_env", [env(idle_timeout_seconds=1, missed_heartbeats=30)])
def test_a_client_that_stalls_mid_stream_loses_its_lease(platform: Platform, consumer: openai.OpenAI,
                                                         upstream: Upstream,
                                                         start_client: Callable[..., Client]) -> None:
    client = start_client()
    # 100 words, 100 ms apart: 10 s if nothing broke it.
    raw = consumer.chat.completions.with_raw_response.create(
        model=MODEL, messages=ask("[[words=100]] [[delay_ms=100]]"), stream=True)
    request_id = raw.headers["x-request-id"]
    received: list[str] = []
    paused_at = None
    try:
        with pytest.raises(openai.APIError) as info:
            for chunk in raw.parse():
                received.append(chunk.choices[0].delta.content or "")
                if len(received) == 3:
                    client.pause()
                    paused_at = time.monotonic()
        assert paused_at is not None
        elapsed = time.monotonic() - paused_at
    finally:
        client.resume()

    # The lease (1 s) ran out: no sooner, and not much later.
    assert 0.8 < elapsed < 2.5, f"the error came {elapsed:.2f} s after the client stalled"
    assert info.value.code == "upstream_timeout"
    assert 3 <= len(received) < 100 and "".join(received).startswith("w0 w1 w2")
    record = record_of(platform, request_id)
    assert (record["status"], record["error_code"], record["client_id"]) == (504, "upstream_timeout",
                                                                              client.client_id)
    # Awake again, the client reads the platform's cancel and hangs up on its upstream.
    wait_until(lambda: upstream.stream_stats()["cancelled"] == 1, 5, "the upstream call cancelled")
    wait_until(lambda: client.status()["active_requests"] == 0, 5, "the client to drop the request")
    platform.wait_health(lambda h: h["requests_in_flight"] == 0 and h["clients_connected"] == 1, "one client, idle")


@pytest.mark.parametrize("platform_env", [env(first_byte_timeout_seconds=2, missed_heartbeats=30)])
def test_a_client_that_stalls_before_its_first_byte_is_replaced(platform: Platform, consumer: openai.OpenAI,
                                                                start_client: Callable[..., Client]) -> None:
    clients = [start_client(name="a"), start_client(name="b")]

    def request() -> tuple[str, str, str]:
        raw = consumer.chat.completions.with_raw_response.create(
            model=MODEL, messages=ask("patience pays [[first_ms=1000]]"), stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        return raw.headers["x-request-id"], raw.headers["x-arenahub-client"], text

    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        future = pool.submit(request)
        # The upstream waits 1 s before its first word: time to freeze the client that took it.
        stalled = wait_until(lambda: next((c for c in clients if c.status()["active_requests"]), None), 5,
                             "a client to take the request")
        stalled.pause()
        try:
            request_id, client_id, answer = future.result(timeout=15)
            elapsed = time.monotonic() - started
        finally:
            stalled.resume()

    survivor = next(c for c in clients if c is not stalled)
    assert (client_id, answer) == (survivor.client_id, "Echo: patience pays")
    assert 2.0 <= elapsed < 6.0  # the first-byte timeout, then the survivor's answer
    record = record_of(platform, request_id)
    assert (record["status"], record["attempts"], record["client_id"]) == (200, 2, survivor.client_id)
    wait_until(lambda: stalled.status()["active_requests"] == 0, 5, "the stalled client to let go")


@pytest.mark.parametrize("platform_env", [env(total_timeout_seconds=2, first_byte_timeout_seconds=2)])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_the_total_timeout_caps_a_request_across_its_attempts(platform: Platform, consumer: openai.OpenAI,
                                                              start_client: Callable[..., Client],
                                                              stream: bool) -> None:
    start_client(name="a")
    start_client(name="b")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        # Neither client begins within 2 s; the request is tried on each.
        consumer.chat.completions.create(model=MODEL, messages=ask("slow [[first_ms=6000]]"), stream=stream)
    elapsed = time.monotonic() - started
    assert info.value.status_code == 504 and info.value.code == "upstream_timeout"
    assert elapsed < 3.0, f"a request with a total time of 2 s took {elapsed:.2f} s"


# -- the wait queue ---------------------------------------------------------------------------
def timed(consumer: openai.OpenAI, text: str) -> tuple[str, float]:
    """(answer, when it arrived) of one request."""
    answer = consumer.chat.completions.create(model=MODEL, messages=ask(text)).choices[0].message.content or ""
    return answer, time.monotonic()


@pytest.mark.parametrize("platform_env", [env(queue_size=2, queue_timeout_seconds=3)])
def test_the_queue_serves_in_order_and_refuses_when_full(platform: Platform, consumer: openai.OpenAI,
                                                         start_client: Callable[..., Client]) -> None:
    client = start_client(max_concurrent=1)
    with ThreadPoolExecutor(3) as pool:
        slot = pool.submit(timed, consumer, "in the slot [[first_ms=1200]]")
        wait_until(lambda: client.status()["active_requests"] == 1, 5, "the slot taken")
        waiting = []
        for i, text in enumerate(["first in line [[first_ms=200]]", "second in line [[first_ms=200]]"]):
            waiting.append(pool.submit(timed, consumer, text))
            platform.wait_health(lambda h, n=i + 2: h["requests_in_flight"] == n, f"{i + 1} request(s) waiting")
        assert client.status()["active_requests"] == 1

        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as info:
            consumer.chat.completions.create(model=MODEL, messages=ask("one too many"))
        assert time.monotonic() - started < 1.0
        assert info.value.status_code == 429 and info.value.code == "queue_full"
        assert int(info.value.response.headers["retry-after"]) >= 1
        assert "2 requests are already waiting" in info.value.message

        results = [f.result(timeout=10) for f in [slot, *waiting]]
    assert [answer for answer, _ in results] == ["Echo: in the slot", "Echo: first in line", "Echo: second in line"]
    done_at = [at for _, at in results]
    assert done_at == sorted(done_at), "the waiting requests were not served in order"
    assert client.health()["stats"]["requests_processed"] == 3


@pytest.mark.parametrize("platform_env", [env(queue_size=1, queue_timeout_seconds=5)])
def test_a_consumer_who_stops_waiting_frees_its_place(platform: Platform, consumer: openai.OpenAI, consumer_key: str,
                                                      start_client: Callable[..., Client]) -> None:
    client = start_client(max_concurrent=1)
    with ThreadPoolExecutor(2) as pool:
        slot = pool.submit(timed, consumer, "in the slot [[first_ms=1500]]")
        wait_until(lambda: client.status()["active_requests"] == 1, 5, "the slot taken")
        sock = open_stream(platform, consumer_key, "I give up")
        platform.wait_health(lambda h: h["requests_in_flight"] == 2, "the request waiting")
        sock.close()
        platform.wait_health(lambda h: h["requests_in_flight"] == 1, "the request gone from the queue")
        # Its place in the queue (of 1) is free again.
        after = pool.submit(timed, consumer, "my turn")
        assert [slot.result(timeout=10)[0], after.result(timeout=10)[0]] == ["Echo: in the slot", "Echo: my turn"]

    assert client.status()["stats"]["requests_processed"] == 2  # the one that left never reached it
    wait_until(lambda: len(read_records(platform.database_url)) == 3, 10, "the 3 records")
    left = next(r for r in read_records(platform.database_url) if r["status"] != 200)
    assert (left["status"], left["error_code"], left["client_id"], left["attempts"]) == (499, "client_closed",
                                                                                        None, 0)


@pytest.mark.parametrize("platform_env", [env(queue_size=2, queue_timeout_seconds=1)])
def test_a_wait_that_runs_out_is_503_and_no_eligible_client_is_503_at_once(
        platform: Platform, consumer: openai.OpenAI, start_client: Callable[..., Client]) -> None:
    client = start_client(max_concurrent=1)
    with ThreadPoolExecutor(1) as pool:
        slot = pool.submit(timed, consumer, "long [[first_ms=3000]]")
        wait_until(lambda: client.status()["active_requests"] == 1, 5, "the slot taken")

        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as info:
            consumer.chat.completions.create(model=MODEL, messages=ask("waiting in vain"))
        waited = time.monotonic() - started
        assert 0.9 <= waited < 2.0, f"the wait ran out after {waited:.2f} s"
        assert info.value.status_code == 503 and info.value.code == "no_client_available"
        assert "within 1 s" in info.value.message
        assert int(info.value.response.headers["retry-after"]) >= 1

        # Drained, the client is no longer busy but out of rotation: nothing to wait for.
        resp = httpx.post(client.url + "/platform/drain", json={"reason": "e2e"}, timeout=10)
        assert resp.status_code == 200 and resp.json()["applied"] is True, resp.text
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as info:
            consumer.chat.completions.create(model=MODEL, messages=ask("anyone?"))
        assert time.monotonic() - started < 1.0
        assert info.value.code == "no_client_available" and "draining" in info.value.message
        assert info.value.response.headers.get("retry-after")

        assert slot.result(timeout=10)[0] == "Echo: long"  # work in flight still finishes


# -- platform shutdown with streams in flight -------------------------------------------------
def read_stream(platform: Platform, key: str, text: str) -> tuple[str, list[str]]:
    """A streamed request read as raw SSE: (x-request-id, the data of every event)."""
    with httpx.stream("POST", platform.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": MODEL, "messages": ask(text), "stream": True}, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        body = resp.read().decode()
    return resp.headers["x-request-id"], [e.removeprefix("data: ") for e in body.split("\n\n") if e]


@pytest.mark.parametrize("platform_env", [env(record_flush_seconds=3600, shutdown_grace_seconds=10)])
def test_shutdown_finishes_the_streams_in_flight_and_records_them(platform: Platform, consumer_key: str,
                                                                  start_client: Callable[..., Client]) -> None:
    client = start_client()
    n, words = 3, 30
    with ThreadPoolExecutor(n) as pool:
        streams = [pool.submit(read_stream, platform, consumer_key, f"[[words={words}]] [[delay_ms=80]]")
                   for _ in range(n)]
        wait_until(lambda: client.status()["active_requests"] == n, 5, "the streams under way")

        platform.terminate()
        terminated_at = time.monotonic()
        platform.wait_health(lambda h: h["status"] == "shutting_down", "the drain begun")
        resp = httpx.post(platform.v1 + "/chat/completions", headers={"Authorization": f"Bearer {consumer_key}"},
                          json={"model": MODEL, "messages": ask("too late")}, timeout=5)
        assert not any(f.done() for f in streams), "the streams ended before a request could be refused"
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "shutting_down"
        assert resp.headers["retry-after"]
        # A client's new tunnel is refused before the upgrade, in plain HTTP (a load balancer sends it on).
        upgrade = httpx.get(platform.api_url + "/ws", timeout=5, headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert upgrade.status_code == 503 and upgrade.json()["error"]["code"] == "shutting_down"
        assert upgrade.headers["retry-after"] == "1"

        finished = [f.result(timeout=15) for f in streams]
    for _, events in finished:
        assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
        text = "".join(c["delta"].get("content", "") for e in events[:-1] for c in json.loads(e)["choices"])
        assert text == " ".join(f"w{i}" for i in range(words))

    assert platform.wait_stopped() in (0, -signal.SIGTERM)
    assert time.monotonic() - terminated_at < 10
    with pytest.raises(httpx.ConnectError):
        httpx.get(platform.url + "/api/health", timeout=2)
    rows = {r["id"]: r for r in read_records(platform.database_url)}
    assert set(rows) == {request_id for request_id, _ in finished}  # the refused request left none
    assert all((r["status"], r["error_code"], r["stream"]) == (200, None, True) for r in rows.values())


@pytest.mark.parametrize("platform_env", [env(record_flush_seconds=3600, shutdown_grace_seconds=1)])
def test_shutdown_ends_a_stream_that_outlasts_the_grace_and_records_it(platform: Platform, consumer_key: str,
                                                                       start_client: Callable[..., Client]) -> None:
    client = start_client()
    with ThreadPoolExecutor(1) as pool:
        # 10 s of answer, against a grace of 1 s.
        stream = pool.submit(read_stream, platform, consumer_key, "[[words=100]] [[delay_ms=100]]")
        wait_until(lambda: client.status()["active_requests"] == 1, 5, "the stream under way")
        platform.terminate()
        terminated_at = time.monotonic()
        request_id, events = stream.result(timeout=15)
        ended = time.monotonic() - terminated_at

    assert 0.8 < ended < 3.0, f"the stream ended {ended:.2f} s after SIGTERM"
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]  # named for what it is: the platform stopped, not the client
    assert error["code"] == "platform_shutting_down" and "platform instance stopped" in error["message"]
    assert "grace 1 s" in error["message"]
    assert 1 < len(events) < 100
    assert platform.wait_stopped() in (0, -signal.SIGTERM)
    assert time.monotonic() - terminated_at < 5
    [row] = read_records(platform.database_url)
    assert row["id"] == request_id and row["status"] == 503 and row["completion_tokens"] > 0
    assert row["error_code"] == "platform_shutting_down"
    assert f"request {request_id} cut: its answer (from client {client.client_id}) outlasted the shutdown grace" \
        in platform.log()
    assert "client_disconnected" not in platform.log()


# -- cancellation -----------------------------------------------------------------------------
def open_stream(platform: Platform, key: str, text: str) -> socket.socket:
    """Send a streamed chat request on a bare socket and read nothing: closing it is hanging up."""
    body = json.dumps({"model": MODEL, "messages": ask(text), "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", platform.port), timeout=5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 + f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n".encode()
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


@pytest.mark.parametrize("when", ["mid_stream", "before_first_byte"])
def test_a_consumer_disconnect_reaches_the_upstream_within_a_second(
        platform: Platform, consumer: openai.OpenAI, consumer_key: str, upstream: Upstream,
        start_client: Callable[..., Client], when: str) -> None:
    client = start_client()
    if when == "mid_stream":
        stream = consumer.chat.completions.create(model=MODEL, messages=ask("[[words=100]] [[delay_ms=100]]"),
                                                  stream=True)
        for n, _ in enumerate(stream, 1):
            if n == 3:
                break
        assert upstream.stream_stats()["active"] == 1
        stream.close()
    else:
        sock = open_stream(platform, consumer_key, "[[first_ms=10000]] never mind")
        wait_until(lambda: upstream.stream_stats()["active"] == 1, 5, "the upstream to begin")
        sock.close()
    left_at = time.monotonic()

    wait_until(lambda: upstream.stream_stats()["cancelled"] == 1, 5, "the upstream to see the cancellation")
    elapsed = time.monotonic() - left_at
    assert elapsed < 1.0, f"the upstream saw the disconnect after {elapsed:.2f} s"
    stats = upstream.stream_stats()
    assert {k: stats[k] for k in ("started", "active", "completed", "cancelled")} == {
        "started": 1, "active": 0, "completed": 0, "cancelled": 1}
    wait_until(lambda: client.status()["active_requests"] == 0, 2, "the client to let go")
    stats = client.status()["stats"]
    assert (stats["requests_processed"], stats["requests_failed"]) == (0, 0)  # cancelled: neither


# -- affinity and pinning ---------------------------------------------------------------------
@pytest.mark.parametrize("platform_env", [env(sticky_routing="true", routing_strategy="round_robin")])
def test_sticky_routing_keeps_a_conversation_on_its_client(stack: Stack, platform: Platform,
                                                           consumer: openai.OpenAI,
                                                           start_client: Callable[..., Client]) -> None:
    a, b = start_client(name="a"), start_client(name="b")
    ids = {a.client_id, b.client_id}

    def converse(history: list[dict[str, str]], text: str, headers: dict[str, str] | None = None) -> str:
        """Ask ``text`` after ``history``, append both to it; the client that answered."""
        history.append({"role": "user", "content": text})
        client_id, answer = served_by(consumer, history, headers)
        history.append({"role": "assistant", "content": answer})
        return client_id

    apples = [{"role": "system", "content": "Be brief."}]
    first = converse(apples, "tell me about apples")
    assert [converse(apples, f"and then {i}?") for i in range(4)] == [first] * 4
    # Round robin sends a new conversation to the other client; it stays there too.
    pears: list[dict[str, str]] = []
    other = converse(pears, "tell me about pears")
    assert other == (ids - {first}).pop()
    assert [converse(pears, "more"), converse(apples, "more"), converse(pears, "again")] == [other, first, other]

    # The consumer's own conversation id keeps different openings together.
    ticket_7 = {"x-arenahub-conversation": "ticket-7"}
    on_7 = converse([], "alpha", ticket_7)
    assert [converse([], "beta", ticket_7), converse([], "gamma", ticket_7)] == [on_7, on_7]
    on_8 = converse([], "alpha", {"x-arenahub-conversation": "ticket-8"})
    assert on_8 != on_7  # the same opening, another conversation: round robin's next client

    # Only while its client can take it: when it leaves, the conversation moves, and stays moved.
    gone, survivor = (a, b) if first == a.client_id else (b, a)
    gone.stop()
    platform.wait_health(lambda h: h["clients_connected"] == 1, "the client gone")
    assert [converse(apples, "still there?"), converse(apples, "ok")] == [survivor.client_id] * 2


@pytest.mark.parametrize("platform_env", [env(admin_token=ADMIN_TOKEN, routing_strategy="round_robin")])
def test_an_admin_pins_requests_to_a_client(platform: Platform, consumer: openai.OpenAI, consumer_key: str,
                                            start_client: Callable[..., Client]) -> None:
    a, b = start_client(name="a"), start_client(name="b")
    for client in (a, b):
        pin = {"x-arenahub-pin-client": client.client_id, "x-arenahub-admin-token": ADMIN_TOKEN}
        served = [served_by(consumer, ask(f"pinned {i}"), pin, stream=i % 2 == 1) for i in range(4)]
        assert served == [(client.client_id, f"Echo: pinned {i}") for i in range(4)]

    for token in (None, "adm-wrong", consumer_key):
        headers = {"x-arenahub-pin-client": a.client_id}
        if token is not None:
            headers["x-arenahub-admin-token"] = token
        with pytest.raises(openai.PermissionDeniedError) as info:
            consumer.chat.completions.create(model=MODEL, messages=ask("let me in"), extra_headers=headers)
        assert info.value.status_code == 403 and info.value.code == "pin_not_allowed"

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as unknown:
        consumer.chat.completions.create(model=MODEL, messages=ask("hello?"), extra_headers={
            "x-arenahub-pin-client": "no-such-client", "x-arenahub-admin-token": ADMIN_TOKEN})
    assert time.monotonic() - started < 1.0
    assert unknown.value.status_code == 503 and unknown.value.code == "no_client_available"
    assert "'no-such-client'" in unknown.value.message
    assert a.health()["stats"]["requests_processed"] == b.health()["stats"]["requests_processed"] == 4


# -- the circuit breaker ----------------------------------------------------------------------
COOLDOWN = 2.0


@pytest.mark.parametrize("platform_env", [env(routing_strategy="round_robin", breaker_min_requests=2,
                                              breaker_cooldown_seconds=COOLDOWN)])
def test_a_failing_client_is_taken_out_then_probed_once(stack: Stack, platform: Platform, consumer: openai.OpenAI,
                                                        start_client: Callable[..., Client]) -> None:
    good = start_client(name="good")
    bridge = stack.upstream(MODELS, name="bad-upstream")
    # The bad client's bridge is up and lists its models, but every answer fails: nothing the client
    # sees before a request tells it so, and it goes on taking requests it cannot serve.
    bad = start_client(name="bad", upstream=bridge, heartbeat_interval_seconds=30)
    failing = httpx.put(bridge.url + "/__fail", json={"status": 502}, timeout=5)
    assert failing.status_code == 200, failing.text

    # Round robin offers every other request to the bad client until its breaker opens (2 failures);
    # each of those is retried on the good one before the first byte, so every consumer succeeds.
    served = [served_by(consumer, ask(f"request {i}"), stream=i % 2 == 1) for i in range(6)]
    assert served == [(good.client_id, f"Echo: request {i}") for i in range(6)]
    tripped_at = time.monotonic()
    stats = bad.status()["stats"]
    assert (stats["requests_processed"], stats["requests_failed"]) == (2, 2)
    bad.wait_status(lambda s: s["routing"]["breaker"] == "open", "told its breaker is open", timeout=5)
    assert "circuit breaker open" in platform.log()

    assert httpx.put(bridge.url + "/__fail", json={"status": 0}, timeout=5).status_code == 200
    time.sleep(max(0.0, tripped_at + COOLDOWN + 0.2 - time.monotonic()))  # the cooldown: nothing to poll

    # Half-open: of four requests at once, exactly one (the probe) goes to the bad client.
    with ThreadPoolExecutor(4) as pool:
        probing = list(pool.map(lambda i: served_by(consumer, ask(f"probe {i} [[first_ms=500]]")), range(4)))
    assert sorted(text for _, text in probing) == [f"Echo: probe {i}" for i in range(4)]
    assert [client for client, _ in probing].count(bad.client_id) == 1, probing
    bad.wait_status(lambda s: s["routing"]["breaker"] == "closed", "told its breaker is closed", timeout=5)

    # Back in rotation: round robin alternates again.
    after = [served_by(consumer, ask(f"after {i}"))[0] for i in range(2)]
    assert sorted(after) == sorted([good.client_id, bad.client_id])
    stats = bad.status()["stats"]
    assert (stats["requests_processed"], stats["requests_failed"]) == (4, 2)
