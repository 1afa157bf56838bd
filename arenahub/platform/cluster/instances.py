"""The instances of a cluster: who is alive, and what each says about itself (for the dashboard and the
rebuild's roll call).

Each instance writes its card every ``period`` seconds into one Redis hash (``ah:instances``: id ->
JSON, with the time it was written); a card older than ``ttl`` is of an instance that is gone. After
Redis lost its data, the cards are back within one period. One instance alone has a directory of one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis

from arenahub.background import watched
from arenahub.platform.cluster.errors import UNREACHABLE

log = logging.getLogger("arenahub.platform.cluster")

KEY = "ah:instances"


def new_instance_id() -> str:
    """``host-pid-xxxx``: readable in logs, unique across restarts."""
    host = socket.gethostname().split(".")[0][:24] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


class InstanceCard(msgspec.Struct):
    id: str
    address: str = ""
    url: str = ""  # where the other instances reach it (settings.advertise_url)
    version: str = ""
    started_at: float = 0.0
    seen_at: float = 0.0
    clients: int = 0
    in_flight: int = 0
    draining: bool = False


class InstanceDirectory(Protocol):
    instance: str

    async def alive(self) -> list[InstanceCard]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalDirectory:
    def __init__(self, card: Callable[[], InstanceCard]) -> None:
        self._card = card
        self.instance = card().id

    async def alive(self) -> list[InstanceCard]:
        card = self._card()
        card.seen_at = time.time()
        return [card]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisDirectory:
    def __init__(self, redis: Redis, card: Callable[[], InstanceCard], *, period: float = 1.0,
                 ttl: float = 5.0) -> None:
        self.redis = redis
        self._card = card
        self.instance = card().id
        self.period = period
        self.ttl = ttl
        self._task: asyncio.Task[None] | None = None

    async def alive(self) -> list[InstanceCard]:
        try:
            raw: dict[Any, Any] = await self.redis.hgetall(KEY)
        except UNREACHABLE:
            return []
        now = time.time()
        cards: list[InstanceCard] = []
        stale: list[Any] = []
        for key, value in raw.items():
            try:
                card = msgspec.json.decode(value, type=InstanceCard)
            except msgspec.DecodeError:
                stale.append(key)
                continue
            if card.seen_at > now - self.ttl:
                cards.append(card)
            else:
                stale.append(key)
        if stale:
            try:
                await self.redis.hdel(KEY, *stale)
            except UNREACHABLE:
                pass  # forgotten next time
        return sorted(cards, key=lambda c: c.id)

    async def publish_card(self) -> None:
        card = self._card()
        card.seen_at = time.time()
        await self.redis.hset(KEY, card.id, msgspec.json.encode(card))

    async def start(self) -> None:
        try:
            await self.publish_card()
        except UNREACHABLE as exc:
            log.warning("could not announce this instance yet (%s)", type(exc).__name__)
        self._task = watched(self._loop(), "cluster-card")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.redis.hdel(KEY, self.instance)
        except UNREACHABLE:
            pass  # its card goes stale by itself

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.publish_card()
            except UNREACHABLE:
                continue  # Redis is away: the card goes out again next period
