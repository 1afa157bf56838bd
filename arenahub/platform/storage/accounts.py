"""Clients and consumer keys: the rows the platform authenticates against."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform import credentials
from arenahub.platform.storage.schema import clients, consumer_keys


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class ClientAccount:
    id: str
    name: str
    email: str | None
    bridge_url: str
    api_key_hash: str
    rpm: int | None
    max_concurrent: int
    disabled: bool
    models: list[str]


@dataclass(frozen=True)
class ConsumerKey:
    id: str
    name: str
    key_hash: str
    rpm: int | None
    disabled: bool
    updated_at: dt.datetime


def _client(row: Any) -> ClientAccount:
    return ClientAccount(id=row.id, name=row.name, email=row.email, bridge_url=row.bridge_url,
                         api_key_hash=row.api_key_hash, rpm=row.rpm, max_concurrent=row.max_concurrent,
                         disabled=bool(row.disabled), models=list(row.models or []))


def _key(row: Any) -> ConsumerKey:
    updated = row.updated_at
    if updated.tzinfo is None:  # SQLite hands back naive datetimes
        updated = updated.replace(tzinfo=dt.timezone.utc)
    return ConsumerKey(id=row.id, name=row.name, key_hash=row.key_hash, rpm=row.rpm,
                       disabled=bool(row.disabled), updated_at=updated)


async def create_client(engine: AsyncEngine, *, name: str, email: str | None = None,
                        bridge_url: str = "http://127.0.0.1:5102", rpm: int | None = None,
                        max_concurrent: int = 4) -> tuple[str, str]:
    """Register a client; returns (client_id, api_key). The key is not stored, only its hash."""
    client_id = credentials.new_id("cl")
    api_key = credentials.new_client_api_key()
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(clients.insert().values(
            id=client_id, name=name, email=email, bridge_url=bridge_url,
            api_key_hash=credentials.hash_secret(api_key), rpm=rpm, max_concurrent=max_concurrent,
            disabled=False, models=[], created_at=now, updated_at=now))
    return client_id, api_key


async def get_client(engine: AsyncEngine, client_id: str) -> ClientAccount | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(clients).where(clients.c.id == client_id))).first()
    return _client(row) if row else None


async def authenticate_client(engine: AsyncEngine, client_id: str, api_key: str) -> ClientAccount | None:
    account = await get_client(engine, client_id)
    if account is None or not credentials.matches(api_key, account.api_key_hash):
        return None
    return account


async def known_models(engine: AsyncEngine) -> set[str]:
    """Every model any registered client has ever reported."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(clients.c.models))).all()
    return {m for (models,) in rows for m in (models or [])}


async def record_client_hello(engine: AsyncEngine, client_id: str, models: list[str],
                              client_version: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(clients.update().where(clients.c.id == client_id).values(
            models=models, client_version=client_version, last_seen_at=utcnow()))


async def record_client_states(engine: AsyncEngine, states: dict[str, dict[str, Any]]) -> None:
    """Store each client's latest heartbeat (coalesced: one row update per client per flush)."""
    if not states:
        return
    async with engine.begin() as conn:
        for client_id, state in states.items():
            await conn.execute(clients.update().where(clients.c.id == client_id).values(**state))


async def create_key(engine: AsyncEngine, *, name: str, rpm: int | None = None) -> tuple[str, str]:
    """Create a consumer key; returns (key_id, key). The key is not stored, only its hash."""
    key_id = credentials.new_id("key")
    key = credentials.new_consumer_key()
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(consumer_keys.insert().values(
            id=key_id, name=name, key_hash=credentials.hash_secret(key),
            key_prefix=credentials.display_prefix(key), rpm=rpm, disabled=False,
            created_at=now, updated_at=now))
    return key_id, key


async def find_key(engine: AsyncEngine, key_hash: str) -> ConsumerKey | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(consumer_keys).where(consumer_keys.c.key_hash == key_hash))).first()
    return _key(row) if row else None


async def keys_changed_since(engine: AsyncEngine, since: dt.datetime | None) -> list[ConsumerKey]:
    query = sa.select(consumer_keys)
    if since is not None:
        query = query.where(consumer_keys.c.updated_at >= since)
    async with engine.connect() as conn:
        return [_key(r) for r in (await conn.execute(query)).all()]


async def set_key_disabled(engine: AsyncEngine, key_id: str, disabled: bool) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(consumer_keys.update().where(consumer_keys.c.id == key_id)
                                    .values(disabled=disabled, updated_at=utcnow()))
    return result.rowcount > 0
