"""What the admin changed, heard by every instance at once: the ``ChangeFeed``.

The instances cache what they read on every request (keys, clients, prices, settings, the catalogue,
credit top-ups), and follow the database's changes with loops (the key cache, the client follower, the
accounting sync, the live settings). Each loop waits on the feed for its topic:

- On PostgreSQL, migration 0011's triggers ``NOTIFY arenahub_changes`` with the table's name when a
  commit changes such a row, whoever wrote it (the admin API of any instance, ``arenahub admin``, SQL
  by hand). ``PostgresListener`` holds one connection that LISTENs, and wakes the loops of that topic
  within milliseconds. While it listens, a loop also reads every ``SAFETY_SECONDS`` anyway.
- Without it (SQLite, or while the listening connection is down) each loop reads every ``period``, as
  a single instance always did; a (re)connected listener wakes every loop once, to read what it missed.

The notification is sent by PostgreSQL on commit, so a loop woken by it always finds the change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from arenahub.background import watched

log = logging.getLogger("arenahub.platform.changes")

CHANNEL = "arenahub_changes"
SAFETY_SECONDS = 30.0
TOPICS = {"clients": "clients", "consumer_keys": "keys", "ledger_entries": "money", "model_prices": "prices",
          "model_catalogue": "catalogue", "model_approvals": "catalogue", "platform_settings": "settings"}


class ChangeFeed:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {topic: asyncio.Event() for topic in set(TOPICS.values())}
        self.live = False  # a listener hears the database's notifications now

    async def wait(self, topics: Iterable[str], period: float) -> bool:
        """Until a change of one of ``topics`` is heard, or ``period`` (SAFETY_SECONDS while listening)
        passes; True when woken by a change. The wake-up is consumed."""
        events = [self._events[t] for t in topics]
        if not any(e.is_set() for e in events):
            waiters = [asyncio.ensure_future(e.wait()) for e in events]
            try:
                await asyncio.wait(waiters, timeout=max(period, SAFETY_SECONDS) if self.live else period,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        woken = any(e.is_set() for e in events)
        for e in events:
            e.clear()
        return woken

    def poke(self, topic: str) -> None:
        event = self._events.get(topic)
        if event is not None:
            event.set()

    def poke_all(self) -> None:
        for event in self._events.values():
            event.set()


async def pause(feed: ChangeFeed | None, topics: Iterable[str], period: float) -> None:
    """A following loop's wait between two reads: ``period``, or until the feed hears a change."""
    if feed is None:
        await asyncio.sleep(period)
    else:
        await feed.wait(topics, period)


def asyncpg_dsn(database_url: str) -> str | None:
    """The plain PostgreSQL URL asyncpg takes, or None for another database."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresListener:
    """One connection that LISTENs to ``arenahub_changes`` and pokes the feed (see the module docstring)."""

    def __init__(self, dsn: str, feed: ChangeFeed, *, retry_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self.feed = feed
        self.retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        self._task = watched(self._run(), "change-listener")
        try:
            await asyncio.wait_for(self._listening.wait(), 5)
        except TimeoutError:
            log.warning("not listening to the database's changes yet; reading them every second meanwhile")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.feed.live = False

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        topic = TOPICS.get(payload)
        if topic is not None:
            self.feed.poke(topic)

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ended=lost: ended.set())
                await conn.add_listener(CHANNEL, self._heard)
                self.feed.live = True
                self.feed.poke_all()  # what changed while nobody listened
                self._listening.set()
                while not lost.is_set():  # a dead connection is noticed by the keepalive query
                    try:
                        await asyncio.wait_for(lost.wait(), 15)
                    except TimeoutError:
                        await conn.execute("SELECT 1", timeout=10)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                if self.feed.live:
                    log.warning("stopped hearing the database's changes (%s); reading them every second until "
                                "the connection is back", type(exc).__name__)
            finally:
                self.feed.live = False
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(self.retry_seconds)
