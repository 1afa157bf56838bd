"""Dashboard sessions: stored only as the SHA-256 of their id, with their CSRF token.

A session ends after ``IDLE`` without use or ``ABSOLUTE`` after sign-in, whichever comes first.
Valid sessions are cached in memory for ``cache_seconds`` so a polling dashboard does not read the
database on every call; signing out and ending all sessions clear the cache at once, and another
platform process on the same database sees it when its cache entry runs out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.storage.schema import admin_sessions

IDLE = dt.timedelta(hours=12)
ABSOLUTE = dt.timedelta(days=7)
TOUCH_EVERY = dt.timedelta(minutes=1)  # how stale last_seen_at may get before it is written again


@dataclass(frozen=True)
class Session:
    id_hash: str
    csrf_token: str
    method: str  # "token" or "password"
    created_at: dt.datetime
    expires_at: dt.datetime
    last_seen_at: dt.datetime

    def valid_at(self, now: dt.datetime) -> bool:
        return now < self.expires_at and now < self.last_seen_at + IDLE


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands times back without a zone; they are UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def end_all_sessions(engine: AsyncEngine) -> int:
    """Sign everybody out (the password or the admin token changed). Returns how many ended."""
    async with engine.begin() as conn:
        return (await conn.execute(admin_sessions.delete())).rowcount or 0


class SessionStore:
    def __init__(self, engine: AsyncEngine, *, cache_seconds: float = 3.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Session]] = {}  # id hash -> (cached until, monotonic), session

    @staticmethod
    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def create(self, method: str) -> tuple[str, Session]:
        """A new session; returns its id (for the cookie only: it is stored as a hash) and the session."""
        session_id = secrets.token_urlsafe(32)
        now = self.now()
        session = Session(id_hash=hash_session_id(session_id), csrf_token=secrets.token_urlsafe(32), method=method,
                          created_at=now, expires_at=now + ABSOLUTE, last_seen_at=now)
        async with self.engine.begin() as conn:
            await conn.execute(admin_sessions.insert().values(
                id_hash=session.id_hash, csrf_token=session.csrf_token, method=method, created_at=now,
                expires_at=session.expires_at, last_seen_at=now))
        return session_id, session

    async def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, signed out, ended or expired)."""
        if not session_id or len(session_id) > 100:
            return None
        id_hash = hash_session_id(session_id)
        now = self.now()
        cached = self._cache.get(id_hash)
        if cached is not None and time.monotonic() < cached[0] and cached[1].valid_at(now):
            return cached[1]
        self._cache.pop(id_hash, None)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(admin_sessions).where(admin_sessions.c.id_hash == id_hash))).first()
        if row is None:
            return None
        session = Session(id_hash=row.id_hash, csrf_token=row.csrf_token, method=row.method,
                          created_at=_utc(row.created_at), expires_at=_utc(row.expires_at),
                          last_seen_at=_utc(row.last_seen_at))
        if not session.valid_at(now):
            await self._delete(id_hash)
            return None
        if now - session.last_seen_at >= TOUCH_EVERY:
            session = Session(**{**session.__dict__, "last_seen_at": now})
            async with self.engine.begin() as conn:
                await conn.execute(admin_sessions.update().where(admin_sessions.c.id_hash == id_hash)
                                   .values(last_seen_at=now))
        self._cache[id_hash] = (time.monotonic() + self.cache_seconds, session)
        return session

    async def end(self, session: Session) -> None:
        await self._delete(session.id_hash)

    async def end_all(self) -> None:
        self._cache.clear()
        await end_all_sessions(self.engine)

    def forget_cached(self) -> None:
        """Drop the cache (another process may have ended sessions); the next look-up reads the database."""
        self._cache.clear()

    async def remove_expired(self) -> int:
        now = self.now()
        async with self.engine.begin() as conn:
            result = await conn.execute(admin_sessions.delete().where(sa.or_(
                admin_sessions.c.expires_at <= now, admin_sessions.c.last_seen_at <= now - IDLE)))
        return result.rowcount or 0

    async def _delete(self, id_hash: str) -> None:
        self._cache.pop(id_hash, None)
        async with self.engine.begin() as conn:
            await conn.execute(admin_sessions.delete().where(admin_sessions.c.id_hash == id_hash))
