"""Which instance each connected client is on, and what it serves: the ``ClientDirectory``.

The instance that holds a client's connection owns its routing state (its session, tunnel_session.py)
and publishes a ``ClientCard`` about it: when it connects, and every ``period`` after that (with its
load, health and models as they are then). Every instance reads the cards: ``/v1/models`` is their
union, the admin API shows which instance each client is on, and a second copy of a client is
recognised even when it connects to another instance.

- ``LocalDirectory``: one instance; the cards of its own clients.
- ``RedisDirectory``: one Redis hash (``ah:clients``: client id -> card). A card not renewed for
  ``ttl`` seconds is of an instance that died: it no longer counts, and the next claim replaces it.

A connection takes its client id with ``claim`` once the tunnel has decided it may (a second copy
connecting to another instance stands by, tunnel.py; else the other instance is asked to let the old
connection go); ``publish`` renews the cards and never takes over another connection's (a Lua script).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis

from arenahub.platform.cluster.errors import UNREACHABLE, LiveStateUnavailable

KEY = "ah:clients"
TTL_SECONDS = 5.0


class ClientCard(msgspec.Struct, kw_only=True):
    client_id: str
    instance: str
    connection_id: str
    name: str = ""
    models: list[str] = []
    capabilities: list[str] = []
    available: bool = True
    kept_out: bool = False  # its instance's breaker (or maintenance, or its upstream's limit) keeps work from it
    moving: bool = False  # its instance shuts down: it connects to another one (busy until then)
    draining: bool = False
    active: int = 0
    max_concurrent: int = 1
    connected_at: float = 0.0
    seen_at: float = 0.0


class ClientDirectory(Protocol):
    async def get(self, client_id: str) -> ClientCard | None:
        """The client's fresh card, wherever it is connected."""
        ...

    async def claim(self, card: ClientCard) -> None:
        """This connection holds the client id now (whatever card was there)."""
        ...

    async def publish(self, cards: Sequence[ClientCard]) -> None:
        """Renew this instance's cards (their state now); a card another connection took is left alone."""
        ...

    async def release(self, client_id: str, connection_id: str) -> None:
        """The connection ended: forget its card (only if it is still that connection's)."""
        ...

    async def cards(self) -> list[ClientCard]:
        """Every fresh card in the cluster."""
        ...


class LocalClientDirectory:
    def __init__(self) -> None:
        self._cards: dict[str, ClientCard] = {}

    async def get(self, client_id: str) -> ClientCard | None:
        return self._cards.get(client_id)

    async def claim(self, card: ClientCard) -> None:
        card.seen_at = time.time()
        self._cards[card.client_id] = card

    async def publish(self, cards: Sequence[ClientCard]) -> None:
        now = time.time()
        for card in cards:
            held = self._cards.get(card.client_id)
            if held is None or held.connection_id == card.connection_id:
                card.seen_at = now
                self._cards[card.client_id] = card

    async def release(self, client_id: str, connection_id: str) -> None:
        held = self._cards.get(client_id)
        if held is not None and held.connection_id == connection_id:
            del self._cards[client_id]

    async def cards(self) -> list[ClientCard]:
        return sorted(self._cards.values(), key=lambda c: c.client_id)


# KEYS: the hash. ARGV: client id, connection id, card JSON. Renews a card unless another connection's
# is there (a fresh one: a stale one is of a dead instance).
_RENEW = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and cjson.decode(held).connection_id ~= ARGV[2] and tonumber(cjson.decode(held).seen_at) > tonumber(ARGV[4])
then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS: the hash. ARGV: client id, connection id.
_RELEASE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and cjson.decode(held).connection_id == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""


class RedisClientDirectory:
    def __init__(self, redis: Redis, *, ttl: float = TTL_SECONDS) -> None:
        self.redis = redis
        self.ttl = ttl
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def get(self, client_id: str) -> ClientCard | None:
        try:
            raw = await self.redis.hget(KEY, client_id)
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("connected clients", exc) from exc
        card = _decode(raw)
        return card if card is not None and card.seen_at > time.time() - self.ttl else None

    async def claim(self, card: ClientCard) -> None:
        card.seen_at = time.time()
        try:
            await self.redis.hset(KEY, card.client_id, msgspec.json.encode(card))
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("connected clients", exc) from exc

    async def publish(self, cards: Sequence[ClientCard]) -> None:
        now = time.time()
        try:
            for card in cards:
                card.seen_at = now
                await self._renew(keys=[KEY], args=[card.client_id, card.connection_id, msgspec.json.encode(card),
                                                    repr(now - self.ttl)])
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("connected clients", exc) from exc

    async def release(self, client_id: str, connection_id: str) -> None:
        try:
            await self._release(keys=[KEY], args=[client_id, connection_id])
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("connected clients", exc) from exc

    async def cards(self) -> list[ClientCard]:
        try:
            raw: dict[Any, Any] = await self.redis.hgetall(KEY)
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("connected clients", exc) from exc
        now = time.time()
        fresh = [c for c in map(_decode, raw.values()) if c is not None and c.seen_at > now - self.ttl]
        return sorted(fresh, key=lambda c: c.client_id)


def _decode(raw: Any) -> ClientCard | None:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=ClientCard)
    except msgspec.DecodeError:
        return None
