"""A hostile client (hostile.py) tries each trick of issue 11 on a real platform process.

Each test is one trick; what the platform must do instead is in its name.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import openai
import pytest

from arenahub.protocol import frames
from tests.conftest import initialised

from .harness import Platform, Stack, ask, read_ledger, read_records, wait_until
from .hostile import HostileClient, chunk

MODEL = "hostile-model"
MICROS_PER_TOKEN = 1_000


@pytest.fixture
def platform(stack: Stack, platform_db: str) -> Platform:
    initialised(platform_db)  # prices are set in it before the start
    stack.admin("set-price", MODEL, "--prompt", "1000", "--completion", "1000", database_url=platform_db)
    return stack.platform(platform_db, {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.1"})


@pytest.fixture
async def hostile(stack: Stack, platform: Platform) -> AsyncIterator[HostileClient]:
    client = await HostileClient.register(stack, platform)
    await client.connect([MODEL])
    try:
        yield client
    finally:
        await client.close()


def consumer(platform: Platform, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=platform.v1, api_key=key, max_retries=0, timeout=30)


async def record_of(platform: Platform, request_id: str) -> dict:
    def probe() -> dict | None:
        return next((r for r in read_records(platform.database_url) if r["id"] == request_id), None)
    return await asyncio.to_thread(wait_until, probe, 10, f"the record of {request_id}", 0.1)


async def settle_of(platform: Platform, request_id: str) -> dict:
    def probe() -> dict | None:
        return next((e for e in read_ledger(platform.database_url)
                     if e["request_id"] == request_id and e["kind"] in ("settle", "release")), None)
    return await asyncio.to_thread(wait_until, probe, 10, f"the ledger entry closing {request_id}", 0.1)


CLAIM = {"prompt_tokens": 10**9, "completion_tokens": 10**9, "total_tokens": 2 * 10**9}


@pytest.mark.parametrize("credit", ["5", None], ids=["credit_key", "unlimited_key"])
async def test_a_claimed_billion_tokens_is_billed_as_the_platforms_own_count(
        stack: Stack, platform: Platform, hostile: HostileClient, credit: str | None) -> None:
    extra = ["--credit", credit] if credit else []
    key = (await asyncio.to_thread(stack.admin, "create-key", "--name", "victim", *extra,
                                   database_url=platform.database_url))["key"]
    async with consumer(platform, key) as api:
        call = asyncio.ensure_future(api.chat.completions.create(model=MODEL, messages=ask("hi")))
        request = await hostile.next_request()
        await hostile.answer(request, "evil says hi", usage=CLAIM)
        reply = await call
    assert reply.choices[0].message.content == "evil says hi"
    usage = reply.usage
    assert usage is not None and usage.completion_tokens < 10 and usage.prompt_tokens < 20
    entry = await settle_of(platform, request.id)
    charge = (usage.prompt_tokens + usage.completion_tokens) * MICROS_PER_TOKEN
    assert entry["kind"] == "settle" and -entry["amount"] == charge  # what the consumer paid ...
    assert entry["client_id"] == hostile.client_id  # ... is what the client earns
    assert entry["completion_tokens"] == usage.completion_tokens
    record = await record_of(platform, request.id)
    assert record["completion_tokens"] == usage.completion_tokens
    assert record["detail"]["claimed_usage"] == {"prompt_tokens": 10**9, "completion_tokens": 10**9}
    page = httpx.get(f"{platform.url}/api/admin/clients/{hostile.client_id}", headers=platform.admin_headers).json()
    assert page["usage_claim_gaps"]["gaps"] == 1  # flagged on the client's page ...
    assert page["usage_claim_gaps"]["last"]["claimed"]["completion_tokens"] == 10**9
    metrics = httpx.get(platform.url + "/metrics").text  # ... and in the metrics
    assert re.search(rf'arenahub_client_usage_claim_gaps_total{{client="{hostile.client_id}",'
                     rf'platform_instance="[^"]+"}} 1\.0', metrics)


async def test_max_tokens_stops_a_longer_answer_with_finish_reason_length(
        stack: Stack, platform: Platform, hostile: HostileClient) -> None:
    key = (await asyncio.to_thread(stack.admin, "create-key", "--name", "k", database_url=platform.database_url))["key"]
    async with consumer(platform, key) as api:
        call = asyncio.ensure_future(api.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=5,
                                                                 stream=True, stream_options={"include_usage": True}))
        request = await hostile.next_request()
        await hostile.answer(request, " word" * 400, pieces=40)
        events = [event async for event in await call]
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    finish = [e.choices[0].finish_reason for e in events if e.choices and e.choices[0].finish_reason]
    assert finish == ["length"]
    assert text and len(text) < 40
    assert events[-1].usage is not None and events[-1].usage.completion_tokens == 5


async def test_a_credit_key_without_max_tokens_gets_no_more_than_its_reservation_pays_for(
        stack: Stack, platform: Platform, hostile: HostileClient) -> None:
    key = (await asyncio.to_thread(stack.admin, "create-key", "--name", "k", "--credit", "2",
                                   database_url=platform.database_url))["key"]
    async with consumer(platform, key) as api:
        call = asyncio.ensure_future(api.chat.completions.create(model=MODEL, messages=ask("hi")))
        request = await hostile.next_request()
        await hostile.answer(request, " word" * 50_000, pieces=500)
        reply = await call
    assert reply.choices[0].finish_reason == "length"
    entry = await settle_of(platform, request.id)
    reserved = next(e for e in await asyncio.to_thread(read_ledger, platform.database_url)
                    if e["request_id"] == request.id and e["kind"] == "reserve")["hold"]
    assert -entry["amount"] <= reserved  # nothing served beyond what was held for it
    assert entry["uncharged"] == 0


EVIL = ("Your API key was revoked; buy a new one at http://evil.example\n2026-12-07 WARNING admin token reset "
        + "!" * 5000)


async def serve_all(client: HostileClient, answer: Callable[[frames.Request], Awaitable[None]]) -> None:
    while True:
        request = await client.requests.get()
        asyncio.ensure_future(answer(request))


async def test_a_client_that_refuses_everything_loses_its_traffic_and_its_words_stay_apart(
        stack: Stack, platform_db: str) -> None:
    platform = stack.platform(platform_db, {"ARENAHUB_ROUTING_STRATEGY": "round_robin"})
    key = (await asyncio.to_thread(stack.create_key, platform))["key"]
    evil = await HostileClient.register(stack, platform, "evil")
    good = await HostileClient.register(stack, platform, "good")
    await evil.connect([MODEL])
    await good.connect([MODEL])

    async def refuse(request: frames.Request) -> None:
        await evil.send(frames.Error(id=request.id, code="key_revoked\nforged", message=EVIL[:4000], status=403))

    async def answer(request: frames.Request) -> None:
        await good.answer(request, "fine")

    tasks = [asyncio.ensure_future(serve_all(evil, refuse)), asyncio.ensure_future(serve_all(good, answer))]
    try:
        async with consumer(platform, key) as api:
            # Pinned to it (an admin debugging), the consumer sees the platform's words; the client's, apart.
            with pytest.raises(openai.APIStatusError) as failed:
                await api.chat.completions.create(model=MODEL, messages=ask("hi"), extra_headers={
                    "x-arenahub-pin-client": evil.client_id, "x-arenahub-admin-token": platform.admin_token})
            for _ in range(20):
                reply = await api.chat.completions.create(model=MODEL, messages=ask("hi"))
                assert reply.choices[0].message.content == "fine"  # retried on the good one before the first byte
            refused = sum(isinstance(f, frames.Request) for f in evil.received)
            assert refused <= 6, refused  # its breaker opened: it lost its share of the traffic
    finally:
        for task in tasks:
            task.cancel()
        await evil.close()
        await good.close()
    error = failed.value.body
    assert isinstance(error, dict)
    assert "evil.example" not in error["message"] and error["code"] == "client_error"
    assert error["upstream_message"].startswith("Your API key was revoked")
    assert "\n" not in error["upstream_message"] and len(error["upstream_message"]) <= 300


async def test_what_a_client_says_cannot_forge_or_flood_a_log_line(stack: Stack, platform: Platform,
                                                                   hostile: HostileClient) -> None:
    forged = "done\n2026-12-07 09:00:00,000 WARNING arenahub.platform.admin: admin token reset"
    await hostile.send(frames.Drain(draining=True, reason=forged))
    # Past the bound: refused by name (a notice), never logged at length.
    await hostile.send(b'{"type":"drain","draining":true,"reason":"' + b"A" * 100_000 + b'"}')
    notice = await asyncio.to_thread(wait_until, lambda: next(
        (f for f in hostile.received if isinstance(f, frames.Notice) and f.code == "bad_frame"), None), 10,
        "the notice of the oversized drain reason", 0.05)
    assert "$.reason" in notice.message and len(notice.message) <= 1000
    log = await asyncio.to_thread(wait_until, lambda: "drains: done" in (text := platform.log()) and text, 10,
                                  "the drain logged", 0.05)
    assert not any(line.startswith("2026-12-07 09:00:00,000 WARNING") for line in log.splitlines())
    assert "drains: done\\n2026-12-07" in log
    assert max(len(line) for line in log.splitlines()) < 3000


@pytest.mark.parametrize("trick", ["negative_usage", "absurd_usage", "huge_answer_of_one_character",
                                   "huge_prompt_of_one_character"])
async def test_every_request_is_settled_and_recorded_once_whatever_the_client_sends(
        stack: Stack, platform: Platform, hostile: HostileClient, trick: str) -> None:
    key = (await asyncio.to_thread(stack.admin, "create-key", "--name", "k", "--credit", "1000",
                                   database_url=platform.database_url))["key"]
    prompt = "a" * 1_000_000 if trick == "huge_prompt_of_one_character" else "hi"
    usage = {"negative_usage": {"prompt_tokens": -5, "completion_tokens": -10**18},
             "absurd_usage": {"prompt_tokens": 10**30, "completion_tokens": 1e308}}.get(trick)
    async with openai.AsyncOpenAI(base_url=platform.v1, api_key=key, max_retries=0, timeout=60) as api:
        call = asyncio.ensure_future(api.chat.completions.create(model=MODEL, messages=ask(prompt)))
        request = await hostile.next_request()
        if trick == "huge_answer_of_one_character":
            piece = chunk(request.id, "a" * 60_000)
            for _ in range(80):  # 4.8 MB of one character: over the answer's token limit
                await hostile.send(piece)
            await hostile.send(frames.End(id=request.id))
        else:
            await hostile.answer(request, "ok", usage=usage)
        reply = await call
    record = await record_of(platform, request.id)
    entry = await settle_of(platform, request.id)
    assert record["status"] == 200 and entry["kind"] == "settle"
    assert record["completion_tokens"] == reply.usage.completion_tokens == entry["completion_tokens"]
    assert -entry["amount"] == (record["prompt_tokens"] + record["completion_tokens"]) * MICROS_PER_TOKEN
    closing = [e for e in await asyncio.to_thread(read_ledger, platform.database_url)
               if e["request_id"] == request.id and e["kind"] in ("settle", "release")]
    assert len(closing) == 1  # exactly once


async def test_a_million_models_in_a_heartbeat_closes_the_connection_and_reaches_no_consumer(
        platform: Platform, hostile: HostileClient) -> None:
    """The audit's heartbeat of 1,000,000 model names (16 MB): refused as a frame over 1 MiB (1009),
    recorded as the client's refusal, and neither /v1/models nor /api/health grows."""
    try:
        await hostile.heartbeat(models=[f"fake-model-{n:07d}" for n in range(1_000_000)])
    except ConnectionError:  # the platform closed the connection while the frame was on its way
        pass
    await asyncio.to_thread(wait_until, lambda: hostile.close_code is not None, 10, "the platform closing")
    assert hostile.close_code in (1009, 1006)  # 1006 when the close met the frame still being sent

    def refusal() -> dict | None:
        r = httpx.get(f"{platform.url}/api/admin/clients/{hostile.client_id}", headers=platform.admin_headers,
                      timeout=10)
        return r.json()["last_refusal"] if r.status_code == 200 else None
    refused = await asyncio.to_thread(wait_until, refusal, 10, "the client's refusal", 0.1)
    assert refused["code"] == "frame_too_large" and "1009" in refused["message"]
    health = httpx.get(f"{platform.url}/api/health", timeout=10)
    assert len(health.content) < 100 and health.json()["serving"] is False
    assert "fake-model" not in httpx.get(f"{platform.url}/api/health", headers=platform.admin_headers,
                                         timeout=10).text
