"""Named platform settings kept in the database (JSON values)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.storage.accounts import utcnow
from arenahub.platform.storage.schema import platform_settings


async def get_setting(engine: AsyncEngine, name: str) -> Any | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(platform_settings.c.value)
                                  .where(platform_settings.c.name == name))).first()
    return row[0] if row else None


async def put_setting(engine: AsyncEngine, name: str, value: Any, *, only_if_absent: bool = False) -> bool:
    """Store a setting; with ``only_if_absent``, False when another writer got there first."""
    async with engine.begin() as conn:
        exists = (await conn.execute(sa.select(platform_settings.c.name)
                                     .where(platform_settings.c.name == name))).first()
        if exists and only_if_absent:
            return False
        if exists:
            await conn.execute(platform_settings.update().where(platform_settings.c.name == name)
                               .values(value=value, updated_at=utcnow()))
        else:
            try:
                await conn.execute(platform_settings.insert().values(name=name, value=value, updated_at=utcnow()))
            except sa.exc.IntegrityError:  # another platform process stored it at the same moment
                if only_if_absent:
                    return False
                raise
    return True
