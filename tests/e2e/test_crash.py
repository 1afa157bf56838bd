"""A kill -9 loses none of the books a consumer saw (issue 11, item 6), on SQLite and PostgreSQL.

200 streamed and non-streamed requests from credit keys; the platform is killed with SIGKILL once
30% have ended, while most are still in flight, then started again on the same database and data folder.
Every request whose answer the consumer got whole (a 200 body, or a stream to ``[DONE]``) must have
its record, its reserve and settle entries (and no release), and its client's earning; the restarted
platform's balances and earnings must be the sums of the ledger.
"""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from arenahub.platform.storage.schema import request_totals

from .harness import MODELS, Client, Platform, Stack, Upstream, ask, read_ledger, read_records

MODEL = MODELS[0]
ADMIN_TOKEN = "adm-e2e-crash"
REQUESTS = 200
KEYS = 4
WORDS = 10


@pytest.fixture
def platform_db(platform_database_url: str) -> str:
    return platform_database_url  # made before the start: prices are set in it first


@pytest.fixture(params=["3600", "0.05"], ids=["batches-held", "batches-every-50ms"])
def flush_seconds(request: pytest.FixtureRequest) -> str:
    """How often the record writer writes batches: hourly (the database has none of the run when the
    platform dies: the journal is all), or constantly (the journal is cut back while requests end)."""
    return str(request.param)


async def _load(platform: Platform, keys: list[str], completed_before_kill: int) -> list[dict[str, Any]]:
    """Send every request at once; SIGKILL the platform once ``completed_before_kill`` answers are whole.
    One dict per request: ``id`` (x-request-id, when the headers came), ``complete``, ``stream``."""
    outcomes: list[dict[str, Any]] = []
    enough = asyncio.Event()
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        consumers = [openai.AsyncOpenAI(base_url=platform.v1, api_key=k, max_retries=0, http_client=http)
                     for k in keys]

        async def one(n: int) -> None:
            stream = n % 2 == 0
            # Streams of 10 words 20 to 400 ms apart, whole answers after 0 to 3.5 s: they end over about
            # 3.5 s, so that the kill finds many in flight even when this loop, busy with 200 answers,
            # reads them late. Every fourth takes 30 s or more, so that however slow the machine, the
            # kill always cuts some off.
            if n % 4 == 3:
                pace = "[[delay_ms=3000]]" if stream else "[[first_ms=30000]]"
            else:
                pace = f"[[delay_ms={20 + n % 20 * 20}]]" if stream else f"[[first_ms={n * 137 % 3500}]]"
            text = f"crash {n} [[words={WORDS}]] {pace}"
            outcome: dict[str, Any] = {"id": None, "complete": False, "stream": stream}
            outcomes.append(outcome)
            try:
                raw = await consumers[n % KEYS].chat.completions.with_raw_response.create(
                    model=MODEL, messages=ask(text), stream=stream, max_tokens=100)
                outcome["id"] = raw.headers["x-request-id"]
                answer = raw.parse()
                if stream:
                    chunks = [c async for c in answer]  # type: ignore[union-attr]
                    words = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split()
                else:
                    words = (answer.choices[0].message.content or "").split()  # type: ignore[union-attr]
            except (openai.APIError, httpx.HTTPError):
                return  # cut off by the kill: the consumer never saw it whole
            # The stream ended without an error: its [DONE] came (the SDK raises on a cut connection).
            outcome["complete"] = len(words) == WORDS
            if sum(o["complete"] for o in outcomes) >= completed_before_kill:
                enough.set()

        async def kill() -> None:
            await asyncio.wait_for(enough.wait(), 30)
            await asyncio.to_thread(platform.kill)

        work = [asyncio.create_task(one(n)) for n in range(REQUESTS)]
        await asyncio.gather(kill(), *work)
    return outcomes


def _admin_get(platform: Platform, path: str) -> Any:
    resp = httpx.get(f"{platform.url}/api/admin{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                     timeout=10)
    resp.raise_for_status()
    return resp.json()


def _requests_counted(database_url: str) -> int:
    async def read() -> int:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(request_totals.c.requests), 0))))
                           .scalar_one())
        finally:
            await engine.dispose()
    return asyncio.run(read())


def test_a_kill_minus_9_loses_nothing_a_consumer_saw_complete(
        stack: Stack, platform_db: str, flush_seconds: str, upstream: Upstream) -> None:
    stack.admin("set-price", MODEL, "--prompt", "1000", "--completion", "1000", database_url=platform_db)
    env = {"ARENAHUB_RECORD_FLUSH_SECONDS": flush_seconds, "ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN}
    platform = stack.platform(platform_db, env)
    made = [stack.admin("create-key", "--name", f"crash-{n}", "--credit", "20", database_url=platform_db)
            for n in range(KEYS)]
    client: Client = stack.client(platform, upstream, max_concurrent=REQUESTS, max_concurrent_requests=REQUESTS)

    outcomes = asyncio.run(_load(platform, [k["key"] for k in made], completed_before_kill=REQUESTS * 3 // 10))
    assert platform.proc is not None and platform.proc.returncode == -signal.SIGKILL
    complete = {o["id"]: o for o in outcomes if o["complete"]}
    assert {o["stream"] for o in complete.values()} == {True, False}, "both kinds of answer ended before the kill"
    assert len(complete) <= REQUESTS - REQUESTS // 4, f"the kill came too late: {len(complete)} answers whole"

    platform.start()
    platform.wait_ready()

    records = {r["id"]: r for r in read_records(platform_db)}
    ledger = read_ledger(platform_db)
    by_request: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for entry in ledger:
        if entry["request_id"] is not None:
            assert entry["kind"] not in by_request[entry["request_id"]], "one entry of each kind per request"
            by_request[entry["request_id"]][entry["kind"]] = entry

    print(f"\nkill -9 ({flush_seconds} s batches): {len(outcomes)} requests, {len(complete)} seen whole by their "
          f"consumers before the kill; after the restart: {len(records)} records, "
          f"{sum('settle' in k for k in by_request.values())} settled, "
          f"{sum('release' in k for k in by_request.values())} released")
    lost = sorted(rid for rid in complete if rid not in records)
    uncharged = sorted(rid for rid in complete if "settle" not in by_request[rid])
    released = sorted(rid for rid in complete if "release" in by_request[rid])
    assert (lost, uncharged, released) == ([], [], []), (
        f"of {len(complete)} answers the consumers saw whole: {len(lost)} without a record, {len(uncharged)} "
        f"never charged, {len(released)} released")
    for rid in complete:
        record, settle = records[rid], by_request[rid]["settle"]
        assert record["status"] == 200 and record["client_id"] == client.client_id
        assert "reserve" in by_request[rid]
        assert settle["client_id"] == client.client_id and -settle["amount"] == record["cost"] > 0

    # Every reservation of the run is closed, once: settled, or released at the restart.
    for rid, kinds in by_request.items():
        assert "reserve" in kinds and len(kinds.keys() & {"settle", "release"}) == 1, (rid, sorted(kinds))
    # The aggregates count each record once, whether the journal or a batch wrote it (or both).
    assert _requests_counted(platform_db) == len(records)

    # The restarted platform's balances and earnings are the ledger's sums.
    for key in made:
        mine = [e for e in ledger if e["key_id"] == key["key_id"]]
        credit = _admin_get(platform, f"/keys/{key['key_id']}")["credit"]
        assert (credit["balance_micros"], credit["held_micros"]) == (
            sum(e["amount"] for e in mine), sum(e["hold"] for e in mine)) and credit["held_micros"] == 0
    settles = [e for e in ledger if e["kind"] == "settle"]
    earned = _admin_get(platform, f"/clients/{client.client_id}/earnings")
    assert (earned["requests"], earned["value_micros"]) == (len(settles), -sum(e["amount"] for e in settles))
    assert earned["requests"] >= len(complete)
