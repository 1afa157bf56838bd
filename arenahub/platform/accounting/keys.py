"""Consumer keys, cached in memory so the request path never waits on the database.

Lookups go to a dict keyed by the key's hash. An unknown key is looked up in the database once
(so a key made a moment ago by ``arenahub admin create-key`` works at once) and then remembered
as unknown for a short while. Changes to known keys (disabling, say) are picked up by a refresh
loop that reads only the rows changed since the last pass.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.background import watched
from arenahub.platform.accounting import credentials
from arenahub.platform.cluster.changes import ChangeFeed, pause
from arenahub.platform.storage.accounts import ConsumerKey, find_key, keys_changed_since
from arenahub.platform.storage.db import DATABASE_ERRORS
from arenahub.protocol.errors import InvalidApiKey

log = logging.getLogger("arenahub.platform.accounting.keys")


class KeyCache:
    def __init__(self, engine: AsyncEngine, *, refresh_seconds: float = 1.0,
                 negative_ttl_seconds: float = 2.0, negative_max: int = 10_000,
                 on_new_key: Callable[[str], Awaitable[None]] | None = None,
                 feed: ChangeFeed | None = None) -> None:
        self._engine = engine
        self._feed = feed  # wakes the refresh when a key changes (cluster/changes.py)
        self._on_new_key = on_new_key  # called with the id of a key first found by a lookup
        self._refresh_seconds = refresh_seconds
        self._negative_ttl = negative_ttl_seconds
        self._negative_max = negative_max
        self._by_hash: dict[str, ConsumerKey] = {}
        self._by_id: dict[str, ConsumerKey] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._seen_until: dt.datetime | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = watched(self._refresh_loop(), "key-cache-refresh")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def refresh(self) -> None:
        # Overlap the window a little: clocks of other writers (the CLI) may lag.
        since = self._seen_until - dt.timedelta(seconds=5) if self._seen_until else None
        for key in await keys_changed_since(self._engine, since):
            self._remember(key)

    def _remember(self, key: ConsumerKey) -> None:
        previous = self._by_id.get(key.id)
        if previous is not None and previous.key_hash != key.key_hash:
            self._by_hash.pop(previous.key_hash, None)  # rotated: the old secret stops working
        if key.deleted:
            self._by_id.pop(key.id, None)
            self._by_hash.pop(key.key_hash, None)
        else:
            self._by_id[key.id] = key
            self._by_hash[key.key_hash] = key
        self._unknown.pop(key.key_hash, None)
        if self._seen_until is None or key.updated_at > self._seen_until:
            self._seen_until = key.updated_at

    async def _refresh_loop(self) -> None:
        while True:
            await pause(self._feed, ["keys"], self._refresh_seconds)
            try:
                await self.refresh()
            except DATABASE_ERRORS as exc:
                log.warning("refreshing consumer keys failed: %s", exc)

    async def authenticate(self, authorization: str | None) -> ConsumerKey:
        if not authorization:
            raise InvalidApiKey("Missing API key: send it as `Authorization: Bearer <key>`.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidApiKey("Malformed Authorization header: expected `Bearer <key>`.")
        key_hash = credentials.hash_secret(token)
        key = self._by_hash.get(key_hash)
        if key is None:
            key = await self._lookup(key_hash)
        if key is None:
            raise InvalidApiKey("Incorrect API key provided.")
        if key.disabled:
            raise InvalidApiKey("This API key has been disabled.", code="api_key_disabled")
        if key.expired(dt.datetime.now(dt.UTC)):
            raise InvalidApiKey(f"This API key expired at {key.expires_at.isoformat()}.",  # type: ignore[union-attr]
                                code="api_key_expired")
        return key

    async def _lookup(self, key_hash: str) -> ConsumerKey | None:
        expires = self._unknown.get(key_hash)
        now = time.monotonic()
        if expires is not None and expires > now:
            return None
        key = await find_key(self._engine, key_hash)
        if key is not None:
            if self._on_new_key is not None and key.id not in self._by_id:
                await self._on_new_key(key.id)
            self._remember(key)
            return key
        self._unknown[key_hash] = now + self._negative_ttl
        self._unknown.move_to_end(key_hash)
        while len(self._unknown) > self._negative_max:
            self._unknown.popitem(last=False)
        return None
