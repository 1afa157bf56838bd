"""Credit and prices on the request path: reserve on admission, settle or release when it ends.

The live balances are in a credit store (credit_store.py: in memory for one instance, Redis for a
cluster), so no database round trip is made per request; the entries are persisted in batches by the
record writer, and journaled before the answer they belong to ends (records.py, journal.py).
Top-ups and adjustments are written to the book first, then applied to the store; prices and money
written by the CLI are merged by a sync loop within ``sync_seconds``.

One instance alone owns the book: at start, reservations left open by a stopped process are
released, then the store is loaded from the book. The record writer's ``recover()`` must run first: a
request whose settle only the stopped process's journal holds is then settled, not released. In a
cluster the other instances' reservations are live: the shared store is loaded only when Redis has
no book (first start, or Redis lost its data), by ``ensure_ready`` (cluster/rebuild.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.background import watched
from arenahub.platform.accounting.credit_store import CreditStore, LocalCreditStore
from arenahub.platform.billing import (
    Entry,
    Kind,
    Ledger,
    PriceTable,
    Usage,
    cost,
    estimate_reservation,
)
from arenahub.platform.billing.pricing import MAX_MICROS, InvalidAmount, check_micros
from arenahub.platform.cluster.changes import ChangeFeed, pause
from arenahub.platform.cluster.errors import LiveStateUnavailable
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
    def __init__(self, engine: AsyncEngine, store: CreditStore | None = None, *, sync_seconds: float = 1.0,
                 rebuild: Callable[[], Awaitable[None]] | None = None, feed: ChangeFeed | None = None) -> None:
        self._engine = engine
        self._feed = feed  # wakes the sync when a top-up or a price is written (cluster/changes.py)
        self._sync_seconds = sync_seconds
        self.store: CreditStore = store if store is not None else LocalCreditStore()
        # Loads a shared store that has no book (cluster/rebuild.py); None: the store is this process's.
        self._rebuild = rebuild
        self.prices = PriceTable()
        self._money_since = utcnow() - _OVERLAP
        self._prices_since: dt.datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready_task: asyncio.Task[None] | None = None
        self._rechecked: dict[str, float] = {}

    @property
    def ledger(self) -> Ledger:
        """The in-process store's ledger (one instance only)."""
        if not isinstance(self.store, LocalCreditStore):
            raise TypeError("the credit of a cluster is in Redis, not in this process")
        return self.store.ledger

    async def start(self) -> None:
        self._money_since = utcnow() - _OVERLAP
        if self._rebuild is None:
            released = await billing_store.release_orphans(self._engine)
            if released:
                log.info("released %d reservation(s) left open by a previous run", released)
            await self.store.restore(await billing_store.load_book(self._engine))
        else:
            await self.ensure_ready()
        await self.sync()
        self._task = watched(self._sync_loop(), "accounting-sync")
        if self._rebuild is not None:
            self._ready_task = watched(self._ready_loop(), "shared-credit-ready")

    async def ensure_ready(self) -> None:
        """A shared store without its book is loaded from the database (by one instance), then the settles
        and releases decided meanwhile are applied."""
        if self._rebuild is None:
            return
        await self._rebuild()
        apply_pending = getattr(self.store, "apply_pending", None)
        if apply_pending is not None:
            applied = await apply_pending()
            if applied:
                log.info("applied %d settle(s) or release(s) decided while the shared credit was not ready",
                         applied)

    async def stop(self) -> None:
        for task in (self._task, self._ready_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def sync(self) -> None:
        """Merge top-ups and adjustments from other processes, and changed prices."""
        started = utcnow()
        fresh = await billing_store.money_since(self._engine, self._money_since)
        applied = await self.store.add_money(fresh)
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
        await self.store.add_money(await billing_store.money_for_key(self._engine, key_id))

    async def _sync_loop(self) -> None:
        while True:
            await pause(self._feed, ["money", "prices"], self._sync_seconds)
            try:
                await self.sync()
            except DATABASE_ERRORS as exc:
                log.warning("reading top-ups and prices failed: %s", exc)
            except LiveStateUnavailable as exc:
                log.warning("the shared credit is unreachable: %s", exc.message)

    async def _ready_loop(self, period: float = 1.0) -> None:
        """A shared store that lost its book (Redis restarted empty) is loaded again within ``period``."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.ensure_ready()
            except LiveStateUnavailable:
                continue  # Redis is away: requests with credit get 503 meanwhile
            except DATABASE_ERRORS as exc:
                log.warning("loading the shared credit from the database failed: %s", exc)

    # -- the request path -------------------------------------------------------------------

    async def reserve(self, ex: Exchange, answer_tokens: int = 262_144) -> None:
        """Hold the request's worst likely cost, or raise InsufficientQuota (402). ``answer_tokens``: the
        longest answer the platform relays (settings.max_answer_tokens)."""
        req = ex.request
        price = self.prices.price(ex.model)
        if ex.image_request is not None:
            # An image request: its prompt and every image it asks for; it completes no tokens.
            amount = min(cost(price, ex.prompt_tokens(), 0, ex.image_request.n), MAX_MICROS)
            ex.reservation = await self.store.reserve(ex.key.id, ex.id, amount, unlimited=ex.key.unlimited)
            return
        max_tokens = req.max_completion_tokens or req.max_tokens
        least = min(estimate_reservation(price, ex.prompt_tokens(), max_tokens, images=ex.images()), MAX_MICROS)
        if ex.key.unlimited:
            ex.reservation = await self.store.reserve(ex.key.id, ex.id, least, unlimited=True)
            return
        # A key with credit: its answer stops where the hold runs out, so hold what the answer may need
        # (max_tokens, else CREDIT_COMPLETION), as far as the key has it, and at least ``least``.
        wanted = min(max_tokens or CREDIT_COMPLETION, answer_tokens)
        most = max(least, estimate_reservation(price, ex.prompt_tokens(), wanted, images=ex.images(), cap=wanted))
        ex.reservation = await self.store.reserve(ex.key.id, ex.id, min(most, MAX_MICROS), unlimited=False,
                                                  minimum=least)

    async def close(self, ex: Exchange, prompt_tokens: int, completion_tokens: int) -> int | None:
        """Settle to actual use when anything was delivered, else release. Returns the charge (micro-USD)."""
        reservation = ex.reservation
        if reservation is None:
            return None
        if not ex.delivered():
            await self.store.release(reservation)
            return 0
        images = ex.images()
        # Bounded like every amount (a huge prompt at a huge price must not make the settle fail: the
        # ledger caps a limited key's charge at what it holds anyway).
        actual = min(cost(self.prices.price(ex.model), prompt_tokens, completion_tokens, images), MAX_MICROS)
        entry = await self.store.settle(reservation, actual, client_id=ex.client_id or "", model=ex.model,
                                        usage=Usage(prompt_tokens, completion_tokens, images))
        return entry.charge

    def drain(self) -> list[Entry]:
        return self.store.drain_new_entries()

    # -- admin ------------------------------------------------------------------------------

    async def top_up(self, key_id: str, amount: int, *, note: str | None = None) -> Entry:
        """Credit a key: written to the book, then spendable at once on every instance."""
        check_micros(amount, "top-up")
        if amount == 0:
            raise InvalidAmount("a top-up must be more than 0 USD", param="amount")
        return await self._money(key_id, amount, Kind.TOPUP, note)

    async def adjust(self, key_id: str, amount: int, *, note: str | None = None) -> Entry:
        """An admin's correction, positive or negative. It may take the balance below zero."""
        check_micros(amount, "adjustment", signed=True)
        return await self._money(key_id, amount, Kind.ADJUSTMENT, note)

    async def _money(self, key_id: str, amount: int, kind: Kind, note: str | None) -> Entry:
        entry = await billing_store.add_money(self._engine, key_id, amount, kind=kind, note=note)
        try:
            await self.store.add_money([entry])
        except LiveStateUnavailable:  # in the book already: the sync loop applies it when Redis is back
            log.warning("top-up %s is in the book; the shared credit will have it when Redis is back",
                        entry.entry_id)
        return entry
