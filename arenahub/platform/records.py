"""Request records and client heartbeats, written to the database in batches off the request path."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.billing.ledger import Entry
from arenahub.platform.storage.accounts import record_client_states
from arenahub.platform.storage.billing_store import insert_entries
from arenahub.platform.storage.schema import request_records

log = logging.getLogger("arenahub.platform.records")


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


class RecordWriter:
    """Collects records (and the ledger's new entries) in memory and inserts them in batches.

    A failed write keeps the batch and tries again (nothing is dropped while the database is
    away); ``close()`` flushes everything that is left. Ledger entries are written before the
    records of the same flush.
    """

    def __init__(self, engine: AsyncEngine, *, flush_seconds: float = 0.5, batch_size: int = 1000,
                 ledger_entries: Callable[[], list[Entry]] | None = None) -> None:
        self._engine = engine
        self._flush_seconds = flush_seconds
        self._batch_size = batch_size
        self._ledger_source = ledger_entries
        self._entries: list[Entry] = []
        self._pending: list[dict[str, Any]] = []
        self._client_states: dict[str, dict[str, Any]] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        # Idempotent: a batch whose commit succeeded but whose acknowledgement was lost is retried
        # without a duplicate-key error blocking every later record.
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert = insert(request_records).on_conflict_do_nothing(index_elements=["id"])

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="record-writer")

    def add(self, record: RequestRecord) -> None:
        self._pending.append(vars(record))  # the record is not used again
        if len(self._pending) >= self._batch_size:
            self._wakeup.set()

    def client_state(self, client_id: str, **values: Any) -> None:
        """Latest state of a client (heartbeat stats, last seen); coalesced until the next flush."""
        self._client_states.setdefault(client_id, {}).update(values)

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._entries)

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
            except Exception as exc:  # the database is away: keep the records, back off, retry
                log.warning("writing %d request records and ledger entries failed (%s); retrying", self.backlog, exc)
                delay = min(max(delay * 2, 1.0), 30.0)

    async def flush(self) -> None:
        if self._ledger_source is not None:
            self._entries.extend(self._ledger_source())
        while self._entries:
            entries = self._entries[: self._batch_size]
            await insert_entries(self._engine, entries)
            del self._entries[: len(entries)]
        while self._pending or self._client_states:
            batch = self._pending[: self._batch_size]
            if batch:
                async with self._engine.begin() as conn:
                    await conn.execute(self._insert, batch)
                # Committed: forget the batch before anything else can fail, or a retry inserts it twice.
                del self._pending[: len(batch)]
                self.written += len(batch)
            states, self._client_states = self._client_states, {}
            if not states:
                continue
            try:
                await record_client_states(self._engine, states)
            except BaseException:
                for client_id, values in states.items():  # keep anything newer that arrived meanwhile
                    self._client_states[client_id] = {**values, **self._client_states.get(client_id, {})}
                raise

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for attempt in range(5):
            try:
                await self.flush()
                return
            except Exception as exc:
                log.error("final flush of %d records and ledger entries failed (%s), attempt %d", self.backlog, exc,
                          attempt + 1)
                await asyncio.sleep(0.5 * (attempt + 1))
