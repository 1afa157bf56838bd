"""Request records made up for the analytics tests, and what the database holds of them."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.records import (
    AGGREGATES,
    RecordWriter,
    RequestRecord,
    latency_column,
    minute_rows,
)
from arenahub.platform.storage import analytics, schema
from arenahub.platform.storage.analytics import LogFilter, Stats

NOW = dt.datetime(2026, 5, 4, 12, 30, 20, tzinfo=dt.UTC)


STATUSES = [200, 200, 200, 200, 429, 499, 400, 402, 502, 503]



def make_records(count: int, *, seed: int = 1, start: dt.datetime = NOW - dt.timedelta(minutes=50),
                 span_seconds: int = 3000) -> list[RequestRecord]:
    """Varied records; many share a second (as real ones do: their time has whole seconds)."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        status = rng.choice(STATUSES)
        created = start + dt.timedelta(seconds=rng.randrange(0, span_seconds, 7))
        out.append(RequestRecord(
            id=f"req_{seed}_{n:05d}", created_at=created, key_id=rng.choice(["key_a", "key_b", "key_c"]),
            client_id=None if status == 429 else rng.choice(["cl_1", "cl_2"]), model=rng.choice(["m1", "m2"]),
            stream=rng.random() < 0.5, status=status, error_code=None if status == 200 else f"e{status}",
            latency_ms=round(rng.lognormvariate(6, 1.2), 3), ttft_ms=rng.choice([None, round(rng.uniform(5, 900), 3)]),
            prompt_tokens=rng.randrange(100), completion_tokens=rng.randrange(300), attempts=1,
            cost=rng.choice([None, rng.randrange(5000)])))
    return out


async def write(engine: Any, records: list[RequestRecord], batch_size: int = 1000) -> None:
    writer = RecordWriter(engine, batch_size=batch_size)
    for record in records:
        writer.add(RequestRecord(**vars(record)))
    await writer.flush()


async def stored_aggregates(engine: AsyncEngine) -> tuple[list[dict[str, Any]], ...]:
    """The rows of each aggregate table, in key order (as aggregate() gives them)."""
    out = []
    async with engine.connect() as conn:
        for t in AGGREGATES:  # records.AGGREGATES
            rows = (await conn.execute(sa.select(t).order_by(*t.primary_key.columns))).all()
            out.append([{k: analytics.utc(v) if isinstance(v, dt.datetime) else v for k, v in row._mapping.items()}
                        for row in rows])
    return tuple(out)


async def stored_records(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.request_records))).all()
    return [{**row._mapping, "created_at": analytics.utc(row.created_at)} for row in rows]


def assert_same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert set(g) == set(e)
        for name, value in e.items():
            assert g[name] == (pytest.approx(value) if isinstance(value, float) else value), (e, name)


def assert_same_aggregates(got: tuple[list[dict[str, Any]], ...], expected: tuple[list[dict[str, Any]], ...]) -> None:
    assert len(got) == len(expected) == 4
    for g, e in zip(got, expected, strict=True):
        assert_same_rows(g, e)


def bucket(ms: float) -> int:
    return schema.LATENCY_COLUMNS.index(latency_column(ms))


def exact(values: list[float], q: float) -> float:
    """Nearest rank."""
    return sorted(values)[max(1, math.ceil(q * len(values))) - 1]


def stats_of(records: list[RequestRecord]) -> dict[str, Any]:
    stats = Stats()
    for row in minute_rows(vars(r) for r in records):
        stats.add(row[name] for name in schema.COUNTERS)
    return stats.sums()


def approx(stats: Stats) -> dict[str, Any]:
    """The stats, with the float sums compared approximately (they add up in another order)."""
    return {k: pytest.approx(v) if isinstance(v, float) else v for k, v in stats.sums().items()}


def matches(record: RequestRecord, f: LogFilter) -> bool:
    kinds = {"success": (200, 200), "error": (400, 999), "4xx": (400, 499), "5xx": (500, 999)}
    low, high = kinds[f.status] if isinstance(f.status, str) else (f.status, f.status) if f.status else (0, 999)
    return ((f.since is None or record.created_at >= f.since) and (f.until is None or record.created_at < f.until)
            and all(v is None or getattr(record, name) == v
                    for name, v in (("client_id", f.client_id), ("key_id", f.key_id), ("model", f.model),
                                    ("error_code", f.error_code), ("stream", f.stream)))
            and low <= record.status <= high)


async def collect(chunks: AsyncIterator[bytes]) -> tuple[int, str]:
    parts = [chunk async for chunk in chunks]
    return len(parts), b"".join(parts).decode()
