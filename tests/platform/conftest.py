"""Fixtures of the platform tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.storage import db


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh, migrated database, on SQLite and then on PostgreSQL."""
    engine = db.create_engine(database_url)
    await db.migrate(engine)
    yield engine
    await engine.dispose()
