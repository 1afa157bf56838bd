"""Chat completions through platform -> client -> upstream, with the unmodified openai package."""

from __future__ import annotations

import httpx

from arenahub.tokens import count_tokens

from .harness import MODELS, Shared, ask

MODEL = MODELS[0]



def test_non_streaming_answer(shared: Shared) -> None:
    raw = shared.consumer.chat.completions.with_raw_response.create(model=MODEL, messages=ask("hello brave new world"))
    resp = raw.parse()

    assert raw.headers["x-arenahub-client"] == shared.client.client_id
    assert resp.object == "chat.completion"
    assert resp.model == MODEL
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: hello brave new world"
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_non_streaming_long_answer_is_assembled_in_order(shared: Shared) -> None:
    resp = shared.consumer.chat.completions.create(model=MODELS[1], messages=ask("[[words=300]]"))

    assert resp.choices[0].message.content == " ".join(f"w{i}" for i in range(300))
    assert resp.model == MODELS[1]


def test_streaming_answer(shared: Shared) -> None:
    raw = shared.consumer.chat.completions.with_raw_response.create(
        model=MODEL, messages=ask("stream me five words"), stream=True)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-arenahub-client"] == shared.client.client_id
    chunks = list(raw.parse())

    assert len(chunks) >= 5  # one per word, then the finish
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {MODEL}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me five words"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert all(c.usage is None for c in chunks)  # not asked for


def test_streaming_usage_is_the_platforms_count_not_the_upstreams_claim(shared: Shared) -> None:
    prompt = "count these words [[usage=1]]"
    chunks = list(shared.consumer.chat.completions.create(
        model=MODEL, messages=ask(prompt), stream=True, stream_options={"include_usage": True}))

    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None
    answer = "".join(c.choices[0].delta.content or "" for c in body)
    assert answer == "Echo: count these words"
    # The local upstream claims 7 prompt tokens and one a word; the platform bills what it counted itself.
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (count_tokens(prompt), count_tokens(answer))
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in body)


def test_streaming_usage_counted_by_the_platform(shared: Shared) -> None:
    """LMArena reports no usage; the platform counts the tokens itself."""
    chunks = list(shared.consumer.chat.completions.create(
        model=MODEL, messages=ask("[[words=40]]"), stream=True, stream_options={"include_usage": True}))

    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens >= 40
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_raw_sse_stream_ends_with_done(shared: Shared) -> None:
    with httpx.stream("POST", shared.platform.v1 + "/chat/completions", timeout=10,
                      headers={"Authorization": f"Bearer {shared.key}"},
                      json={"model": MODEL, "messages": ask("raw"), "stream": True}) as resp:
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "no-cache"
        body = resp.read().decode()

    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert body.count("[DONE]") == 1


def test_client_health_has_exactly_the_seed_fields(shared: Shared) -> None:
    health = shared.client.health()

    assert set(health) == {"enabled", "connected", "healthy", "platform_url", "client_id", "stats"}
    assert set(health["stats"]) == {"requests_processed", "success_rate", "uptime_seconds"}
    assert (health["enabled"], health["connected"], health["healthy"]) == (True, True, True)
    assert health["platform_url"] == shared.platform.api_url
    assert health["client_id"] == shared.client.client_id


def test_client_status_shows_no_secrets(shared: Shared) -> None:
    resp = httpx.get(shared.client.url + "/platform/status", timeout=5)

    status = resp.json()
    assert status["state"] == "connected"
    assert status["reconnect_count"] == 0
    assert status["config"]["api_key_set"] is True
    assert shared.client.api_key not in resp.text
