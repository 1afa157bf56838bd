"""Fixtures of the live-state contract tests: clients of the real redis-server the tests share
(``redis_url``, tests/conftest.py), each closed when its test ends. A fixture that needs Redis for one
of its params only (``make_store`` in the contract tests) cannot ask for an async fixture here: it opens
``RedisClients(request.getfixturevalue("redis_url"))`` itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.ports import free_port
from tests.redis_server import RedisClients


@pytest.fixture
async def redis_clients(redis_url: str) -> AsyncIterator[RedisClients]:
    """New clients of an empty Redis, on demand: ``redis_clients()``, ``redis_clients(socket_timeout=...)``."""
    async with RedisClients(redis_url) as clients:
        yield clients


@pytest.fixture
def redis_client(redis_clients: RedisClients) -> Redis:
    """One client of an empty Redis. A Hypothesis test gets the same one for every example: it empties
    Redis itself before each."""
    return redis_clients()


@pytest.fixture
async def unreachable_redis(redis_server: Any) -> AsyncIterator[Redis]:
    """A client of a port nothing listens on: Redis is down. (It asks for ``redis_server`` to be skipped
    where redis-server is missing, as every Redis test is.)"""
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    yield client
    await client.aclose()
