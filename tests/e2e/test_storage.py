"""Where storage matters: request records, keys and a platform restart, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from arenahub.tokens import count_tokens

from .harness import Client, Platform, Stack, ask, consumer_for, read_records, wait_until


@pytest.fixture
def platform_db(database_url: str) -> str:
    return database_url


@pytest.fixture
def platform_env() -> dict[str, str]:
    # Records wait in memory until shutdown: what the tests find in the database, the clean
    # shutdown wrote.
    return {"ARENAHUB_RECORD_FLUSH_SECONDS": "3600"}


def stop_cleanly(platform: Platform) -> None:
    """SIGTERM; uvicorn re-raises the signal once it has shut down, so -SIGTERM is a clean exit too."""
    assert platform.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in platform.log()



def request_id(consumer: openai.OpenAI, text: str, stream: bool = False) -> str:
    """Make one request that succeeds; its x-request-id (the record's id)."""
    raw = consumer.chat.completions.with_raw_response.create(model="e2e-alpha", messages=ask(text), stream=stream)
    parsed = raw.parse()
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)  # type: ignore[union-attr]
    else:
        assert parsed.choices[0].message.content  # type: ignore[union-attr]
    return raw.headers["x-request-id"]


def test_each_request_leaves_one_record(stack: Stack, platform: Platform, start_client: Callable[..., Client]) -> None:
    key = stack.create_key(platform, name="records")
    client = start_client()
    consumer = consumer_for(platform, key["key"])
    ids: dict[str, str] = {}  # what the request was -> its x-request-id

    raw = consumer.chat.completions.with_raw_response.create(
        model="e2e-alpha", messages=ask("one two three [[usage=1]]"), stream=True,
        stream_options={"include_usage": True})
    streamed = list(raw.parse())
    answer = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    counted = (count_tokens("one two three [[usage=1]]"), count_tokens(answer))
    assert (streamed[-1].usage.prompt_tokens, streamed[-1].usage.completion_tokens) == counted  # type: ignore[union-attr]
    ids["stream"] = raw.headers["x-request-id"]

    raw = consumer.chat.completions.with_raw_response.create(model="e2e-beta", messages=ask("[[words=25]]"))
    assert raw.parse().usage.completion_tokens >= 25  # type: ignore[union-attr]
    ids["complete"] = raw.headers["x-request-id"]

    with pytest.raises(openai.BadRequestError) as refused:
        consumer.chat.completions.create(model="e2e-alpha", messages=ask("[[status=400]]"))
    ids["refused_upstream"] = refused.value.response.headers["x-request-id"]

    stream = consumer.chat.completions.with_raw_response.create(
        model="e2e-alpha", messages=ask("[[words=5]] [[error_after=2]]"), stream=True)
    ids["mid_stream_error"] = stream.headers["x-request-id"]
    with pytest.raises(openai.APIError):
        list(stream.parse())

    # A consumer that hangs up mid-answer: recorded as 499, and the client is told to stop.
    raw = consumer.chat.completions.with_raw_response.create(
        model="e2e-alpha", messages=ask("[[words=100]] [[delay_ms=100]]"), stream=True)
    ids["consumer_left"] = raw.headers["x-request-id"]
    chunks = raw.parse()
    next(iter(chunks))
    chunks.close()
    wait_until(lambda: client.status()["active_requests"] == 0, 5, "the client to drop the abandoned request")

    stop_cleanly(platform)
    rows = {r["id"]: r for r in read_records(platform.database_url)}

    assert set(rows) == set(ids.values())
    for row in rows.values():
        assert row["key_id"] == key["key_id"]
        assert row["client_id"] == client.client_id
        assert row["attempts"] == 1
        assert row["latency_ms"] > 0
        assert row["created_at"] is not None
    ok = rows[ids["stream"]]
    assert (ok["model"], ok["stream"], ok["status"], ok["error_code"]) == ("e2e-alpha", True, 200, None)
    assert (ok["prompt_tokens"], ok["completion_tokens"]) == counted  # the platform's count, not the upstream's
    assert 0 < ok["ttft_ms"] <= ok["latency_ms"]
    ok = rows[ids["complete"]]
    assert (ok["model"], ok["stream"], ok["status"], ok["error_code"]) == ("e2e-beta", False, 200, None)
    assert ok["prompt_tokens"] > 0 and ok["completion_tokens"] >= 25
    assert ok["ttft_ms"] is not None
    refused = rows[ids["refused_upstream"]]
    assert (refused["status"], refused["error_code"]) == (400, "http_400")
    assert rows[ids["mid_stream_error"]]["status"] >= 500
    assert rows[ids["mid_stream_error"]]["error_code"] == "scripted"
    left = rows[ids["consumer_left"]]
    assert (left["status"], left["error_code"]) == (499, "client_closed")


def test_platform_restart_client_reconnects_and_no_record_is_lost(
        stack: Stack, platform: Platform, consumer: openai.OpenAI, start_client: Callable[..., Client]) -> None:
    client = start_client()
    before = [request_id(consumer, f"before {i}", stream=i % 2 == 0) for i in range(5)]

    # A stream still running when the platform is told to stop is finished, then recorded.
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(request_id, consumer, "[[words=10]] [[delay_ms=100]]", True)
        platform.wait_health(lambda h: h["requests_in_flight"] == 1, "the slow stream in flight")
        stop_cleanly(platform)
        before.append(slow.result(timeout=10))
    assert sorted(r["id"] for r in read_records(platform.database_url)) == sorted(before)
    client.wait_status(lambda s: s["state"] != "connected", "the client to notice")

    platform.start()
    platform.wait_ready()
    client.wait_status(lambda s: s["state"] == "connected" and s["reconnect_count"] >= 1, "reconnected")
    after = []
    for i in range(5):
        raw = consumer.chat.completions.with_raw_response.create(model="e2e-alpha", messages=ask(f"after {i}"))
        assert raw.headers["x-arenahub-client"] == client.client_id
        assert raw.parse().choices[0].message.content == f"Echo: after {i}"
        after.append(raw.headers["x-request-id"])

    stop_cleanly(platform)
    rows = read_records(platform.database_url)
    assert len(rows) == len(before) + len(after) == 11
    assert sorted(r["id"] for r in rows) == sorted(before + after)
    assert all(r["status"] == 200 for r in rows)


def test_keys_made_while_the_platform_runs_work_at_once(stack: Stack, platform: Platform,
                                                        start_client: Callable[..., Client]) -> None:
    start_client()
    with consumer_for(platform, "sk-not-made-yet") as stranger:
        with pytest.raises(openai.AuthenticationError):
            stranger.models.list()

    for name in ("first", "second"):
        key = stack.create_key(platform, name=name)["key"]
        assert key.startswith("sk-")
        with consumer_for(platform, key) as consumer:  # no wait, no retry
            assert consumer.chat.completions.create(model="e2e-beta", messages=ask(name)).choices[0].message.content \
                == f"Echo: {name}"
            assert "e2e-beta" in {m.id for m in consumer.models.list().data}

    resp = httpx.get(platform.v1 + "/models", headers={"Authorization": "Bearer sk-still-not-a-key"}, timeout=5)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"
