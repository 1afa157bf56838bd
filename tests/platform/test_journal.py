"""The write-ahead journal (journal.py) and the record writer's use of it (records.py): appends that wait
together share an fsync; a journal left by a process killed with SIGKILL is replayed at the next start,
adding only what the database lacks; segments go once the database has their lines."""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform import journal as journal_module
from arenahub.platform.accounting.credit import Accounting
from arenahub.platform.billing.ledger import Kind, Ledger, Reservation, Usage
from arenahub.platform.journal import Journal, Progress
from arenahub.platform.records import JournalLine, RecordWriter, RequestRecord
from arenahub.platform.storage import billing_store
from arenahub.platform.storage import ledger_days as day_sums
from arenahub.platform.storage.schema import ledger_days, ledger_entries, request_records, request_totals


def crashed(work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` in a forked process, then kill that process with SIGKILL: nothing is closed or flushed."""
    def child() -> None:
        asyncio.run(work())
        os.kill(os.getpid(), signal.SIGKILL)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL, f"the child ended with {process.exitcode}, not by the kill"


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    """The journal's folder (the SQLite database of the test is in ``tmp_path``)."""
    return tmp_path / "journal"


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def record(request_id: str, *, cost: int | None = None, key_id: str = "key_1") -> RequestRecord:
    return RequestRecord(id=request_id, created_at=dt.datetime.now(dt.UTC), key_id=key_id, client_id="cl_1",
                         model="m", stream=False, status=200, error_code=None, latency_ms=3.0, ttft_ms=None,
                         prompt_tokens=5, completion_tokens=7, attempts=1, cost=cost)


async def count(engine: AsyncEngine, table: sa.Table, column: str | None = None) -> int:
    what = sa.func.count() if column is None else sa.func.coalesce(sa.func.sum(table.c[column]), 0)
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(what).select_from(table))).scalar_one())


# --- the journal ------------------------------------------------------------------------------

async def test_appends_that_wait_together_share_one_fsync(journal_dir: Path) -> None:
    journal = Journal(journal_dir)
    journal.start()
    try:
        async def one(n: int) -> None:
            journal.append(b'{"n":%d}' % n)
            await journal.synced()

        await one(0)
        assert journal.syncs == 1
        await asyncio.gather(*(one(n) for n in range(1, 65)))
        assert journal.syncs <= 4, f"64 appends that waited together took {journal.syncs - 1} fsyncs"
        (segment,) = journal_dir.glob("*.jsonl")
        assert segment.read_bytes() == b"".join(b'{"n":%d}\n' % n for n in range(65))
    finally:
        journal.checkpoint(journal.appended)
        await journal.close()
    assert not journal_dir.exists(), "a clean stop with everything in the database leaves nothing"


async def test_a_waiter_that_was_cancelled_holds_up_no_one() -> None:
    progress = Progress()
    gone = asyncio.create_task(progress.reach(2))
    waiting = asyncio.create_task(progress.reach(3))
    await asyncio.sleep(0)
    gone.cancel()
    progress.advance(3)
    await asyncio.wait_for(waiting, 1)
    await progress.reach(1)  # reached already: at once


async def test_a_killed_process_leaves_its_journal_to_the_next_start_and_a_live_one_is_left_alone(
        journal_dir: Path) -> None:
    async def write_then_die() -> None:
        journal = Journal(journal_dir)
        journal.start()
        for n in range(3):
            journal.append(b"dead %d" % n)
        await journal.synced()

    crashed(write_then_die)
    alive = Journal(journal_dir)
    alive.start()
    alive.append(b"alive")
    await alive.synced()
    try:
        starting = Journal(journal_dir)
        (dead,) = starting.leftovers()
        assert list(dead.lines()) == [b"dead 0", b"dead 1", b"dead 2"]
        assert starting.leftovers() == [], "a journal being replayed is not handed out twice"
        dead.discard()
        assert len(files(journal_dir)) == 2, "only the live process's lock and segment are left"
        assert Journal(journal_dir).leftovers() == []
    finally:
        await alive.close()  # nothing checkpointed: its files stay for a next start


async def test_a_line_cut_short_by_the_crash_is_left_out(journal_dir: Path) -> None:
    async def write_then_die() -> None:
        journal = Journal(journal_dir)
        journal.start()
        journal.append(b"whole")
        await journal.synced()

    crashed(write_then_die)
    (segment,) = journal_dir.glob("*.jsonl")
    with open(segment, "ab") as f:
        f.write(b'{"entries":[{"entry_')  # what a write cut by a power loss may leave
    (dead,) = Journal(journal_dir).leftovers()
    assert list(dead.lines()) == [b"whole"]
    dead.release()


async def test_segments_go_once_the_database_has_their_lines(journal_dir: Path) -> None:
    journal = Journal(journal_dir, segment_bytes=100)
    journal.start()
    for n in range(40):
        journal.append(b"line %02d " % n + b"x" * 20)  # 30 bytes: four lines to a segment
        await journal.synced()
    assert len(list(journal_dir.glob("*.jsonl"))) == 10

    journal.checkpoint(22)
    journal.append(b"one more")  # the next round deletes what the checkpoint covers
    await journal.synced()
    (lock,) = journal_dir.glob("*.lock")
    kept = [line for p in sorted(journal_dir.glob("*.jsonl")) for line in p.read_bytes().splitlines()]
    assert kept[0].startswith(b"line 20"), "lines 21 to 24 (numbered from 1) share a segment: it stays"
    assert kept[-1] == b"one more"

    await journal.close()  # the database lacks some lines: everything stays for the next start
    (left,) = Journal(journal_dir).leftovers()
    assert list(left.lines()) == kept
    left.discard()
    assert files(journal_dir) == []


async def test_a_failed_write_is_tried_again_and_its_waiters_wait(journal_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    failures = [OSError(28, "No space left on device")]

    def write(fd: int, data: Any) -> int:
        if failures:
            real_write(fd, bytes(data[:5]))  # part of the data got out before the disk filled up
            raise failures.pop()
        return real_write(fd, data)

    monkeypatch.setattr(journal_module.os, "write", write)
    journal = Journal(journal_dir)
    journal.start()
    journal.append(b"first line")
    await asyncio.wait_for(journal.synced(), 5)
    assert failures == []
    journal.append(b"second line")
    await journal.synced()
    await journal.close()
    (left,) = Journal(journal_dir).leftovers()
    assert list(left.lines()) == [b"first line", b"second line"], "the cut write was not appended to"
    left.release()


# --- the record writer's journal --------------------------------------------------------------

def ledger_with_two_requests() -> tuple[Ledger, Reservation]:
    """A key with 1 USD, and two requests in flight: r1 (returned, to be settled) and r2."""
    ledger = Ledger(keep_entries=False)
    ledger.topup("key_1", 1_000_000)
    r1 = ledger.reserve("key_1", "r1", 50_000)
    ledger.reserve("key_1", "r2", 70_000)
    return ledger, r1


def settle(ledger: Ledger, reservation: Reservation) -> None:
    ledger.settle(reservation, 12_000, client_id="cl_1", model="m", usage=Usage(5, 7))


async def test_durable_returns_once_the_books_are_in_the_journal(journal_dir: Path, engine: AsyncEngine) -> None:
    ledger, r1 = ledger_with_two_requests()
    journal = Journal(journal_dir)
    writer = RecordWriter(engine, flush_seconds=3600, ledger_entries=ledger.drain_new_entries, journal=journal)
    writer.start()
    try:
        settle(ledger, r1)
        writer.add(record("r1", cost=12_000))
        ledger.topup("key_1", 5)  # made after the record: journaled by durable() itself
        await writer.durable()
        (segment,) = journal_dir.glob("*.jsonl")
        lines = [msgspec.json.decode(raw, type=JournalLine) for raw in segment.read_bytes().splitlines()]
        assert [[e.kind for e in line.entries] for line in lines] == [
            [Kind.TOPUP, Kind.RESERVE, Kind.RESERVE, Kind.SETTLE], [Kind.TOPUP]]
        assert lines[0].record is not None and lines[0].record.id == "r1" and lines[1].record is None
        assert await count(engine, request_records) == 0, "the database gets its batch later"
    finally:
        await writer.close()
    assert await count(engine, request_records) == 1 and await count(engine, ledger_entries) == 5
    assert not journal_dir.exists(), "all in the database at the stop: the journal is gone"


async def test_a_kill_loses_nothing_that_was_durable_and_the_restart_releases_only_the_open_request(
        journal_dir: Path, engine: AsyncEngine) -> None:
    async def serve_then_die() -> None:
        ledger, r1 = ledger_with_two_requests()
        writer = RecordWriter(engine, flush_seconds=3600, ledger_entries=ledger.drain_new_entries,
                              journal=Journal(journal_dir))
        writer.start()
        writer.add(record("r0"))  # a request refused early: a record, no entries of its own
        settle(ledger, r1)
        writer.add(record("r1", cost=12_000))
        await writer.durable()  # r1's answer goes out: then the kill, before any batch

    crashed(serve_then_die)
    # The database did get the first line's batch, but the kill came before the journal was cut back.
    (segment,) = journal_dir.glob("*.jsonl")
    first = msgspec.json.decode(segment.read_bytes().splitlines()[0], type=JournalLine)
    assert first.record is not None and [e.kind for e in first.entries] == [Kind.TOPUP, Kind.RESERVE, Kind.RESERVE]
    batch = RecordWriter(engine, ledger_entries=lambda: first.entries)
    batch.add(first.record)
    await batch.flush()

    restarted = RecordWriter(engine, journal=Journal(journal_dir))
    assert await restarted.recover() == 2
    accounting = Accounting(engine)
    await accounting.start()  # releases what is still open: r2, not r1, whose settle the journal kept
    await accounting.stop()

    kinds = {(e.request_id, e.kind) for e in await billing_store.entries_for_request(engine, "r1")}
    kinds |= {(e.request_id, e.kind) for e in await billing_store.entries_for_request(engine, "r2")}
    assert kinds == {("r1", Kind.RESERVE), ("r1", Kind.SETTLE), ("r2", Kind.RESERVE), ("r2", Kind.RELEASE)}
    assert await count(engine, ledger_entries) == 5
    assert await count(engine, request_records) == 2
    assert await count(engine, request_totals, "requests") == 2, "r0, in the batch and in the journal, counts once"
    assert await count(engine, ledger_days, "cost") == 12_000 * len(day_sums.SHAPES), "r1 once in each shape"
    totals = await billing_store.load_book(engine)
    assert totals.balances == {"key_1": (1_000_000 - 12_000, 0)}
    assert [(c.client_id, c.requests, c.value) for c in totals.earnings] == [("cl_1", 1, 12_000)]
    assert files(journal_dir) == [] and await restarted.recover() == 0


async def test_an_unreadable_line_is_skipped_and_the_rest_replayed(journal_dir: Path, engine: AsyncEngine) -> None:
    async def write_then_die() -> None:
        journal = Journal(journal_dir)
        journal.start()
        journal.append(msgspec.json.encode(JournalLine(record=record("a"))))
        journal.append(b'{"record": "not a record"}')
        journal.append(msgspec.json.encode(JournalLine(record=record("b"))))
        await journal.synced()

    crashed(write_then_die)
    assert await RecordWriter(engine, journal=Journal(journal_dir)).recover() == 2
    async with engine.connect() as conn:
        assert sorted((await conn.execute(sa.select(request_records.c.id))).scalars()) == ["a", "b"]


async def test_without_a_journal_durable_waits_for_the_database(engine: AsyncEngine) -> None:
    ledger, _ = ledger_with_two_requests()
    writer = RecordWriter(engine, flush_seconds=3600, ledger_entries=ledger.drain_new_entries)
    writer.start()
    try:
        for n in range(20):
            writer.add(record(f"q{n}"))
        await asyncio.gather(*(writer.durable() for _ in range(20)))
        assert await count(engine, request_records) == 20 and await count(engine, ledger_entries) == 3
    finally:
        await writer.close()
