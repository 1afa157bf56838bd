"""Request records and client heartbeats, written to the database in batches off the request path,
with the per-minute aggregates the dashboard reads; the prompts and answers of requests when the
operator stores them (``store_prompts``); and the retention of raw records and those contents.

The books (records and the ledger's entries) also go to a local write-ahead journal (journal.py) as
they are made. The request path awaits ``RecordWriter.durable()`` before an answer's last bytes, so
a crash loses nothing a consumer saw complete; ``recover()`` replays what a stopped process's
journal holds at the next start."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.background import watched
from arenahub.platform.billing.ledger import Entry
from arenahub.platform.journal import Progress
from arenahub.platform.storage.accounts import record_client_states, utcnow
from arenahub.platform.storage.billing_store import insert_entries
from arenahub.platform.storage.db import DATABASE_ERRORS
from arenahub.platform.storage.schema import (
    COUNTERS,
    LATENCY_BUCKETS_MS,
    LATENCY_COLUMNS,
    request_contents,
    request_days,
    request_hours,
    request_minutes,
    request_records,
    request_totals,
)

if TYPE_CHECKING:
    from arenahub.platform.journal import Journal, Leftover

log = logging.getLogger("arenahub.platform.records")
# Stored prompts and answers are written about this much text per transaction (at least one each).
CONTENT_BATCH_CHARS = 4_000_000


@dataclass
class RequestRecord:
    id: str
    created_at: dt.datetime
    key_id: str
    client_id: str | None
    model: str
    stream: bool
    status: int
    error_code: str | None
    latency_ms: float
    ttft_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    cost: int | None = None
    # {"attempts": [{"client_id", "outcome", "code", "error", "ms"}...], "error": message} (Exchange.detail)
    detail: dict[str, Any] | None = None
    # Images billed: those in a chat request's prompt, or those an image request made (Exchange.images)
    images: int = 0


class JournalLine(msgspec.Struct, omit_defaults=True):
    """One line of the journal: the ledger's entries made since the last line, oldest first, then
    the record of the request that ended (when one did)."""

    entries: list[Entry] = []
    record: RequestRecord | None = None


_encode_line = msgspec.json.Encoder().encode
_decode_line = msgspec.json.Decoder(JournalLine).decode


class RecordWriter:
    """Collects records (and the ledger's new entries) in memory and inserts them in batches.

    A failed write keeps the batch and tries again (nothing is dropped while the database is
    away); ``close()`` flushes everything that is left. Ledger entries are written before the
    records of the same flush. With a ``journal``, every record and entry is appended to it, in the
    order they were made, as it is queued here; each flush that succeeds tells the journal how far
    the database has got.
    """

    def __init__(self, engine: AsyncEngine, *, flush_seconds: float = 0.5, batch_size: int = 1000,
                 ledger_entries: Callable[[], list[Entry]] | None = None, journal: Journal | None = None) -> None:
        self._engine = engine
        self._journal = journal
        self._journaled = 0  # the journal's line of the last record or entries queued here
        self._queued = 0  # records and batches of entries queued so far ...
        self._committed = Progress()  # ... and how many of them the database has
        self._flush_seconds = flush_seconds
        self._batch_size = batch_size
        self._ledger_source = ledger_entries
        self._entries: list[Entry] = []
        self._pending: list[dict[str, Any]] = []
        self._contents: list[dict[str, Any]] = []
        self._client_states: dict[str, dict[str, Any]] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        # Idempotent: a batch whose commit succeeded but whose acknowledgement was lost is retried
        # without a duplicate-key error blocking every later record, and only the rows this insert
        # really added (RETURNING) go into the aggregates, so a retry counts nothing twice.
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert = (insert(request_records).on_conflict_do_nothing(index_elements=["id"])
                        .returning(request_records.c.id))
        self._insert_contents = insert(request_contents).on_conflict_do_nothing(index_elements=["request_id"])
        self._upserts = []
        for table in AGGREGATES:
            upsert = insert(table)
            self._upserts.append(upsert.on_conflict_do_update(
                index_elements=[c.name for c in table.primary_key.columns],
                set_={name: table.c[name] + upsert.excluded[name] for name in COUNTERS}))

    def start(self) -> None:
        if self._journal is not None:
            self._journal.start()
        self._task = watched(self._run(), "record-writer")

    def add(self, record: RequestRecord) -> None:
        entries = self._take_entries()  # the request's settle among them: journaled before its record
        self._pending.append(vars(record))  # the record is not used again
        self._queued += 1
        if self._journal is not None:
            self._journaled = self._journal.append(_encode_line(JournalLine(entries, record)))
        if len(self._pending) >= self._batch_size:
            self._wakeup.set()

    async def durable(self) -> None:
        """Return once every record added and every ledger entry made before the call would survive a
        kill -9: written and fsynced to the journal (requests that end together share the fsync), or,
        without a journal, committed to the database (they share the transaction)."""
        self._journal_entries()
        if self._journal is not None:
            await self._journal.synced()
            return
        target = self._queued
        self._wakeup.set()
        await self._committed.reach(target)

    def _take_entries(self) -> list[Entry]:
        """Queue the ledger's new entries; journaled with the record that follows, or on their own."""
        entries = self._ledger_source() if self._ledger_source is not None else []
        if entries:
            self._entries.extend(entries)
            self._queued += 1
        return entries

    def _journal_entries(self) -> None:
        entries = self._take_entries()
        if entries and self._journal is not None:
            self._journaled = self._journal.append(_encode_line(JournalLine(entries)))

    def add_content(self, request_id: str, created_at: dt.datetime, prompt: str, answer: str) -> None:
        """A request's prompt and answer (only when the operator stores them); written with the records."""
        self._contents.append({"request_id": request_id, "created_at": created_at, "prompt": prompt,
                               "answer": answer})
        if len(self._contents) >= self._batch_size:
            self._wakeup.set()

    def client_state(self, client_id: str, **values: Any) -> None:
        """Latest state of a client (heartbeat stats, last seen); coalesced until the next flush.
        ``last_stats`` is a patch: its keys are merged into the stored document (see
        ``accounts.record_client_states``)."""
        _merge_state(self._client_states.setdefault(client_id, {}), values)

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._entries) + len(self._contents)

    def _contents_batch(self) -> list[dict[str, Any]]:
        """The next contents to write: up to the batch size and about CONTENT_BATCH_CHARS of text."""
        size = 0
        for n, content in enumerate(self._contents[: self._batch_size]):
            size += len(content["prompt"]) + len(content["answer"])
            if size > CONTENT_BATCH_CHARS and n:
                return self._contents[:n]
        return self._contents[: self._batch_size]

    async def _run(self) -> None:
        delay = self._flush_seconds
        while not self._closing:
            try:
                await asyncio.wait_for(self._wakeup.wait(), delay)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                await self.flush()
                delay = self._flush_seconds
            except DATABASE_ERRORS as exc:  # the database is away: keep the records, back off, retry
                log.warning("writing %d request records and ledger entries failed (%s); retrying", self.backlog, exc)
                delay = min(max(delay * 2, 1.0), 30.0)

    async def flush(self) -> None:
        self._journal_entries()
        queued, journaled = self._queued, self._journaled
        while self._entries:
            entries = self._entries[: self._batch_size]
            await insert_entries(self._engine, entries)
            del self._entries[: len(entries)]
        while self._pending or self._contents or self._client_states:
            batch = self._pending[: self._batch_size]
            contents = self._contents_batch()
            if batch or contents:
                await self._insert_records(batch, contents)
                # Committed: forget the batch before anything else can fail, or a retry inserts it twice.
                del self._pending[: len(batch)]
                del self._contents[: len(contents)]
                self.written += len(batch)
            states, self._client_states = self._client_states, {}
            if not states:
                continue
            try:
                await record_client_states(self._engine, states)
            except BaseException:
                for client_id, values in states.items():  # keep anything newer that arrived meanwhile
                    self._client_states[client_id] = _merge_state(values, self._client_states.get(client_id, {}))
                raise
        self._committed.advance(queued)
        if self._journal is not None:
            self._journal.checkpoint(journaled)

    async def _insert_records(self, batch: list[dict[str, Any]], contents: list[dict[str, Any]]) -> None:
        """Insert records (those new to the database added to the aggregates) and contents, in one transaction."""
        async with self._engine.begin() as conn:
            if batch:
                inserted = (await conn.execute(self._insert, batch)).scalars().all()
                if inserted:
                    by_id = {record["id"]: record for record in batch}
                    for upsert, rows in zip(self._upserts, aggregate(by_id[i] for i in inserted), strict=True):
                        await conn.execute(upsert, rows)
            if contents:
                await conn.execute(self._insert_contents, contents)

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for attempt in range(5):
            try:
                await self.flush()
                break
            except DATABASE_ERRORS as exc:
                log.error("final flush of %d records and ledger entries failed (%s), attempt %d", self.backlog, exc,
                          attempt + 1)
                await asyncio.sleep(0.5 * (attempt + 1))
        if self._journal is not None:  # kept for the next start unless the database has everything
            await self._journal.close()

    # -- after a crash -------------------------------------------------------------------------

    async def recover(self) -> int:
        """Write into the database what the journals of stopped processes hold, then delete them;
        rows the database already has are skipped. Run it at start before the ledger is loaded, so
        that a request settled in a journal is not released as an orphan. Returns the lines read."""
        if self._journal is None:
            return 0
        lines = 0
        for leftover in self._journal.leftovers():
            try:
                lines += await self._replay(leftover)
            except BaseException:
                leftover.release()  # kept for the next start
                raise
            leftover.discard()
        return lines

    async def _replay(self, leftover: Leftover) -> int:
        entries: list[Entry] = []
        records: list[dict[str, Any]] = []
        lines = unreadable = entry_count = record_count = 0
        for raw in leftover.lines():
            try:
                line = _decode_line(raw)
            except msgspec.DecodeError:
                unreadable += 1
                continue
            lines += 1
            entries += line.entries
            if line.record is not None:
                records.append(vars(line.record))
            if len(entries) + len(records) >= self._batch_size:
                await insert_entries(self._engine, entries)
                await self._insert_records(records, [])
                entry_count, record_count = entry_count + len(entries), record_count + len(records)
                entries, records = [], []
        await insert_entries(self._engine, entries)
        if records:
            await self._insert_records(records, [])
        entry_count, record_count = entry_count + len(entries), record_count + len(records)
        if lines or unreadable:
            log.warning("replayed the journal of a platform that stopped without writing its books (%s): %d ledger "
                        "entries and %d request records (those the database lacked are added)%s",
                        leftover.lock_path.name, entry_count, record_count,
                        f"; {unreadable} unreadable line(s) skipped" if unreadable else "")
        return lines


def _merge_state(into: dict[str, Any], newer: Mapping[str, Any]) -> dict[str, Any]:
    """Newer client state over older, merging the ``last_stats`` patches key by key."""
    for name, value in newer.items():
        if name == "last_stats" and isinstance(into.get(name), dict):
            into[name] = {**into[name], **value}
        else:
            into[name] = value
    return into


# -- aggregates ---------------------------------------------------------------------------------

def status_column(status: int) -> str | None:
    """The request_minutes counter a status adds to, besides ``requests`` (None: neither kind)."""
    if status == 200:
        return "successes"
    if status in (429, 499):
        return f"errors_{status}"
    if 400 <= status < 500:
        return "errors_4xx"
    return "errors_5xx" if status >= 500 else None


def latency_column(latency_ms: float) -> str:
    """The histogram column of a latency: lat_<B> for (previous bound, B] ms, else lat_inf."""
    return LATENCY_COLUMNS[bisect_left(LATENCY_BUCKETS_MS, latency_ms)]


AGGREGATES = (request_minutes, request_totals, request_hours, request_days)  # what aggregate() returns rows of


def aggregate(records: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], ...]:
    """What records add to each table of AGGREGATES, in that order, each list in key order."""
    minutes: dict[tuple[Any, ...], list[Any]] = {}
    totals: dict[tuple[Any, ...], list[Any]] = {}
    hours: dict[tuple[Any, ...], list[Any]] = {}
    days: dict[tuple[Any, ...], list[Any]] = {}
    for r in records:
        minute, adds = _minute(r), _counts(r)
        hour = minute.replace(minute=0)
        day = hour.replace(hour=0)
        client, key, model = r["client_id"] or "", r["key_id"], r["model"]
        # Each record adds its few counters to every row it belongs to (cheaper than adding up
        # whole minute rows: with many clients and keys those hardly merge).
        for into, ident in ((minutes, (minute, client, key, model)), (totals, (minute,)),
                            (hours, ("client", client, hour)), (hours, ("key", key, hour)),
                            (hours, ("model", model, hour)), (days, (day, "client", client)),
                            (days, (day, "key", key)), (days, (day, "model", model))):
            row = into.get(ident)
            if row is None:
                row = into[ident] = [0] * len(COUNTERS)
            for at, value in adds:
                row[at] += value
    return (_rows(minutes, ("minute", "client_id", "key_id", "model")), _rows(totals, ("minute",)),
            _rows(hours, ("dimension", "value", "hour")), _rows(days, ("day", "dimension", "value")))


def _rows(sums: dict[tuple[Any, ...], list[Any]], identity: tuple[str, ...]) -> list[dict[str, Any]]:
    names = (*identity, *COUNTERS)
    return [dict(zip(names, (*ident, *counts), strict=True)) for ident, counts in sorted(sums.items())]


_AT = {name: at for at, name in enumerate(COUNTERS)}


def _minute(record: Mapping[str, Any]) -> dt.datetime:
    created = record["created_at"]
    created = created.replace(tzinfo=dt.UTC) if created.tzinfo is None else created.astimezone(dt.UTC)
    return created.replace(second=0, microsecond=0)


def _counts(r: Mapping[str, Any]) -> list[tuple[int, Any]]:
    """What one record adds: (position in COUNTERS, amount) for the counters it changes."""
    adds: list[tuple[int, Any]] = [(_AT["requests"], 1), (_AT["prompt_tokens"], r["prompt_tokens"]),
                                   (_AT["completion_tokens"], r["completion_tokens"]), (_AT["cost"], r["cost"] or 0)]
    kind = status_column(r["status"])
    if kind is not None:
        adds.append((_AT[kind], 1))
    if kind == "successes":
        adds += [(_AT["latency_sum_ms"], r["latency_ms"]), (_AT[latency_column(r["latency_ms"])], 1)]
    if r["ttft_ms"] is not None:
        adds += [(_AT["ttft_sum_ms"], r["ttft_ms"]), (_AT["ttft_count"], 1)]
    return adds


def minute_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What records (``vars(RequestRecord)``) add to request_minutes: one row per UTC minute, client,
    key and model, sorted by that identity (concurrent writers then lock rows in the same order)."""
    return aggregate(records)[0]


# -- retention ----------------------------------------------------------------------------------

async def delete_records_before(engine: AsyncEngine, cutoff: dt.datetime, *, batch_size: int = 5000,
                                pause: float = 0.05) -> int:
    """Delete raw records, and stored prompts and answers, created before ``cutoff``, ``batch_size``
    per short transaction (the record writer gets its turn in between); the aggregates stay. Returns
    how many records were deleted."""
    deleted = 0
    for table, ident in ((request_records, request_records.c.id), (request_contents, request_contents.c.request_id)):
        created = table.c.created_at
        oldest = sa.select(ident).where(created < cutoff.astimezone(dt.UTC)).order_by(created).limit(batch_size)
        while True:
            async with engine.begin() as conn:
                count = (await conn.execute(sa.delete(table).where(ident.in_(oldest.scalar_subquery())))).rowcount
            if table is request_records:
                deleted += count
            if count < batch_size:
                break
            await asyncio.sleep(pause)
    return deleted


async def keep_records_for(engine: AsyncEngine, days: int, *, every: float = 3600.0) -> None:
    """Every ``every`` seconds, delete raw records older than ``days`` days (0: keep them forever)."""
    while days > 0:
        try:
            deleted = await delete_records_before(engine, utcnow() - dt.timedelta(days=days))
            if deleted:
                log.info("deleted %d request records older than %d days", deleted, days)
        except DATABASE_ERRORS as exc:  # the database is away: try again next time
            log.warning("deleting request records older than %d days failed: %s", days, exc)
        await asyncio.sleep(every)
