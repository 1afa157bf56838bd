"""Benchmark: the dashboard's client list, ``GET /api/admin/clients``, with 1,000 registered clients.

    .venv/bin/python bench/clients.py [--clients 1000] [--connected 500] [--records 60000] [--pg-url URL]

Registers the clients straight in a fresh SQLite database (and, with --pg-url or
ARENAHUB_TEST_PG_URL, a fresh PostgreSQL database made beside that one and dropped afterwards),
each with stored heartbeat stats and a version, a third of them with a last refusal; seeds the
aggregates of --records requests spread over them in the last hour (what ``stats_1h`` reads);
starts a platform in this process and connects --connected of the clients as sessions in its
registry (live heartbeat stats, health records: what a tunnel connection leaves there, without
the sockets). Then times the whole answer, as the dashboard gets it (the admin token checked,
both queries, every view built, JSON encoded), --repeat times, and checks that each one took less
than --limit seconds (0.5 s). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

import arenahub
from arenahub.platform.app import create_app
from arenahub.platform.records import AGGREGATES, aggregate
from arenahub.platform.runtime import Platform
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import db
from arenahub.platform.storage.schema import clients
from arenahub.platform.tunnel_session import ClientSession
from arenahub.protocol import frames

TOKEN = "adm-bench-clients"
KEYS, MODELS = 200, 10
VERSIONS = ("0.0.9", arenahub.__version__, arenahub.__version__, "unknown-build")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def client_rows(count: int, now: dt.datetime, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        stats = {"stats": {"requests_processed": rng.randrange(10_000), "success_rate": 97.5, "cpu_percent": 12.5,
                           "memory_mb": 180.0, "active_requests": rng.randrange(4), "uptime_seconds": 3600.0},
                 "session": {"bridge_reachable": True, "session_valid": True}}
        if n % 3 == 0:
            stats["last_refusal"] = {"code": "invalid_credentials", "at": now.isoformat(),
                                     "message": "the client's API key was regenerated: download the client package "
                                                "again"}
        rows.append({"id": f"cl_{n:04d}", "name": f"bench client {n}", "email": f"owner{n}@example.test",
                     "bridge_url": "http://127.0.0.1:5102", "api_key_hash": secrets.token_hex(32), "rpm": None,
                     "max_concurrent": 4, "disabled": False, "models": [f"model-{m}" for m in range(3)],
                     "client_version": VERSIONS[n % len(VERSIONS)], "last_stats": stats, "last_seen_at": now,
                     "created_at": now - dt.timedelta(seconds=count - n), "updated_at": now})
    return rows


def records(count: int, client_count: int, now: dt.datetime, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` requests in the last 58 minutes (whole minutes of the hour) over every client, 5 % failed."""
    end = now.timestamp()
    out = []
    for n in range(count):
        status = 200 if rng.random() < 0.95 else rng.choice((429, 502, 499))
        out.append({"id": f"r{n}", "created_at": dt.datetime.fromtimestamp(end - rng.uniform(0, 3480), dt.UTC),
                    "key_id": f"key_{rng.randrange(KEYS)}", "client_id": f"cl_{rng.randrange(client_count):04d}",
                    "model": f"model-{rng.randrange(MODELS)}", "stream": True, "status": status,
                    "latency_ms": rng.lognormvariate(7.0, 0.6), "ttft_ms": rng.lognormvariate(6.0, 0.5),
                    "prompt_tokens": rng.randrange(20, 2000), "completion_tokens": rng.randrange(0, 800),
                    "cost": rng.randrange(100, 5000)})
    return out


async def seed(url: str, args: argparse.Namespace, now: dt.datetime) -> int:
    rng = random.Random(args.seed)
    engine = db.create_engine(url)
    try:
        await db.migrate(engine)
        tables = aggregate(records(args.records, args.clients, now, rng))
        async with engine.begin() as conn:
            await conn.execute(clients.insert(), client_rows(args.clients, now, rng))
            for table, rows in zip(AGGREGATES, tables, strict=True):
                for start in range(0, len(rows), 5000):
                    await conn.execute(table.insert(), rows[start:start + 5000])
        return len(tables[0])
    finally:
        await engine.dispose()


class _NoSocket:
    """Stands in for a client's WebSocket: the list only reads sessions; stopping closes them."""

    async def send_bytes(self, data: bytes) -> None:
        pass

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


def connect_sessions(platform: Platform, count: int, rng: random.Random) -> None:
    """What a tunnel connection leaves in the registry and the dispatcher, without its socket."""
    now = platform.dispatcher.clock()
    for n in range(count):
        client_id = f"cl_{n:04d}"
        hello = frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id, api_key="",
                             client_version=VERSIONS[n % len(VERSIONS)], models=[f"model-{m}" for m in range(3)],
                             session=frames.SessionStatus(session_valid=True))
        session = ClientSession(_NoSocket(), client_id=client_id, name=f"bench client {n}",  # type: ignore[arg-type]
                                connection_id=secrets.token_hex(6), hello=hello, max_concurrent=4,
                                rate_limits=platform.dispatcher.client_limits)
        session.stats = frames.ClientStats(requests_processed=rng.randrange(10_000), cpu_percent=10.0,
                                           memory_mb=200.0)
        platform.registry.add(session)
        health = platform.dispatcher.health_of(client_id)
        for _ in range(5):
            health.succeeded(now, ttft=0.4, tokens=300, duration=2.0)


async def measure(url: str, args: argparse.Namespace) -> tuple[list[float], list[float], int, int]:
    settings = PlatformSettings(database_url=url, admin_token=TOKEN)
    platform = Platform(settings)
    await platform.start()
    try:
        connect_sessions(platform, args.connected, random.Random(args.seed))
        app = create_app(settings, platform)
        app.state.platform = platform  # the lifespan would do it; the platform is started above
        times, cpu = [], []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            for _ in range(args.repeat):
                started, started_cpu = time.perf_counter(), time.process_time()
                resp = await http.get("/api/admin/clients")
                times.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)  # this process: the platform and SQLite
                resp.raise_for_status()
            data = resp.json()["data"]
        assert len(data) == args.clients, len(data)
        connected = sum(1 for c in data if c["connected"])
        assert connected == args.connected, connected
        assert sum(c["stats_1h"]["requests"] for c in data) == args.records
        return times, cpu, len(resp.content), sum(1 for c in data if c["outdated"])
    finally:
        await platform.stop()


async def run_backend(name: str, url: str, args: argparse.Namespace, now: dt.datetime) -> bool:
    say(f"[{name}] registering {args.clients:,} clients, aggregates of {args.records:,} requests in the last hour ...")
    started = time.perf_counter()
    minutes = await seed(url, args, now)
    say(f"[{name}] seeded in {time.perf_counter() - started:.1f} s ({minutes:,} request_minutes rows)")
    times, cpu, size, outdated = await measure(url, args)
    passed = max(times) < args.limit
    print(f"{name}: GET /api/admin/clients, {args.clients:,} clients ({args.connected:,} connected, {outdated:,} "
          f"outdated), {size / 1024:,.0f} KiB; {len(times)} runs: first {times[0] * 1000:.0f} ms, median "
          f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms (CPU of this process: median "
          f"{statistics.median(cpu) * 1000:.0f} ms): {'pass' if passed else f'FAIL (>= {args.limit:g} s)'}")
    return passed


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/clients.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=1000, help="registered clients (default 1,000)")
    p.add_argument("--connected", type=int, default=500, help="of which connected (default 500)")
    p.add_argument("--records", type=int, default=60_000, help="requests in the last hour (default 60,000)")
    p.add_argument("--repeat", type=int, default=10, help="requests timed (default 10)")
    p.add_argument("--limit", type=float, default=0.5, help="seconds each answer may take (default 0.5)")
    p.add_argument("--pg-url", default=os.environ.get("ARENAHUB_TEST_PG_URL", ""),
                   help="a PostgreSQL database whose role may create databases (default $ARENAHUB_TEST_PG_URL)")
    p.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if not 0 <= args.connected <= args.clients:
        p.error("--connected must be between 0 and --clients")

    now = dt.datetime.now(dt.UTC)
    ok = True
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="arenahub-clients-") as folder:
            ok &= await run_backend("SQLite", f"sqlite+aiosqlite:///{Path(folder) / 'clients.db'}", args, now)
    if args.pg_url:
        base = make_url(db.normalize_url(args.pg_url))
        name = f"arenahub_bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(user=base.username, password=base.password, host=base.host or "127.0.0.1",
                                      port=base.port or 5432, database=base.database)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            version = await admin.fetchval("SHOW server_version")
            url = base.set(database=name).render_as_string(hide_password=False)
            ok &= await run_backend(f"PostgreSQL {version}", url, args, now)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(f"{'every answer came within' if ok else 'some answers took longer than'} {args.limit:g} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
