"""The benchmarks' data: a million request records spread over a month, their aggregates, the
ledger entries the platform writes for them, and the keys and clients they name; bulk-loaded into
a fresh SQLite or PostgreSQL database. Used by bench/analytics.py (see bench/README.md).

Everything derived (aggregates, ledger entries, per-day ledger sums) is made with the platform's
own code (``records.aggregate``, ``billing_store.entry_row``, ``ledger_days.day_rows``), so the
database holds what a platform that served those requests would hold.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import secrets
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.billing.ledger import Entry, Kind
from arenahub.platform.records import AGGREGATES, aggregate
from arenahub.platform.storage import ledger_days
from arenahub.platform.storage.billing_store import entry_row
from arenahub.platform.storage.schema import clients, consumer_keys, ledger_entries, request_records

CLIENTS, KEYS, MODELS = 1000, 2000, 20
# status: (share, error code)
OUTCOMES = {200: (0.918, None), 429: (0.02, "rate_limited"), 499: (0.02, "client_closed"),
            400: (0.01, "invalid_request"), 502: (0.02, "upstream_error"), 503: (0.011, "no_client_available"),
            504: (0.001, "upstream_timeout")}
LIMITED_EVERY = 10  # every 10th key spends from a credit balance (a top-up a month ago); the others are unlimited
Rows = list[dict[str, Any]]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Data:
    tables: list[tuple[sa.Table, Rows]]  # what to load, in order
    records: Rows
    now: dt.datetime

    def rows(self, table: sa.Table) -> Rows:
        return next(rows for t, rows in self.tables if t is table)


def make_data(count: int, days: float, now: dt.datetime, seed: int) -> Data:
    records = make_records(count, days, now, seed)
    entries = make_entries(records, now, random.Random(seed + 1))
    tables: list[tuple[sa.Table, Rows]] = [(request_records, records),
                                           *zip(AGGREGATES, aggregate(records), strict=True),
                                           (ledger_entries, [entry_row(e) for e in entries])]
    tables += ledger_days.day_tables(entries)
    tables += [(consumer_keys, key_rows(now)), (clients, client_rows(now))]
    return Data(tables, records, now)


def make_records(count: int, days: float, now: dt.datetime, seed: int) -> Rows:
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


def make_entries(records: Rows, now: dt.datetime, rng: random.Random) -> list[Entry]:
    """The ledger's entries for the records, as ``Accounting`` makes them: a reservation when the
    request is admitted, then a settle at its end when anything was delivered (the record's cost,
    credited to the client that served it), else a release. Plus a top-up for each limited key."""
    entries = [Entry(f"le_{n:08x}", f"key_{n:04d}", Kind.TOPUP, 1_000_000_000, 0, now - dt.timedelta(days=40),
                     note="bench credit") for n in range(0, KEYS, LIMITED_EVERY)]
    new_id = rng.getrandbits
    for r in records:
        created, request_id, key_id = r["created_at"], r["id"], r["key_id"]
        hold = r["prompt_tokens"] * 2 + 1024 * 8  # the prompt plus 1,024 tokens, at the bench's prices
        ended = created + dt.timedelta(milliseconds=r["latency_ms"])
        entries.append(Entry(f"{new_id(128):032x}", key_id, Kind.RESERVE, 0, hold, created, request_id=request_id))
        if r["status"] == 200:
            entries.append(Entry(f"{new_id(128):032x}", key_id, Kind.SETTLE, -r["cost"], -hold, ended,
                                 request_id=request_id, client_id=r["client_id"], model=r["model"],
                                 prompt_tokens=r["prompt_tokens"], completion_tokens=r["completion_tokens"]))
        else:
            entries.append(Entry(f"{new_id(128):032x}", key_id, Kind.RELEASE, 0, -hold, ended, request_id=request_id))
    return entries


def key_rows(now: dt.datetime) -> Rows:
    return [{"id": f"key_{n:04d}", "name": f"bench key {n}", "key_hash": secrets.token_hex(32),
             "key_prefix": f"ah-{n:04d}", "rpm": None, "disabled": False, "email": None, "expires_at": None,
             "allowed_models": None, "tpm": None, "max_concurrent": None, "unlimited": n % LIMITED_EVERY != 0,
             "meta": None, "deleted_at": None, "created_at": now - dt.timedelta(days=45, seconds=-n),
             "updated_at": now - dt.timedelta(days=45)} for n in range(KEYS)]


def client_rows(now: dt.datetime) -> Rows:
    stats = {"stats": {"requests_processed": 1234, "success_rate": 97.5, "cpu_percent": 12.5, "memory_mb": 180.0,
                       "active_requests": 1, "uptime_seconds": 3600.0},
             "session": {"bridge_reachable": True, "session_valid": True}}
    return [{"id": f"cl_{n:04d}", "name": f"bench client {n}", "email": f"owner{n}@example.test",
             "bridge_url": "http://127.0.0.1:5102", "api_key_hash": secrets.token_hex(32), "rpm": None,
             "max_concurrent": 4, "disabled": False, "models": [f"model-{m:02d}" for m in range(3)],
             "client_version": "0.1.0", "last_stats": stats, "last_seen_at": now - dt.timedelta(minutes=5),
             "created_at": now - dt.timedelta(days=45, seconds=-n), "updated_at": now, "priority": 0, "weight": 1,
             "draining": False, "maintenance_reason": None, "maintenance_since": None} for n in range(CLIENTS)]


def _zipf(n: int, s: float = 1.1) -> list[float]:
    total, out = 0.0, []
    for rank in range(1, n + 1):
        total += 1 / rank ** s
        out.append(total)
    return out


# -- loading --------------------------------------------------------------------------------------

def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # SQLAlchemy's text form of a SQLite DATETIME (UTC here)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def seed_sqlite(path: Path, data: Data) -> None:
    conn = sqlite3.connect(path)
    # A fresh file nobody else has open: no journal, a big cache (the platform's connections set WAL again).
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    with conn:
        for table, rows in data.tables:
            columns = [c.name for c in table.columns]
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            for start in range(0, len(rows), 50_000):
                conn.executemany(sql, [tuple(_sqlite_value(r.get(c)) for c in columns)
                                       for r in rows[start:start + 50_000]])
    conn.close()


async def seed_postgres(url: URL, data: Data) -> None:
    conn = await connect(url)
    try:
        for table, rows in data.tables:
            columns = [c.name for c in table.columns]
            json_columns = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
            await conn.copy_records_to_table(table.name, columns=columns, records=[
                tuple(json.dumps(r.get(c)) if c in json_columns and r.get(c) is not None
                      and not isinstance(r.get(c), str) else r.get(c) for c in columns) for r in rows])
        await conn.execute("VACUUM ANALYZE")  # what autovacuum does by itself a little after a bulk load
    finally:
        await conn.close()


async def connect(url: URL) -> asyncpg.Connection:
    return await asyncpg.connect(user=url.username, password=url.password, host=url.host or "127.0.0.1",
                                 port=url.port or 5432, database=url.database)


async def without_indexes(engine: AsyncEngine, tables: list[sa.Table], load: Callable[[], Awaitable[None]]) -> None:
    """Bulk load with the secondary indexes dropped, then build them again (faster than row by row)."""
    indexes = [index for table in tables for index in table.indexes]
    async with engine.begin() as conn:
        for index in indexes:
            await conn.run_sync(index.drop)
    await engine.dispose()  # no connection of the engine stays open during the load
    await load()
    async with engine.begin() as conn:
        for index in indexes:
            await conn.run_sync(index.create)


async def seed(engine: AsyncEngine, url: URL, data: Data) -> None:
    """Load ``data`` into the migrated, empty database of ``engine`` (at ``url``)."""
    tables = [table for table, _ in data.tables]
    if engine.dialect.name == "sqlite":
        await without_indexes(engine, tables, lambda: asyncio.to_thread(seed_sqlite, Path(url.database or ""), data))
    else:
        await without_indexes(engine, tables, lambda: seed_postgres(url, data))
