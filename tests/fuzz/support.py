"""Helpers of the schema fuzzing tests: the real platform served by uvicorn on a loopback port, on a
fresh SQLite database seeded with a consumer key and a registered client that is not connected, and
the schemathesis settings both suites share.

Each run is bounded (hypothesis ``max_examples`` per operation, no deadline): the whole of tests/fuzz
takes about half a minute on two cores."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from arenahub.platform.accounting import credentials
from arenahub.platform.app import create_app
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import accounts, billing_store
from arenahub.platform.storage.db import create_engine, migrate
from arenahub.platform.storage.schema import consumer_keys
from tests.servers import ServerThread

ADMIN_TOKEN = "adm-fuzz-0123456789abcdefghijklmnop"
CONSUMER_KEY = "sk-fuzz-0123456789abcdefghijklmnopqrstuvwxyzABCD"  # stored as the seeded key's secret
MODELS = ["m1", "vendor/m2"]
# Bounded: about 20 s for the admin API's 33 operations, 10 s for the consumer API's (one core each). The
# same cases every run (derandomize), so that CI is reproducible; no deadline: a package download zips a wheel.
FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@dataclass(frozen=True)
class Seeded:
    url: str  # the platform, e.g. http://127.0.0.1:40123
    key: str  # a consumer key with credit
    key_id: str
    client_id: str  # registered, serving MODELS once, not connected




async def _seed(url: str) -> tuple[str, str, str]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        client_id, _ = await accounts.create_client(engine, name="fuzz-client")
        await accounts.record_client_hello(engine, client_id, MODELS, "0.0.0")  # known models, no session
        key_id, _ = await accounts.create_key(engine, name="fuzz-key")
        async with engine.begin() as conn:  # a secret known before the run, for the schemathesis settings
            await conn.execute(consumer_keys.update().where(consumer_keys.c.id == key_id).values(
                key_hash=credentials.hash_secret(CONSUMER_KEY), key_prefix=credentials.display_prefix(CONSUMER_KEY)))
        await accounts.update_key(engine, key_id, unlimited=False)
        await billing_store.add_money(engine, key_id, 5_000_000, note="fuzz")
        return key_id, CONSUMER_KEY, client_id
    finally:
        await engine.dispose()


@contextmanager
def platform(directory: Path) -> Iterator[Seeded]:
    """The platform on a new database in ``directory``: no queue (no client is ever connected, so a request
    is refused at once with a 503 instead of waiting)."""
    database_url = f"sqlite+aiosqlite:///{directory / 'fuzz.db'}"
    key_id, key, client_id = asyncio.run(_seed(database_url))
    # Schemathesis offers wrong tokens on purpose (its ignored_auth check): no throttle of wrong credentials.
    app = create_app(PlatformSettings(database_url=database_url, data_dir=directory, admin_token=ADMIN_TOKEN,
                                      queue_size=0, record_flush_seconds=0.05, credential_failures_per_minute=0))
    server = ServerThread(app, lifespan="on").start()
    try:
        yield Seeded(url=server.url.rstrip("/"), key=key, key_id=key_id, client_id=client_id)
    finally:
        server.stop()


def config(scheme: str, token: str, **checks: dict[str, Any]) -> schemathesis.Config:
    """Schemathesis settings: ``token`` for the security scheme ``scheme``; ``checks`` as in schemathesis.toml."""
    return schemathesis.Config.from_dict({"auth": {"openapi": {scheme: {"bearer": token}}}, "checks": checks})
