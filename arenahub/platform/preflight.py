"""Before a platform starts serving: its database (PostgreSQL) and Redis answer, or one line says which does not.

Without this, an unreachable server surfaced as a traceback from the application's start-up (after Redis's
reconnect warnings). SQLite is a file the platform makes itself: nothing to reach.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.db import DATABASE_ERRORS, create_engine

TIMEOUT_SECONDS = 10.0


def shown(url: str) -> str:
    """The URL without its password, for a message."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL make_url cannot read is shown by its scheme only
        return url.split("://", 1)[0] + "://..."


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return (" ".join(str(cause).split()) or type(cause).__name__)[:300]


async def problem(settings: PlatformSettings) -> str | None:
    """None when what the platform needs answers; else one line naming what does not, and why."""
    url = settings.resolved_database_url
    if not url.startswith("sqlite"):
        engine = create_engine(url)
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS), engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except TimeoutError:
            return f"cannot reach the database {shown(url)}: no answer within {TIMEOUT_SECONDS:g} s"
        except DATABASE_ERRORS as exc:
            return f"cannot reach the database {shown(url)}: {_reason(exc)} (is PostgreSQL running there?)"
        finally:
            await engine.dispose()
    if settings.redis_url:
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await redis.ping()
        except (TimeoutError, RedisError, OSError) as exc:
            return (f"cannot reach Redis at {shown(settings.redis_url)}: {_reason(exc)} (is redis-server running "
                    "there?)")
        finally:
            await redis.aclose()
    return None
