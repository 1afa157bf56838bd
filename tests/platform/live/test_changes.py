"""The change feed on a real PostgreSQL: a commit that changes what the instances cache wakes the
loops that follow it within milliseconds, whoever wrote it; heartbeat writes do not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.cluster.changes import SAFETY_SECONDS, ChangeFeed, PostgresListener, asyncpg_dsn
from arenahub.platform.storage import accounts, billing_store, db
from arenahub.platform.storage.schema import clients

pytestmark = pytest.mark.postgres


@pytest.fixture
async def engine(databases) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    engine = db.create_engine(databases.new("postgres"))
    await db.migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def feed(engine: AsyncEngine) -> AsyncIterator[ChangeFeed]:
    feed = ChangeFeed()
    dsn = asyncpg_dsn(str(engine.url.render_as_string(hide_password=False)))
    assert dsn is not None
    listener = PostgresListener(dsn, feed)
    await listener.start()
    assert feed.live
    await feed.wait(["clients", "keys", "money", "prices", "catalogue", "settings"], 0)  # the start's wake-up
    yield feed
    await listener.stop()
    assert not feed.live


async def heard(feed: ChangeFeed, topic: str, within: float = 2.0) -> float | None:
    """Seconds until ``topic`` was heard, or None when it was not within ``within`` (a listening feed's own wait
    is its 30 s safety period)."""
    started = time.monotonic()
    try:
        woken = await asyncio.wait_for(feed.wait([topic], within), within)
    except TimeoutError:
        return None
    return time.monotonic() - started if woken else None


async def test_admin_writes_wake_their_topic_at_once(engine: AsyncEngine, feed: ChangeFeed) -> None:
    client_id, _ = await accounts.create_client(engine, name="c", max_concurrent=2)
    assert (await heard(feed, "clients") or 9) < 0.5
    await accounts.update_client(engine, client_id, draining=True)
    assert (await heard(feed, "clients") or 9) < 0.5
    key_id, _ = await accounts.create_key(engine, name="k")
    assert (await heard(feed, "keys") or 9) < 0.5
    await billing_store.add_money(engine, key_id, 1_000)
    assert (await heard(feed, "money") or 9) < 0.5
    assert await accounts.delete_client(engine, client_id)
    assert (await heard(feed, "clients") or 9) < 0.5


async def test_heartbeat_writes_wake_nobody(engine: AsyncEngine, feed: ChangeFeed) -> None:
    client_id, _ = await accounts.create_client(engine, name="c", max_concurrent=2)
    await heard(feed, "clients")
    async with engine.begin() as conn:  # as the record writer's client_state does
        await conn.execute(clients.update().where(clients.c.id == client_id)
                           .values(last_seen_at=sa.func.now(), last_stats={"stats": {}}))
    assert await heard(feed, "clients", within=0.5) is None


async def test_without_a_listener_the_wait_is_the_period(engine: AsyncEngine) -> None:
    feed = ChangeFeed()
    started = time.monotonic()
    assert not await feed.wait(["keys"], 0.2)
    assert 0.15 < time.monotonic() - started < 1.0
    feed.poke("keys")
    assert await asyncio.wait_for(feed.wait(["keys"], 60), 1)
    assert SAFETY_SECONDS >= 10
