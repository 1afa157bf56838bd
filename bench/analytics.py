"""Benchmark: the dashboard's queries (arenahub/platform/storage/analytics.py) on 1,000,000 records.

    .venv/bin/python bench/analytics.py [--records 1000000] [--days 30] [--pg-url URL] [--keep DIR]

Seeds a fresh SQLite database (and, with --pg-url or ARENAHUB_TEST_PG_URL, a fresh PostgreSQL
database made beside that one and dropped afterwards) with the records and their per-minute
aggregates, then times every query a page or an export makes and checks that each one starts
answering within --limit seconds (1 s). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.records import AGGREGATES, aggregate
from arenahub.platform.storage import analytics, db
from arenahub.platform.storage.analytics import LogFilter
from arenahub.platform.storage.schema import request_records

CLIENTS, KEYS, MODELS = 1000, 2000, 20
# status: (share, error code)
OUTCOMES = {200: (0.918, None), 429: (0.02, "rate_limited"), 499: (0.02, "client_closed"),
            400: (0.01, "invalid_request"), 502: (0.02, "upstream_error"), 503: (0.011, "no_client_available"),
            504: (0.001, "upstream_timeout")}
TABLES = (request_records, *AGGREGATES)
Rows = list[dict[str, Any]]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the data -------------------------------------------------------------------------------------

def make_records(count: int, days: float, now: dt.datetime, seed: int) -> list[dict[str, Any]]:
    """Records spread evenly over the last ``days``: traffic spread over every client (routing does
    that), keys and models with a long tail (a few busy ones), 8 % errors of every kind."""
    rng = random.Random(seed)
    end = int(now.timestamp())
    stamps = sorted(rng.randrange(end - int(days * 86400), end) for _ in range(count))
    keys = rng.choices([f"key_{n:04d}" for n in range(KEYS)], cum_weights=_zipf(KEYS), k=count)
    models = rng.choices([f"model-{n:02d}" for n in range(MODELS)], cum_weights=_zipf(MODELS), k=count)
    statuses = rng.choices(list(OUTCOMES), weights=[share for share, _ in OUTCOMES.values()], k=count)
    records = []
    utc = dt.UTC
    for n in range(count):
        status = statuses[n]
        stream = rng.random() < 0.7
        served = status not in (429, 503)
        prompt, completion = rng.randrange(20, 2000), rng.randrange(0, 800) if status == 200 else 0
        attempts = 1 + (rng.random() < 0.03)
        client_id = f"cl_{rng.randrange(CLIENTS):04d}" if served else None
        detail = None  # as the platform writes it: only for what was not answered at the first attempt
        if status != 200 or attempts > 1:
            detail = json.dumps({"attempts": [{"client_id": client_id, "outcome": "error", "code": OUTCOMES[status][1],
                                               "error": "the bridge answered HTTP 502", "ms": 812.5}] * attempts,
                                 "error": None if status == 200 else "the bridge answered HTTP 502"})
        records.append({
            "id": f"{rng.getrandbits(128):032x}", "created_at": dt.datetime.fromtimestamp(stamps[n], utc),
            "key_id": keys[n], "client_id": client_id,
            "model": models[n], "stream": stream, "status": status, "error_code": OUTCOMES[status][1],
            "latency_ms": round(rng.lognormvariate(7.8, 0.8) if served else rng.uniform(0.2, 30), 3),
            "ttft_ms": round(rng.lognormvariate(6.4, 0.6), 3) if stream and status == 200 else None,
            "prompt_tokens": prompt, "completion_tokens": completion, "attempts": attempts,
            "cost": prompt * 2 + completion * 8, "detail": detail})
    return records


def _zipf(n: int, s: float = 1.1) -> list[float]:
    total, out = 0.0, []
    for rank in range(1, n + 1):
        total += 1 / rank ** s
        out.append(total)
    return out


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # SQLAlchemy's text form of a SQLite DATETIME (UTC here)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def seed_sqlite(path: Path, data: list[Rows]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        for table, rows in zip(TABLES, data):
            columns = [c.name for c in table.columns]
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            for start in range(0, len(rows), 50_000):
                conn.executemany(sql, [tuple(_sqlite_value(r[c]) for c in columns) for r in rows[start:start + 50_000]])
    conn.close()


async def seed_postgres(url: URL, data: list[Rows]) -> None:
    conn = await _connect(url)
    try:
        for table, rows in zip(TABLES, data):
            columns = [c.name for c in table.columns]
            await conn.copy_records_to_table(table.name, columns=columns,
                                             records=[tuple(r[c] for c in columns) for r in rows])
        await conn.execute("VACUUM ANALYZE")  # what autovacuum does by itself a little after a bulk load
    finally:
        await conn.close()


async def _connect(url: URL) -> asyncpg.Connection:
    return await asyncpg.connect(user=url.username, password=url.password, host=url.host or "127.0.0.1",
                                 port=url.port or 5432, database=url.database)


async def without_indexes(engine: AsyncEngine, load: Callable[[], Awaitable[None]]) -> None:
    """Bulk load with the secondary indexes dropped, then build them again (faster than row by row)."""
    indexes = [index for table in TABLES for index in table.indexes]
    async with engine.begin() as conn:
        for index in indexes:
            await conn.run_sync(index.drop)
    await load()
    async with engine.begin() as conn:
        for index in indexes:
            await conn.run_sync(index.create)


# -- the queries ----------------------------------------------------------------------------------

async def first_chunk(chunks: AsyncIterator[bytes]) -> int:
    """Time to the first chunk that carries rows (not only a header); the export is then abandoned."""
    async for chunk in chunks:
        if chunk.count(b"\n") > 1:
            await chunks.aclose()  # type: ignore[attr-defined]
            return len(chunk)
    return 0


Query = tuple[str, Callable[[], Awaitable[Any]]]


def queries(engine: AsyncEngine, now: dt.datetime, sample: dict[str, Any]) -> list[Query]:
    week = analytics.period_window("week", now)
    month = (now - dt.timedelta(days=30), now)
    day_ago = LogFilter(since=now - dt.timedelta(days=1, hours=1), until=now - dt.timedelta(days=1))
    # The busiest key and model (first in the long tail): the most rows for a filtered chart to read.
    client, key, model = sample["client_id"], "key_0000", "model-00"
    page2: dict[str, str | None] = {}

    async def second_page() -> Any:
        if "cursor" not in page2:
            page2["cursor"] = (await analytics.request_log(engine)).next_cursor
        return await analytics.request_log(engine, cursor=page2["cursor"])

    logs = [("log: no filter", LogFilter()), ("log: time range (1 h, a day ago)", day_ago),
            ("log: client", LogFilter(client_id=client)), ("log: key", LogFilter(key_id=key)),
            ("log: model", LogFilter(model=model)), ("log: status 502", LogFilter(status=502)),
            ("log: errors (status >= 400)", LogFilter(status="error")), ("log: 4xx", LogFilter(status="4xx")),
            ("log: error code (rare)", LogFilter(error_code="upstream_timeout")),
            ("log: stream", LogFilter(stream=False)),
            ("log: client + errors + stream", LogFilter(client_id=client, status="error", stream=True)),
            ("log: key + model + time range", LogFilter(key_id=key, model=model, since=day_ago.since))]
    return [
        ("overview: hour (1-min buckets)", lambda: analytics.overview(engine, analytics.period_window("hour", now))),
        ("overview: day (15-min buckets)", lambda: analytics.overview(engine, analytics.period_window("day", now))),
        ("overview: week (1-h buckets)", lambda: analytics.overview(engine, week)),
        ("overview: week, one client", lambda: analytics.overview(engine, week, client_id=client)),
        ("overview: week, one key", lambda: analytics.overview(engine, week, key_id=key)),
        ("overview: week, one model", lambda: analytics.overview(engine, week, model=model)),
        ("summary per client: week", lambda: analytics.summaries(engine, "client", week.since, week.until)),
        ("summary per key: week", lambda: analytics.summaries(engine, "key", week.since, week.until)),
        ("summary per model: week", lambda: analytics.summaries(engine, "model", week.since, week.until)),
        ("summary per client: 30 days", lambda: analytics.summaries(engine, "client", *month)),
        ("summary per key: 30 days", lambda: analytics.summaries(engine, "key", *month)),
        ("summary per model: 30 days", lambda: analytics.summaries(engine, "model", *month)),
        ("summary per client: last hour", lambda: analytics.summaries(engine, "client", now - dt.timedelta(hours=1),
                                                                      now)),
        ("summary per key of a client: 30 days", lambda: analytics.summaries(engine, "key", *month,
                                                                             client_id=client)),
        *((name, functools.partial(analytics.request_log, engine, f)) for name, f in logs),
        ("log: second page", second_page),
        ("detail", lambda: analytics.request_detail(engine, sample["id"])),
        ("export log CSV: all", lambda: first_chunk(analytics.export_records(engine, LogFilter(), "csv"))),
        ("export log JSON: all", lambda: first_chunk(analytics.export_records(engine, LogFilter(), "json"))),
        ("export log CSV: a day, errors", lambda: first_chunk(analytics.export_records(
            engine, LogFilter(since=now - dt.timedelta(days=1), status="error"), "csv"))),
        ("export log JSON: client", lambda: first_chunk(analytics.export_records(
            engine, LogFilter(client_id=client), "json"))),
        ("export aggregates CSV: 30 days", lambda: first_chunk(analytics.export_minutes(engine, *month, "csv"))),
        ("export aggregates JSON: week, key", lambda: first_chunk(analytics.export_minutes(
            engine, week.since, week.until, "json", key_id=key))),
    ]


async def time_queries(engine: AsyncEngine, now: dt.datetime, sample: dict[str, Any],
                       repeat: int) -> list[tuple[str, list[float]]]:
    results = []
    for name, run in queries(engine, now, sample):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            await run()
            times.append(time.perf_counter() - started)
        results.append((name, times))
    return results


# -- one backend ----------------------------------------------------------------------------------

async def run_backend(name: str, url: str, args: argparse.Namespace, data: list[Rows],
                      now: dt.datetime) -> list[tuple[str, list[float]]]:
    records = data[0]
    engine = db.create_engine(url)
    try:
        await db.migrate(engine)
        say(f"[{name}] seeding {len(records):,} records and their aggregates ...")
        started = time.perf_counter()
        if name == "sqlite":
            path = Path(make_url(url).database or "")
            await without_indexes(engine, lambda: asyncio.to_thread(seed_sqlite, path, data))
        else:
            await without_indexes(engine, lambda: seed_postgres(make_url(url), data))
        say(f"[{name}] seeded in {time.perf_counter() - started:.1f} s")
        async with engine.connect() as conn:
            counted = (await conn.execute(sa.select(sa.func.count()).select_from(request_records))).scalar_one()
        assert counted == len(records), (counted, len(records))
        sample = next(r for r in records[len(records) // 2:] if r["client_id"])
        return await time_queries(engine, now, sample, args.repeat)
    finally:
        await engine.dispose()


def report(name: str, results: list[tuple[str, list[float]]], limit: float) -> bool:
    print(f"\n{name}: time to the answer (exports: to the first chunk of rows), {len(results[0][1])} runs each")
    print(f"{'query':<40} {'first ms':>9} {'median ms':>10} {'max ms':>8}  result")
    ok = True
    for query, times in results:
        passed = max(times) < limit
        ok &= passed
        print(f"{query:<40} {times[0] * 1000:>9.1f} {statistics.median(times) * 1000:>10.1f} "
              f"{max(times) * 1000:>8.1f}  {'pass' if passed else f'FAIL (>= {limit:g} s)'}")
    return ok


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/analytics.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000, help="records to seed (default 1,000,000)")
    p.add_argument("--days", type=float, default=30, help="spread them over the last N days (default 30)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each query (default 3)")
    p.add_argument("--limit", type=float, default=1.0, help="seconds each query may take (default 1)")
    p.add_argument("--pg-url", default=os.environ.get("ARENAHUB_TEST_PG_URL", ""),
                   help="a PostgreSQL database whose role may create databases (default $ARENAHUB_TEST_PG_URL)")
    p.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    p.add_argument("--keep", type=Path, metavar="DIR", help="leave the SQLite database in DIR")
    p.add_argument("--seed", type=int, default=6)
    args = p.parse_args(argv)

    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    records = make_records(args.records, args.days, now, args.seed)
    data = [records, *aggregate(records)]
    rows = ", ".join(f"{table.name} {len(part):,}" for table, part in zip(TABLES[1:], data[1:]))
    say(f"made {len(records):,} records over {args.days:g} days and their aggregates ({rows} rows) "
        f"in {time.perf_counter() - started:.1f} s")
    ok = True
    if not args.no_sqlite:
        folder = args.keep or Path(tempfile.mkdtemp(prefix="arenahub-analytics-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"analytics-{secrets.token_hex(3)}.db"
        try:
            results = await run_backend("sqlite", f"sqlite+aiosqlite:///{path}", args, data, now)
            ok &= report(f"SQLite ({path.stat().st_size / 2**20:,.0f} MiB)", results, args.limit)
        finally:
            if args.keep is None:
                for leftover in folder.glob(path.name + "*"):
                    leftover.unlink()
                folder.rmdir()
    if args.pg_url:
        base = make_url(db.normalize_url(args.pg_url))
        name = f"arenahub_bench_{secrets.token_hex(4)}"
        admin = await _connect(base)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = base.set(database=name)
            results = await run_backend("postgres", url.render_as_string(hide_password=False), args, data, now)
            version = await admin.fetchval("SHOW server_version")
            ok &= report(f"PostgreSQL {version}", results, args.limit)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(f"\n{'every query answered within' if ok else 'some queries took longer than'} {args.limit:g} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
