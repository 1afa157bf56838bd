"""Changes every instance must hear of at once: the ``ChangeBus`` interface and its two implementations.

- ``LocalBus``: one instance; a publish runs this process's handlers.
- ``RedisBus``: Redis pub/sub on one channel; a publish reaches every instance's handlers (its own
  too), within milliseconds.

Pub/sub delivers at most once: an instance cut off from Redis while a change was published misses it.
So every time the subscription (re)starts, the ``resync`` topic's handlers run on this instance: they
read again what they follow. Messages are small JSON objects; what they announce is read from the
database or Redis, never trusted from the message itself beyond ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis

from arenahub.background import watched
from arenahub.platform.cluster.errors import UNREACHABLE

log = logging.getLogger("arenahub.platform.cluster")

CHANNEL = "ah:bus"
RESYNC = "resync"
Handler = Callable[[dict[str, Any]], Awaitable[None]]


class ChangeBus(Protocol):
    instance: str

    def subscribe(self, topic: str, handler: Handler) -> None: ...

    async def publish(self, topic: str, payload: dict[str, Any] | None = None) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Handlers:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    async def dispatch(self, topic: str, payload: dict[str, Any]) -> None:
        for handler in self._handlers.get(topic, []):
            try:
                await handler(payload)
            except Exception:  # one handler's bug must not stop the others, nor the bus
                log.exception("handling %s failed", topic)


class LocalBus(_Handlers):
    """The bus of a platform that runs as one instance."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    async def publish(self, topic: str, payload: dict[str, Any] | None = None) -> None:
        await self.dispatch(topic, {**(payload or {}), "from": self.instance})

    async def start(self) -> None:
        await self.dispatch(RESYNC, {})

    async def stop(self) -> None:
        return None


class _Message(msgspec.Struct):
    topic: str
    payload: dict[str, Any]
    sender: str


class RedisBus(_Handlers):
    """Redis pub/sub: every instance's handlers run for every publish (see the module docstring)."""

    def __init__(self, redis: Redis, instance: str, *, retry_seconds: float = 1.0) -> None:
        super().__init__()
        self.redis = redis
        self.instance = instance
        self.retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, topic: str, payload: dict[str, Any] | None = None) -> None:
        """Announce a change; raises LiveStateUnavailable when Redis is unreachable (the change itself is
        in the database: the other instances read it when they resync)."""
        from arenahub.platform.cluster.errors import LiveStateUnavailable

        message = msgspec.json.encode(_Message(topic, payload or {}, self.instance))
        try:
            await self.redis.publish(CHANNEL, message)
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("changes", exc) from exc

    async def start(self) -> None:
        self._task = watched(self._listen(), "cluster-bus")
        try:  # the first subscription, so that nothing published after start() returns is missed
            await asyncio.wait_for(self._subscribed.wait(), 5)
        except TimeoutError:
            log.warning("not subscribed to the cluster's changes yet (Redis unreachable); retrying")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                self._subscribed.set()
                await self.dispatch(RESYNC, {})
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
                    if message is not None and message.get("type") == "message":
                        await self._received(message.get("data"))
            except UNREACHABLE as exc:
                log.warning("lost the cluster's changes channel (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(self.retry_seconds)
            finally:
                try:
                    await pubsub.aclose()
                except UNREACHABLE:
                    pass  # the connection is gone: nothing left to close

    async def _received(self, data: Any) -> None:
        try:
            message = msgspec.json.decode(data, type=_Message)
        except (msgspec.DecodeError, TypeError):
            log.warning("ignored a malformed message on the cluster's channel")
            return
        await self.dispatch(message.topic, {**message.payload, "from": message.sender})
