"""The ``ClientDirectory`` contract, against both implementations: in-process and Redis (a real
redis-server, several directories as several instances)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from arenahub.platform.cluster.clients import (
    ClientCard,
    ClientDirectory,
    LocalClientDirectory,
    RedisClientDirectory,
)
from tests.redis_server import RedisClients

MakeDirectory = Callable[[], ClientDirectory]


@pytest.fixture(params=["local", "redis"])
async def make_directory(request: pytest.FixtureRequest) -> AsyncIterator[MakeDirectory]:
    if request.param == "local":
        local = LocalClientDirectory()
        yield lambda: local
        return
    async with RedisClients(request.getfixturevalue("redis_url")) as clients:
        yield lambda: RedisClientDirectory(clients())


def card(client_id: str, instance: str = "east", connection: str = "c1", **fields: object) -> ClientCard:
    return ClientCard(client_id=client_id, instance=instance, connection_id=connection, **fields)  # type: ignore[arg-type]


async def test_a_claimed_client_is_found_and_listed(make_directory: MakeDirectory) -> None:
    directory = make_directory()
    assert await directory.get("cl_1") is None
    await directory.claim(card("cl_1", models=["m1"], active=2))
    found = await directory.get("cl_1")
    assert found is not None and (found.instance, found.models, found.active) == ("east", ["m1"], 2)
    assert found.seen_at > time.time() - 5
    await directory.claim(card("cl_0"))
    assert [c.client_id for c in await directory.cards()] == ["cl_0", "cl_1"]


async def test_a_renewal_never_takes_another_connections_card(make_directory: MakeDirectory) -> None:
    east, west = make_directory(), make_directory()
    await east.claim(card("cl_1", "east", "old"))
    await west.claim(card("cl_1", "west", "new"))  # the client connected again, to west
    await east.publish([card("cl_1", "east", "old", active=9)])  # east has not closed its old one yet
    held = await west.get("cl_1")
    assert held is not None and (held.instance, held.connection_id) == ("west", "new")
    await west.publish([card("cl_1", "west", "new", active=1)])
    assert (await east.get("cl_1")).active == 1  # type: ignore[union-attr]


async def test_release_is_only_for_the_connection_that_holds_it(make_directory: MakeDirectory) -> None:
    directory = make_directory()
    await directory.claim(card("cl_1", connection="new"))
    await directory.release("cl_1", "old")  # a late close of the previous connection
    assert await directory.get("cl_1") is not None
    await directory.release("cl_1", "new")
    assert await directory.get("cl_1") is None and await directory.cards() == []


async def test_a_dead_instances_cards_go_stale(redis_client: Redis) -> None:
    east, west = RedisClientDirectory(redis_client, ttl=0.3), RedisClientDirectory(redis_client, ttl=0.3)
    await east.claim(card("cl_1", "east", "old"))
    assert await west.get("cl_1") is not None
    time.sleep(0.35)  # east died: nobody renews its card
    assert await west.get("cl_1") is None and await west.cards() == []
    await west.publish([card("cl_1", "west", "new")])  # a stale card is taken over by a renewal
    assert (await east.get("cl_1")).instance == "west"  # type: ignore[union-attr]
