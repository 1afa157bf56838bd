"""Clients and consumer keys: the rows the platform authenticates against."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.accounting import credentials
from arenahub.platform.accounting.limits import Limits
from arenahub.platform.storage.schema import clients, consumer_keys, model_approvals


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
    priority: int = 0
    weight: int = 1
    draining: bool = False
    maintenance_reason: str | None = None
    maintenance_since: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@dataclass(frozen=True)
class ConsumerKey:
    id: str
    name: str
    key_hash: str
    rpm: int | None
    disabled: bool
    updated_at: dt.datetime
    email: str | None = None
    expires_at: dt.datetime | None = None
    allowed_models: tuple[str, ...] | None = None  # None: every model
    tpm: int | None = None
    max_concurrent: int | None = None
    unlimited: bool = True
    meta: dict[str, Any] | None = None
    deleted: bool = False
    key_prefix: str = ""

    @cached_property
    def limits(self) -> Limits:
        return Limits(rpm=self.rpm, tpm=self.tpm, max_concurrent=self.max_concurrent)

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def allows(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models

    def public(self) -> dict[str, Any]:
        """Everything about the key except its secret (which is never stored anyway)."""
        return {"id": self.id, "name": self.name, "key_prefix": self.key_prefix, "email": self.email,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "allowed_models": list(self.allowed_models) if self.allowed_models is not None else None,
                "rpm": self.rpm, "tpm": self.tpm, "max_concurrent": self.max_concurrent,
                "unlimited": self.unlimited, "disabled": self.disabled, "metadata": self.meta or {},
                "updated_at": self.updated_at.isoformat()}


def _client(row: Any) -> ClientAccount:
    return ClientAccount(id=row.id, name=row.name, email=row.email, bridge_url=row.bridge_url,
                         api_key_hash=row.api_key_hash, rpm=row.rpm, max_concurrent=row.max_concurrent,
                         disabled=bool(row.disabled), models=list(row.models or []), priority=row.priority,
                         weight=row.weight, draining=bool(row.draining), maintenance_reason=row.maintenance_reason,
                         maintenance_since=_aware(row.maintenance_since), updated_at=_aware(row.updated_at))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite hands back naive datetimes
        return value.replace(tzinfo=dt.UTC)
    return value


def _key(row: Any) -> ConsumerKey:
    models = row.allowed_models
    return ConsumerKey(id=row.id, name=row.name, key_hash=row.key_hash, rpm=row.rpm,
                       disabled=bool(row.disabled), updated_at=_aware(row.updated_at),  # type: ignore[arg-type]
                       email=row.email, expires_at=_aware(row.expires_at),
                       allowed_models=tuple(models) if models is not None else None, tpm=row.tpm,
                       max_concurrent=row.max_concurrent, unlimited=bool(row.unlimited), meta=row.meta,
                       deleted=row.deleted_at is not None, key_prefix=row.key_prefix)


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


async def replace_client_key(engine: AsyncEngine, client_id: str, api_key: str, *, current_hash: str) -> bool:
    """Store ``api_key`` (its hash) as the client's key in place of the key whose hash is ``current_hash``:
    the old key stops working. False, and nothing changed, when the client is gone or its key is no longer
    that one (another package was made meanwhile). ``updated_at`` moves, so that a running platform
    ends a connection made with the old key."""
    async with engine.begin() as conn:
        result = await conn.execute(clients.update()
                                    .where(clients.c.id == client_id, clients.c.api_key_hash == current_hash)
                                    .values(api_key_hash=credentials.hash_secret(api_key), updated_at=utcnow()))
    return result.rowcount > 0


CLIENT_FIELDS = {"name", "email", "bridge_url", "rpm", "max_concurrent", "disabled", "priority", "weight", "draining",
                 "maintenance_reason", "maintenance_since"}


async def update_client(engine: AsyncEngine, client_id: str, **values: Any) -> bool:
    """Change a client's registration or routing state; False when there is no such client."""
    unknown = set(values) - CLIENT_FIELDS
    if unknown:
        raise ValueError(f"not a client setting: {', '.join(sorted(unknown))}")
    async with engine.begin() as conn:
        result = await conn.execute(clients.update().where(clients.c.id == client_id)
                                    .values(**values, updated_at=utcnow()))
    return result.rowcount > 0


async def clients_changed_since(engine: AsyncEngine, since: dt.datetime) -> list[ClientAccount]:
    """Clients whose registration or routing state changed at or after ``since``."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(clients).where(clients.c.updated_at >= since))).all()
    return [_client(r) for r in rows]


async def known_models(engine: AsyncEngine) -> set[str]:
    """Every model any registered client has ever reported."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(clients.c.models))).all()
    return {m for (models,) in rows for m in (models or [])}


async def record_client_hello(engine: AsyncEngine, client_id: str, models: list[str],
                              client_version: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(clients.update().where(clients.c.id == client_id).values(
            models=models, client_version=client_version[:64], last_seen_at=utcnow()))


async def record_client_states(engine: AsyncEngine, states: dict[str, dict[str, Any]]) -> None:
    """Store each client's latest heartbeat (coalesced: one row update per client per flush).

    ``last_stats`` is merged into the stored document key by key: the heartbeat's stats and the
    last refusal (``arenahub.platform.refusals``) live side by side in it. Rows are locked and
    written in id order, so two platforms writing the same clients cannot deadlock."""
    if not states:
        return
    async with engine.begin() as conn:
        merging = sorted(cid for cid, state in states.items() if "last_stats" in state)
        stored: dict[str, Any] = {}
        if merging:
            query = (sa.select(clients.c.id, clients.c.last_stats).where(clients.c.id.in_(merging))
                     .order_by(clients.c.id).with_for_update())
            stored = {row.id: row.last_stats for row in await conn.execute(query)}
        for client_id in sorted(states):
            state = states[client_id]
            if "last_stats" in state:
                if client_id not in stored:
                    continue  # deleted meanwhile: nothing to update
                before = stored[client_id] if isinstance(stored[client_id], dict) else {}
                state = {**state, "last_stats": {**before, **state["last_stats"]}}
            await conn.execute(clients.update().where(clients.c.id == client_id).values(**state))


async def delete_client(engine: AsyncEngine, client_id: str) -> bool:
    """Delete a client's registration and the operator's decisions about its models (model_approvals);
    False when there is no such client. Its request records and the ledger's entries keep its id (they
    are history, not registration)."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(clients).where(clients.c.id == client_id))
        await conn.execute(sa.delete(model_approvals).where(model_approvals.c.client_id == client_id))
    return result.rowcount > 0


async def registered_client_ids(engine: AsyncEngine, client_ids: set[str], *, chunk: int = 500) -> set[str]:
    """Which of ``client_ids`` are still registered (a primary-key lookup per id, ``chunk`` per query)."""
    ids = sorted(client_ids)
    found: set[str] = set()
    async with engine.connect() as conn:
        for start in range(0, len(ids), chunk):
            query = sa.select(clients.c.id).where(clients.c.id.in_(ids[start:start + chunk]))
            found.update((await conn.execute(query)).scalars())
    return found


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
        row = (await conn.execute(sa.select(consumer_keys).where(consumer_keys.c.key_hash == key_hash,
                                                                 consumer_keys.c.deleted_at.is_(None)))).first()
    return _key(row) if row else None


async def keys_changed_since(engine: AsyncEngine, since: dt.datetime | None) -> list[ConsumerKey]:
    query = sa.select(consumer_keys)
    if since is not None:
        query = query.where(consumer_keys.c.updated_at >= since)
    async with engine.connect() as conn:
        return [_key(r) for r in (await conn.execute(query)).all()]


async def set_key_disabled(engine: AsyncEngine, key_id: str, disabled: bool) -> bool:
    return await update_key(engine, key_id, disabled=disabled)


KEY_FIELDS = {"name", "email", "expires_at", "allowed_models", "rpm", "tpm", "max_concurrent", "unlimited", "meta",
              "disabled"}


async def update_key(engine: AsyncEngine, key_id: str, **values: Any) -> bool:
    """Change a live key's settings; False when there is no such key. The cache sees it within ~1 s."""
    unknown = set(values) - KEY_FIELDS
    if unknown:
        raise ValueError(f"not a key setting: {', '.join(sorted(unknown))}")
    if "allowed_models" in values and values["allowed_models"] is not None:
        values["allowed_models"] = list(values["allowed_models"])
    async with engine.begin() as conn:
        result = await conn.execute(consumer_keys.update()
                                    .where(consumer_keys.c.id == key_id, consumer_keys.c.deleted_at.is_(None))
                                    .values(**values, updated_at=utcnow()))
    return result.rowcount > 0


async def rotate_key(engine: AsyncEngine, key_id: str) -> str | None:
    """A new secret for the same key (same limits, same ledger); the old secret stops working."""
    key = credentials.new_consumer_key()
    async with engine.begin() as conn:
        result = await conn.execute(consumer_keys.update()
                                    .where(consumer_keys.c.id == key_id, consumer_keys.c.deleted_at.is_(None))
                                    .values(key_hash=credentials.hash_secret(key),
                                            key_prefix=credentials.display_prefix(key), updated_at=utcnow()))
    return key if result.rowcount else None


async def delete_key(engine: AsyncEngine, key_id: str) -> bool:
    """Deleted keys stop working at once and leave listings; their records and ledger stay."""
    now = utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(consumer_keys.update()
                                    .where(consumer_keys.c.id == key_id, consumer_keys.c.deleted_at.is_(None))
                                    .values(deleted_at=now, updated_at=now))
    return result.rowcount > 0


async def get_key(engine: AsyncEngine, key_id: str) -> ConsumerKey | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(consumer_keys).where(consumer_keys.c.id == key_id,
                                                                 consumer_keys.c.deleted_at.is_(None)))).first()
    return _key(row) if row else None


async def list_keys(engine: AsyncEngine) -> list[ConsumerKey]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(consumer_keys).where(consumer_keys.c.deleted_at.is_(None))
                                   .order_by(consumer_keys.c.created_at))).all()
    return [_key(r) for r in rows]


async def list_clients(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Registered clients for the admin API, without their key hashes."""
    return await _client_views(engine)


async def client_view(engine: AsyncEngine, client_id: str) -> dict[str, Any] | None:
    """One client as ``list_clients`` shows it; None when there is no such client."""
    found = await _client_views(engine, clients.c.id == client_id)
    return found[0] if found else None


async def _client_views(engine: AsyncEngine, *where: Any) -> list[dict[str, Any]]:
    cols = [c for c in clients.c if c.name != "api_key_hash"]
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(*cols).where(*where).order_by(clients.c.created_at))).all()
    out = []
    for row in rows:
        item = dict(row._mapping)
        for name in ("created_at", "updated_at", "last_seen_at", "maintenance_since"):
            value = _aware(item.get(name))
            item[name] = value.isoformat() if value else None
        out.append(item)
    return out
