"""A cluster for the end-to-end tests: platform instances on one PostgreSQL database and a redis-server of
their own, each with a client, started side by side (their start-ups overlap: the suite's time matters)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import initialised
from tests.redis_server import RedisServer

from .harness import MODELS, Client, Platform, Stack, Upstream, write_client_config

MODEL = MODELS[0]
INSTANCES = ("east", "west", "north")


@dataclass
class Cluster:
    stack: Stack
    database_url: str
    redis: RedisServer
    platforms: list[Platform]
    clients: list[Client]
    upstream: Upstream

    def key(self, *options: str) -> dict[str, Any]:
        return self.stack.admin("create-key", "--name", "cluster", *options, database_url=self.database_url)

    def instance_env(self, name: str, **extra: str) -> dict[str, str]:
        return instance_env(self.redis, name, **extra)

    def listing_client(self, name: str, *, max_concurrent_requests: int = 8, platform_url: str | None = None) -> Client:
        """A client whose platform_url lists every instance (no load balancer), or is ``platform_url`` (a load
        balancer's), connected."""
        account = self.stack.admin("create-client", "--name", name, database_url=self.database_url)
        config = write_client_config(self.stack.workdir / f"{name}.config.jsonc",
                                     platform_url=platform_url or [p.api_url for p in self.platforms],
                                     client_id=account["client_id"], api_key=account["api_key"],
                                     bridge_url=self.upstream.url, max_concurrent_requests=max_concurrent_requests)
        client = Client(self.stack.workdir, name, config, account["client_id"], account["api_key"])
        self.stack.programs.append(client)
        client.start()
        client.wait_state("connected")
        return client


def instance_env(redis: RedisServer, name: str, **extra: str) -> dict[str, str]:
    return {"ARENAHUB_REDIS_URL": redis.url, "ARENAHUB_INSTANCE_ID": name, "ARENAHUB_RECORD_FLUSH_SECONDS": "0.1",
            **extra}


@contextlib.contextmanager
def running_cluster(workdir: Path, database_url: str, *, instances: tuple[str, ...] = INSTANCES,
                    clients: bool = True, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """The instances on ``database_url`` and a redis-server of their own, each with a client (``clients``)."""
    redis = RedisServer(workdir).start()
    stack = Stack(workdir)
    try:
        database_url = initialised(database_url)
        stack.admin("set-price", MODEL, "--prompt", "1000", "--completion", "1000", database_url=database_url)
        upstream = stack.upstream(MODELS)
        platforms = [Platform(workdir, name, database_url, instance_env(redis, name, **(env or {})))
                     for name in instances]
        for platform in platforms:
            stack.programs.append(platform)
            platform.start()
        with ThreadPoolExecutor(len(platforms)) as pool:
            list(pool.map(Platform.wait_ready, platforms))
        # One after another (``arenahub admin`` runs in this process), then waited for together.
        own = [stack.client(p, upstream, name=f"client-{p.name}", max_concurrent_requests=64, expect_state=None)
               for p in platforms] if clients else []
        for client in own:
            client.wait_state("connected")
        yield Cluster(stack, database_url, redis, platforms, own, upstream)
    finally:
        stack.stop_all()
        redis.stop()
