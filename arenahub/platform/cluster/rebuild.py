"""Loading the shared credit from the ledger of record, when Redis has none (the cluster's first start,
or Redis restarted without its data). Nothing is guessed:

1. One instance takes the rebuild lock (the others wait for ``ready``, refusing requests with credit
   meanwhile: credit_redis.py).
2. Roll call: it asks every live instance to flush its record writer (``flush`` on the bus), and waits
   until each has said so, or its card has gone stale (it is dead: its journal holds the rest). The
   instances' cards come back within a second after Redis lost its data; it waits for that first.
3. It reads the book from the database (balances, open reservations, earnings, money ids) and loads
   it into Redis in one transaction that sets ``ready``.

Entries made after an instance flushed are settles and releases only (reservations are refused until
``ready``), and those apply themselves to the rebuilt state if and only if it still holds their
reservation (``RedisCreditStore.apply_pending``): whichever side of the read they fall, they count once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.accounting.credit_redis import RedisCreditStore
from arenahub.platform.cluster.bus import ChangeBus
from arenahub.platform.cluster.errors import UNREACHABLE, LiveStateUnavailable
from arenahub.platform.cluster.instances import InstanceDirectory
from arenahub.platform.storage import billing_store

log = logging.getLogger("arenahub.platform.cluster")

LOCK = "ah:credit:rebuilding"
FLUSH = "flush"
LOCK_SECONDS = 60


class Rebuilder:
    def __init__(self, redis: Redis, store: RedisCreditStore, engine: AsyncEngine, bus: ChangeBus,
                 directory: InstanceDirectory, flush: Callable[[], Awaitable[None]], *,
                 card_period: float = 1.0, roll_call_seconds: float = 10.0) -> None:
        self.redis = redis
        self.store = store
        self.engine = engine
        self.bus = bus
        self.directory = directory
        self.flush = flush
        self.card_period = card_period
        self.roll_call_seconds = roll_call_seconds
        self._running: asyncio.Lock = asyncio.Lock()
        bus.subscribe(FLUSH, self._flush_asked)

    async def __call__(self) -> None:
        """Make sure the shared credit is loaded; raise LiveStateUnavailable while Redis is unreachable."""
        if await self.store.ready():
            return
        async with self._running:
            if await self.store.ready():
                return
            token = secrets.token_hex(8)
            try:
                mine = await self.redis.set(LOCK, token, nx=True, ex=LOCK_SECONDS)
            except UNREACHABLE as exc:
                raise LiveStateUnavailable("credit", exc) from exc
            if not mine:
                await self._wait_ready()
                return
            try:
                await self._rebuild()
            finally:
                try:  # only our own lock
                    if await self.redis.get(LOCK) == token.encode():
                        await self.redis.delete(LOCK)
                except UNREACHABLE:
                    pass  # it expires by itself

    async def _rebuild(self) -> None:
        started = time.monotonic()
        log.warning("the shared credit has no book (first start, or Redis lost its data): loading it from the "
                    "database; requests with credit wait until it is loaded")
        await asyncio.sleep(self.card_period * 1.5)  # the instances' cards are back
        nonce = secrets.token_hex(8)
        await self.flush()
        await self.bus.publish(FLUSH, {"nonce": nonce})
        deadline = time.monotonic() + self.roll_call_seconds
        while True:
            alive = {card.id for card in await self.directory.alive()} - {self.directory.instance}
            done = {i for i in alive if await self.redis.exists(_ack(nonce, i))}
            if alive <= done:
                break
            if time.monotonic() > deadline:
                log.warning("instance(s) %s did not flush their books in %g s; loading without them",
                            ", ".join(sorted(alive - done)), self.roll_call_seconds)
                break
            await asyncio.sleep(0.05)
        book = await billing_store.load_book(self.engine)
        await self.store.restore(book)
        log.warning("loaded the shared credit from the database in %.2f s: %d key(s), %d open reservation(s)",
                    time.monotonic() - started, len(book.balances), len(book.open_reservations))

    async def release_orphans_loop(self, period: float = 10.0) -> None:
        """Every ``period``, give back the reservations of instances that died mid-request
        (``RedisCreditStore.release_orphans``); the release entries go to the book with this instance's."""
        while True:
            await asyncio.sleep(period)
            try:
                alive = {card.id for card in await self.directory.alive()}
                if not alive:
                    continue  # Redis is away, or its cards are not back yet: decide nothing
                released = await self.store.release_orphans(alive)
            except LiveStateUnavailable:
                continue
            if released:
                log.warning("released %d reservation(s) held by instance(s) that stopped mid-request", released)

    async def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not await self.store.ready():
            if time.monotonic() > deadline:
                raise LiveStateUnavailable("credit")
            await asyncio.sleep(0.1)

    async def _flush_asked(self, payload: dict[str, Any]) -> None:
        nonce = str(payload.get("nonce", ""))[:32]
        if not nonce or payload.get("from") == self.directory.instance:
            return
        await self.flush()
        await self.redis.set(_ack(nonce, self.directory.instance), 1, ex=60)


def _ack(nonce: str, instance: str) -> str:
    return f"ah:flushed:{nonce}:{instance}"
