"""The live state of this instance, built from its settings: in-process for one instance, Redis for a
cluster. Each piece has one owner and one interface (``LimitStore``, ``CreditStore``, ``ChangeBus``,
``InstanceDirectory``), whose two implementations one contract suite tests side by side.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.accounting.credit_redis import RedisCreditStore
from arenahub.platform.accounting.credit_store import CreditStore, LocalCreditStore
from arenahub.platform.accounting.limits import LimitStore, LocalLimitStore
from arenahub.platform.accounting.limits_redis import RedisLimitStore
from arenahub.platform.cluster.bus import ChangeBus, LocalBus, RedisBus
from arenahub.platform.cluster.clients import ClientDirectory, LocalClientDirectory, RedisClientDirectory
from arenahub.platform.cluster.instances import InstanceCard, InstanceDirectory, LocalDirectory, RedisDirectory
from arenahub.platform.cluster.rebuild import Rebuilder

# Redis answers in well under a millisecond on a LAN: a call that takes seconds means it is away, and the
# request is better refused (503) than held.
REDIS_TIMEOUT_SECONDS = 2.0


@dataclass
class LiveState:
    instance: str
    redis: Redis | None
    bus: ChangeBus
    directory: InstanceDirectory
    key_limits: LimitStore
    credit: CreditStore
    clients: ClientDirectory
    rebuild: Callable[[], Awaitable[None]] | None = None  # loads a shared credit store without its book
    orphans: Callable[[], Coroutine[Any, Any, None]] | None = None  # the loop giving back dead instances' reservations

    @property
    def shared(self) -> bool:
        return self.redis is not None

    async def credit_ready(self) -> bool:
        """Whether the shared credit holds its book (always, in one instance); raises LiveStateUnavailable."""
        ready = getattr(self.credit, "ready", None)
        return True if ready is None else bool(await ready())

    async def start(self) -> None:
        await self.directory.start()
        await self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()
        await self.directory.stop()
        if self.redis is not None:
            await self.redis.aclose()


def connect(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                          health_check_interval=15)


def build(redis_url: str, card: Callable[[], InstanceCard], engine: AsyncEngine,
          flush: Callable[[], Awaitable[None]]) -> LiveState:
    """The stores for these settings; ``card`` says what this instance is now, ``flush`` persists its
    record writer's batch (the rebuild's roll call)."""
    instance = card().id
    if not redis_url:
        return LiveState(instance, None, LocalBus(instance), LocalDirectory(card), LocalLimitStore(),
                         LocalCreditStore(), LocalClientDirectory())
    redis = connect(redis_url)
    bus = RedisBus(redis, instance)
    directory = RedisDirectory(redis, card)
    credit = RedisCreditStore(redis, instance=instance)
    rebuild = Rebuilder(redis, credit, engine, bus, directory, flush)
    return LiveState(instance, redis, bus, directory, RedisLimitStore(redis), credit, RedisClientDirectory(redis),
                     rebuild, rebuild.release_orphans_loop)
