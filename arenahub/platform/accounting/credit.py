"""Credit and prices on the request path: reserve on admission, settle or release when it ends.

The live ledger is in memory (no database round trip per request); its entries are persisted in
batches by the record writer, and journaled before the answer they belong to ends (records.py,
journal.py). At start it is rebuilt from per-key totals; top-ups and prices written by the CLI are
merged by a sync loop within ``sync_seconds``.

One platform process owns the book: at start, reservations left open by a stopped process are
released. The record writer's ``recover()`` must run first: a request whose settle only the
stopped process's journal holds is then settled, not released. (Several platform instances need a
shared ledger store: a later step.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.background import watched
from arenahub.platform.billing import (
    Entry,
    Ledger,
    PriceTable,
    Usage,
    cost,
    estimate_reservation,
)
from arenahub.platform.billing.pricing import MAX_MICROS
from arenahub.platform.exchange import Exchange
from arenahub.platform.storage import billing_store
from arenahub.platform.storage.accounts import utcnow
from arenahub.platform.storage.db import DATABASE_ERRORS

log = logging.getLogger("arenahub.platform.accounting.credit")

# What a key with credit has held for an answer when the request sets no max_tokens (as far as the key
# has it): its answer stops where the hold runs out. Settling charges what was used.
CREDIT_COMPLETION = 16_384

# Re-read this far back for top-ups from other processes: their clocks and commits may lag ours.
_OVERLAP = dt.timedelta(seconds=10)


class Accounting:
    def __init__(self, engine: AsyncEngine, *, sync_seconds: float = 1.0) -> None:
        self._engine = engine
        self._sync_seconds = sync_seconds
        self.ledger = Ledger(keep_entries=False)
        self.prices = PriceTable()
        self._money_since = utcnow() - _OVERLAP
        self._prices_since: dt.datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._rechecked: dict[str, float] = {}

    async def start(self) -> None:
        released = await billing_store.release_orphans(self._engine)
        if released:
            log.info("released %d reservation(s) left open by a previous run", released)
        self._money_since = utcnow() - _OVERLAP
        totals = await billing_store.load_totals(self._engine)
        self.ledger.restore(totals.balances, totals.earnings, totals.money_ids)
        await self.sync()
        self._task = watched(self._sync_loop(), "accounting-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def sync(self) -> None:
        """Merge top-ups and adjustments from other processes, and changed prices."""
        started = utcnow()
        fresh = await billing_store.money_since(self._engine, self._money_since)
        applied = self.ledger.load(fresh)
        if applied:
            log.info("merged %d top-up(s) or adjustment(s) written by another process", applied)
        self._money_since = started - _OVERLAP
        since = self._prices_since - _OVERLAP if self._prices_since else None
        prices, newest = await billing_store.prices_since(self._engine, since)
        for model, price in prices.items():
            self.prices.set(model, price)
        if newest is not None and (self._prices_since is None or newest > self._prices_since):
            self._prices_since = newest

    async def recheck(self, key_id: str) -> bool:
        """Before refusing a key for credit, read its top-ups once more (a key made a moment ago with
        ``--credit`` may be cached before its credit was written). At most once a second per key;
        True when it read."""
        now = time.monotonic()
        if self._rechecked.get(key_id, 0.0) > now - 1.0:
            return False
        self._rechecked[key_id] = now
        if len(self._rechecked) > 10_000:
            self._rechecked = {k: t for k, t in self._rechecked.items() if t > now - 1.0}
        await self.load_key(key_id)
        return True

    async def load_key(self, key_id: str) -> None:
        """Merge a key's credit now: for a key made a moment ago with ``--credit``, before its first request."""
        self.ledger.load(await billing_store.money_for_key(self._engine, key_id))

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sync_seconds)
            try:
                await self.sync()
            except DATABASE_ERRORS as exc:
                log.warning("reading top-ups and prices failed: %s", exc)

    # -- the request path -------------------------------------------------------------------

    def reserve(self, ex: Exchange, answer_tokens: int = 262_144) -> None:
        """Hold the request's worst likely cost, or raise InsufficientQuota (402). ``answer_tokens``: the
        longest answer the platform relays (settings.max_answer_tokens)."""
        req = ex.request
        price = self.prices.price(ex.model)
        if ex.image_request is not None:
            # An image request: its prompt and every image it asks for; it completes no tokens.
            amount = min(cost(price, ex.prompt_tokens(), 0, ex.image_request.n), MAX_MICROS)
            ex.reservation = self.ledger.reserve(ex.key.id, ex.id, amount, unlimited=ex.key.unlimited)
            return
        max_tokens = req.max_completion_tokens or req.max_tokens
        least = min(estimate_reservation(price, ex.prompt_tokens(), max_tokens, images=ex.images()), MAX_MICROS)
        if ex.key.unlimited:
            ex.reservation = self.ledger.reserve(ex.key.id, ex.id, least, unlimited=True)
            return
        # A key with credit: its answer stops where the hold runs out, so hold what the answer may need
        # (max_tokens, else CREDIT_COMPLETION), as far as the key has it, and at least ``least``.
        wanted = min(max_tokens or CREDIT_COMPLETION, answer_tokens)
        most = max(least, estimate_reservation(price, ex.prompt_tokens(), wanted, images=ex.images(), cap=wanted))
        ex.reservation = self.ledger.reserve(ex.key.id, ex.id, min(most, MAX_MICROS), unlimited=False, minimum=least)

    def close(self, ex: Exchange, prompt_tokens: int, completion_tokens: int) -> int | None:
        """Settle to actual use when anything was delivered, else release. Returns the charge (micro-USD)."""
        reservation = ex.reservation
        if reservation is None:
            return None
        if not ex.delivered():
            self.ledger.release(reservation)
            return 0
        images = ex.images()
        # Bounded like every amount (a huge prompt at a huge price must not make the settle fail: the
        # ledger caps a limited key's charge at what it holds anyway).
        actual = min(cost(self.prices.price(ex.model), prompt_tokens, completion_tokens, images), MAX_MICROS)
        entry = self.ledger.settle(reservation, actual, client_id=ex.client_id or "", model=ex.model,
                                   usage=Usage(prompt_tokens, completion_tokens, images))
        return entry.charge

    def drain(self) -> list[Entry]:
        return self.ledger.drain_new_entries()

    # -- admin ------------------------------------------------------------------------------

    def top_up(self, key_id: str, amount: int, *, note: str | None = None) -> Entry:
        """Credit a key at once; the entry is persisted with the next batch."""
        return self.ledger.topup(key_id, amount, note=note)

    def adjust(self, key_id: str, amount: int, *, note: str | None = None) -> Entry:
        return self.ledger.adjust(key_id, amount, note=note)
