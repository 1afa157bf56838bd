"""Credit, prices and the ledger over real processes, on SQLite and PostgreSQL.

Prices are set with the CLI before the platform starts (so they apply from the first request):
1,000 micro-USD per token, prompt or completion, which makes every cost easy to check.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .harness import MODELS, Platform, Stack, ask, consumer_for, read_ledger, read_records, wait_until

MODEL = MODELS[0]
MICROS_PER_TOKEN = 1_000  # 1,000 USD per 1M tokens


@pytest.fixture
def platform_db(platform_database_url: str) -> str:
    return platform_database_url  # made before the start: prices are set in it first


@pytest.fixture
def priced_platform(stack: Stack, platform_db: str) -> Platform:
    stack.admin("set-price", MODEL, "--prompt", "1000", "--completion", "1000", database_url=platform_db)
    return stack.platform(platform_db, {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.1"})


def usd(micros: int) -> str:
    return f"{micros / 1_000_000:.6f}"


def cost_of(usage: Any) -> int:
    return (usage.prompt_tokens + usage.completion_tokens) * MICROS_PER_TOKEN


def settled(database_url: str, count: int) -> list[dict[str, Any]]:
    """The ledger once it holds ``count`` closing entries (settle or release)."""
    def probe() -> list[dict[str, Any]] | None:
        rows = read_ledger(database_url)
        return rows if sum(r["kind"] in ("settle", "release") for r in rows) >= count else None
    return wait_until(probe, 20, f"{count} closed reservations in the ledger", interval=0.2)


async def race(platform: Platform, key: str, n: int, max_tokens: int) -> list[int]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        consumer = openai.AsyncOpenAI(base_url=platform.v1, api_key=key, max_retries=0, http_client=http)

        async def one() -> int:
            try:
                await consumer.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=max_tokens)
                return 200
            except openai.APIStatusError as exc:
                assert exc.status_code != 402 or exc.body["code"] == "insufficient_quota", exc.body  # type: ignore[index]
                return exc.status_code
        return await asyncio.gather(*(one() for _ in range(n)))


def test_a_thousand_parallel_requests_never_overspend(stack: Stack, priced_platform: Platform, upstream,
                                                       platform_db: str) -> None:
    platform = priced_platform
    stack.client(platform, upstream, max_concurrent=1000, max_concurrent_requests=1000)
    # What one request costs, measured with an unlimited key.
    with consumer_for(platform, stack.create_key(platform, "probe")["key"]) as probe:
        one = probe.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=16)
    price = cost_of(one.usage)
    reservation = (one.usage.prompt_tokens + 16) * MICROS_PER_TOKEN
    assert reservation > price  # settling frees credit that later requests may use: the harder case

    credit = 100 * price
    created = stack.admin("create-key", "--name", "racer", "--credit", usd(credit), database_url=platform_db)
    statuses = asyncio.run(race(platform, created["key"], 1000, max_tokens=16))

    counts = Counter(statuses)
    assert set(counts) <= {200, 402}, counts
    # Never more than the credit buys; at least what fits while every request holds a reservation.
    assert credit // reservation <= counts[200] <= 100, counts
    # Requests in flight held credit that settling then freed: one at a time, the rest is spent,
    # down to less than one reservation, and never beyond.
    with consumer_for(platform, created["key"]) as consumer:
        for _ in range(101):
            try:
                consumer.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=16)
                counts[200] += 1
            except openai.APIStatusError as exc:
                assert exc.status_code == 402
                break
    served = counts[200]
    assert 100 - math.ceil(reservation / price) <= served <= 100, counts

    ledger = settled(platform_db, served + 1)  # + the probe's request
    mine = [r for r in ledger if r["key_id"] == created["key_id"]]
    settles = [r for r in mine if r["kind"] == "settle"]
    assert len(settles) == served and not [r for r in mine if r["kind"] == "release"]
    assert len({r["request_id"] for r in settles}) == served  # no request charged twice
    assert all(-r["amount"] == price for r in settles)
    balance, held = sum(r["amount"] for r in mine), sum(r["hold"] for r in mine)
    assert balance == credit - served * price >= 0 and held == 0

    records = wait_until(lambda: [r for r in read_records(platform_db) if r["key_id"] == created["key_id"]]
                         if len(read_records(platform_db)) >= served + 1 else None, 20, "request records")
    assert sum(r["status"] == 200 for r in records) == served
    assert sum(r["cost"] or 0 for r in records) == served * price

    shown = stack.admin("show-key", created["key_id"], database_url=platform_db)["credit"]
    assert shown["balance_micros"] == credit - served * price and shown["unlimited"] is False


def test_a_consumer_who_leaves_mid_stream_pays_for_what_was_delivered(stack: Stack, priced_platform: Platform,
                                                                      upstream, platform_db: str) -> None:
    platform = priced_platform
    stack.client(platform, upstream)
    created = stack.admin("create-key", "--name", "leaver", "--credit", "10", database_url=platform_db)
    with consumer_for(platform, created["key"]) as consumer:
        stream = consumer.chat.completions.create(model=MODEL, messages=ask("[[words=400]] [[delay_ms=10]] go"),
                                                  stream=True)
        request_id = stream.response.headers["x-request-id"]
        received = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
            if len(received) >= 10:
                break
        stream.close()

    ledger = settled(platform_db, 1)
    settle = next(r for r in ledger if r["request_id"] == request_id and r["kind"] == "settle")
    # What reached the consumer is at least what it read, and far from the whole answer (400 words).
    assert 10 <= settle["completion_tokens"] < 400
    assert -settle["amount"] == (settle["prompt_tokens"] + settle["completion_tokens"]) * MICROS_PER_TOKEN
    assert settle["client_id"]  # the client that served it earns what was charged
    record = wait_until(lambda: next((r for r in read_records(platform_db) if r["id"] == request_id), None), 10,
                        "the record of the abandoned stream")
    assert record["status"] == 499 and record["cost"] == -settle["amount"]
    assert record["completion_tokens"] == settle["completion_tokens"]


def test_out_of_credit_is_402_until_a_top_up_and_the_balance_survives_a_restart(
        stack: Stack, priced_platform: Platform, upstream, platform_db: str, tmp_path: Path) -> None:
    platform = priced_platform
    stack.client(platform, upstream)
    created = stack.admin("create-key", "--name", "broke", "--credit", "0", database_url=platform_db)
    with consumer_for(platform, created["key"]) as consumer:
        with pytest.raises(openai.APIStatusError) as refused:
            consumer.chat.completions.create(model=MODEL, messages=ask("hi"))
        assert refused.value.status_code == 402
        error = refused.value.body
        assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"  # type: ignore[index]
        assert "Top up" in error["message"] and "0.00 USD" in error["message"]  # type: ignore[index]

        stack.admin("top-up", created["key_id"], "2", database_url=platform_db)

        def served() -> Any:
            try:
                return consumer.chat.completions.create(model=MODEL, messages=ask("hi"))
            except openai.APIStatusError as exc:
                assert exc.status_code == 402
                return None
        answer = wait_until(served, 10, "the top-up to reach the running platform", interval=0.2)
    spent = cost_of(answer.usage)
    settled(platform_db, 1)

    platform.stop()
    platform = stack.platform(platform_db, {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.1"}, name="platform-again")
    shown = stack.admin("show-key", created["key_id"], database_url=platform_db)["credit"]
    assert shown["balance_micros"] == 2_000_000 - spent and shown["held_micros"] == 0
    # The restarted platform starts from that balance: a small request is served, and one whose
    # reservation (capped at 4,096 completion tokens, ~4.1 USD here) exceeds what is left is not.
    stack.client(platform, upstream, name="client-again")
    with consumer_for(platform, created["key"]) as consumer:
        consumer.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=8)
        with pytest.raises(openai.APIStatusError) as refused:
            consumer.chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=400_000)
        assert refused.value.status_code == 402


def test_usage_by_key_and_client_matches_what_was_served(stack: Stack, priced_platform: Platform, upstream,
                                                         platform_db: str) -> None:
    platform = priced_platform
    served_by = stack.client(platform, upstream).client_id
    created = stack.admin("create-key", "--name", "user", "--credit", "5", database_url=platform_db)
    costs = []
    with consumer_for(platform, created["key"]) as consumer:
        for text in ("one", "two two", "[[words=30]] three"):
            costs.append(cost_of(consumer.chat.completions.create(model=MODEL, messages=ask(text)).usage))
    settled(platform_db, 3)
    report = stack.admin("usage", "--key", created["key_id"], database_url=platform_db)
    assert [(ln["key_id"], ln["model"], ln["requests"]) for ln in report["by_key"]] == [
        (created["key_id"], MODEL, 3)]
    assert [(ln["client_id"], ln["requests"], ln["cost_micros"]) for ln in report["by_client"]] == [
        (served_by, 3, sum(costs))]
    assert report["total"]["cost_micros"] == sum(costs)
    assert stack.admin("usage", "--client", "cl_nobody", database_url=platform_db)["total"]["requests"] == 0
    assert stack.admin("usage", "--since", "2999-01-01", database_url=platform_db)["by_key"] == []
