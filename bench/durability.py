"""What durable books cost a request: the platform's own record writer and journal, in this process, on
the disk the platform's journal uses.

    .venv/bin/python bench/durability.py [--dir DIR] [--requests 3000] [--concurrency 32] [--json]

Each simulated request does what the platform does for one: reserve and settle credit in a ledger,
hand its record to a ``RecordWriter`` with a ``Journal``, and (the durability) await
``RecordWriter.durable()`` before its answer would go out. The same requests without that await give
the cost: added latency at concurrency 1 (one write and fsync each), and at ``--concurrency`` the
commits per second, the answers sharing each fsync and the CPU time added per request. ``make
bench`` runs it after the load in the bench's data folder (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from arenahub.platform.billing.ledger import Ledger, Usage
from arenahub.platform.journal import Journal
from arenahub.platform.records import RecordWriter, RequestRecord


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: the journal's writes and fsyncs too
    return usage.ru_utime + usage.ru_stime


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(pct / 100 * len(ordered)) - 1)]


async def _pass(directory: Path, requests: int, concurrency: int, durable: bool) -> dict[str, Any]:
    journal = Journal(directory / f"c{concurrency}-{'durable' if durable else 'plain'}")
    ledger = Ledger(keep_entries=False)
    ledger.open_account("key_1", unlimited=True)
    # Never started: nothing goes to the database; the journal is all that is measured.
    engine = create_async_engine("sqlite+aiosqlite://")
    writer = RecordWriter(engine, batch_size=10 ** 9, ledger_entries=ledger.drain_new_entries, journal=journal)
    journal.start()
    latencies: list[float] = []
    remaining = requests

    async def one(n: int) -> None:
        started = time.perf_counter()
        reservation = ledger.reserve("key_1", f"r{concurrency}-{n}", 84_000)
        ledger.settle(reservation, 31_000, client_id="cl_1", model="arena-echo", usage=Usage(15, 16))
        writer.add(RequestRecord(id=reservation.request_id, created_at=dt.datetime.now(dt.UTC), key_id="key_1",
                                 client_id="cl_1", model="arena-echo", stream=n % 2 == 0, status=200,
                                 error_code=None, latency_ms=1.2, ttft_ms=0.9, prompt_tokens=15,
                                 completion_tokens=16, attempts=1, cost=31_000))
        if durable:
            await writer.durable()
        else:
            await asyncio.sleep(0)  # the answer would go out: one turn of the loop either way
        latencies.append(time.perf_counter() - started)

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one(remaining)

    cpu, wall = _cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
    syncs = journal.syncs
    journal.checkpoint(journal.appended)  # no database here: let the journal delete its files
    await journal.close()
    await engine.dispose()
    return {"requests": requests, "concurrency": concurrency, "per_second": requests / wall,
            "p50_ms": _percentile(latencies, 50) * 1000, "p99_ms": _percentile(latencies, 99) * 1000,
            "cpu_us_per_request": cpu / requests * 1e6, "fsyncs": syncs}


async def measure(directory: Path, *, requests: int = 3000, concurrency: int = 32) -> dict[str, Any]:
    """The durability figures: each pass with and without ``durable()``, and what it adds."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"directory": str(directory)}
    for c in (1, concurrency):
        plain = await _pass(directory, requests, c, durable=False)
        durable = await _pass(directory, requests, c, durable=True)
        out[f"c{c}"] = {
            "durable": durable, "plain": plain,
            "added_p50_ms": durable["p50_ms"] - plain["p50_ms"],
            "added_cpu_us_per_request": durable["cpu_us_per_request"] - plain["cpu_us_per_request"],
            "answers_per_fsync": requests / durable["fsyncs"] if durable["fsyncs"] else None,
        }
    out["concurrency"] = concurrency
    return out


def render(figures: dict[str, Any]) -> str:
    c1, cn = figures["c1"], figures[f"c{figures['concurrency']}"]
    return (f"durability (the journal: write + fsync before an answer's last bytes; in process, same disk): "
            f"c=1 +{c1['added_p50_ms']:.3f} ms p50 ({c1['durable']['p50_ms']:.3f} ms, p99 "
            f"{c1['durable']['p99_ms']:.3f}), +{c1['added_cpu_us_per_request']:.0f} us CPU a request; "
            f"c={figures['concurrency']}: {cn['durable']['per_second']:.0f} commits/s, "
            f"{cn['answers_per_fsync']:.1f} answers per fsync, +{cn['added_cpu_us_per_request']:.0f} us CPU a request")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/durability.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, help="where the journals go (default: a temporary folder, then removed)")
    p.add_argument("--requests", type=int, default=3000, help="requests per pass (default 3000)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight in the second pass (default 32)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="arenahub-durability-"))
    try:
        figures = asyncio.run(measure(directory, requests=args.requests, concurrency=args.concurrency))
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(figures, indent=2) if args.json else render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
