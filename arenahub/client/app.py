"""The standalone client program: the link to the platform plus its local endpoints."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from starlette.applications import Starlette

from arenahub.client import local_api
from arenahub.client.config import ClientConfig
from arenahub.client.link import PlatformLink
from arenahub.client.relay import BridgeRelay
from arenahub.client.stats import Stats


@contextlib.asynccontextmanager
async def running_link(config: ClientConfig, fixed: dict[str, Any] | None = None) -> AsyncIterator[PlatformLink]:
    """A started PlatformLink with its HTTP session; stopped and closed on exit. ``fixed``: the settings
    the embedding program decides, which a re-read of config.jsonc keeps (see ``reload_config``)."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
        relay = BridgeRelay(http, config.lmarena_bridge_url, config.bridge_api_key)
        link = PlatformLink(config, relay, http, Stats(config.enable_performance_monitoring), fixed)
        link.start()
        try:
            yield link
        finally:
            await link.stop()


def create_app(config: ClientConfig) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logging.getLogger("arenahub").setLevel(config.log_level)
        async with running_link(config) as link:
            app.state.link = link
            yield

    return Starlette(routes=local_api.routes, lifespan=lifespan, middleware=local_api.cors(config.allowed_origins))


def serve(config: ClientConfig, host: str, port: int) -> int:
    """Run the standalone client (``arenahub client`` and the drop-in's script mode)."""
    from arenahub import logs, serving
    logs.configure_logging(config.log_level)
    for warning in config.warnings:  # keys nothing reads: typos, most likely
        logging.getLogger("arenahub.client").warning("%s", warning)
    return serving.run(create_app(config), host, port, config.log_level, command="arenahub client")
