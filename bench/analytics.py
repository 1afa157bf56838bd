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
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import pages
from arenahub.platform.storage import analytics, db, exports
from arenahub.platform.storage.analytics import LogFilter
from arenahub.platform.storage.schema import ledger_entries, request_records
from seed import Data, connect, make_data, say, seed

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
        ("export log CSV: all", lambda: first_chunk(exports.export_records(engine, LogFilter(), "csv"))),
        ("export log JSON: all", lambda: first_chunk(exports.export_records(engine, LogFilter(), "json"))),
        ("export log CSV: a day, errors", lambda: first_chunk(exports.export_records(
            engine, LogFilter(since=now - dt.timedelta(days=1), status="error"), "csv"))),
        ("export log JSON: client", lambda: first_chunk(exports.export_records(
            engine, LogFilter(client_id=client), "json"))),
        ("export aggregates CSV: 30 days", lambda: first_chunk(exports.export_minutes(engine, *month, "csv"))),
        ("export aggregates JSON: week, key", lambda: first_chunk(exports.export_minutes(
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

Results = list[tuple[str, list[float]]]


async def run_backend(name: str, url: str, args: argparse.Namespace, data: Data
                      ) -> tuple[Results, pages.PageRun | None]:
    records, now = data.records, data.now
    engine = db.create_engine(url)
    try:
        await db.migrate(engine)
        say(f"[{name}] seeding {len(records):,} records, their aggregates and ledger entries, keys and clients ...")
        started = time.perf_counter()
        await seed(engine, make_url(url), data)
        say(f"[{name}] seeded in {time.perf_counter() - started:.1f} s")
        async with engine.connect() as conn:
            for table in (request_records, ledger_entries):
                counted = (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
                assert counted == len(data.rows(table)), (table.name, counted, len(data.rows(table)))
        sample = next(r for r in records[len(records) // 2:] if r["client_id"])
        results = [] if args.no_queries else await time_queries(engine, now, sample, args.repeat)
    finally:
        await engine.dispose()
    found = None
    if not args.no_http:
        say(f"[{name}] the pages' calls over HTTP ...")
        found = await pages.run(url, now, sample, repeat=args.http_repeat, whole_exports=not args.no_whole_exports,
                                progress=say)
    return results, found


def report(name: str, results: Results, limit: float) -> bool:
    if not results:
        return True
    print(f"\n{name}: time to the answer (exports: to the first chunk of rows), {len(results[0][1])} runs each")
    print(f"{'query':<40} {'first ms':>9} {'median ms':>10} {'max ms':>8}  result")
    ok = True
    for query, times in results:
        passed = max(times) < limit
        ok &= passed
        print(f"{query:<40} {times[0] * 1000:>9.1f} {statistics.median(times) * 1000:>10.1f} "
              f"{max(times) * 1000:>8.1f}  {'pass' if passed else f'FAIL (>= {limit:g} s)'}")
    return ok


def report_all(title: str, found: tuple[Results, pages.PageRun | None], limit: float) -> bool:
    results, run = found
    ok = report(title, results, limit)
    return (pages.report(title, run, limit) if run is not None else True) and ok


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/analytics.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000, help="records to seed (default 1,000,000)")
    p.add_argument("--days", type=float, default=30, help="spread them over the last N days (default 30)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each storage query (default 3)")
    p.add_argument("--http-repeat", type=int, default=5, help="runs of each HTTP call (default 5)")
    p.add_argument("--limit", type=float, default=1.0, help="seconds each query or call may take (default 1)")
    p.add_argument("--pg-url", default=os.environ.get("ARENAHUB_TEST_PG_URL", ""),
                   help="a PostgreSQL database whose role may create databases (default $ARENAHUB_TEST_PG_URL)")
    p.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    p.add_argument("--no-queries", action="store_true", help="skip the storage queries (only the HTTP calls)")
    p.add_argument("--no-http", action="store_true", help="skip the pages' HTTP calls (only the storage queries)")
    p.add_argument("--no-whole-exports", action="store_true", help="do not stream two whole exports to the end")
    p.add_argument("--keep", type=Path, metavar="DIR", help="leave the SQLite database in DIR")
    p.add_argument("--seed", type=int, default=6)
    args = p.parse_args(argv)

    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    data = make_data(args.records, args.days, now, args.seed)
    rows = ", ".join(f"{table.name} {len(part):,}" for table, part in data.tables[1:])
    say(f"made {args.records:,} records over {args.days:g} days and what goes with them ({rows} rows) "
        f"in {time.perf_counter() - started:.1f} s")
    ok = True
    if not args.no_sqlite:
        folder = args.keep or Path(tempfile.mkdtemp(prefix="arenahub-analytics-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"analytics-{secrets.token_hex(3)}.db"
        try:
            found = await run_backend("sqlite", f"sqlite+aiosqlite:///{path}", args, data)
            ok &= report_all(f"SQLite ({path.stat().st_size / 2**20:,.0f} MiB)", found, args.limit)
        finally:
            if args.keep is None:
                for leftover in folder.glob(path.name + "*"):
                    leftover.unlink()
                folder.rmdir()
    if args.pg_url:
        base = make_url(db.normalize_url(args.pg_url))
        name = f"arenahub_bench_{secrets.token_hex(4)}"
        admin = await connect(base)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = base.set(database=name)
            found = await run_backend("postgres", url.render_as_string(hide_password=False), args, data)
            version = await admin.fetchval("SHOW server_version")
            ok &= report_all(f"PostgreSQL {version}", found, args.limit)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(f"\n{'every query and call answered within' if ok else 'some took longer than'} {args.limit:g} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
