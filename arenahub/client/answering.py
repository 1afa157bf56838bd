"""One request from the platform, answered: checked, relayed to the bridge, its answer sent back as
Chunk frames and an End (or an Error) on the connection the request came on."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from arenahub.client.config import ClientConfig
from arenahub.client.relay import BridgeRelay, RelayError
from arenahub.client.stats import Stats
from arenahub.client.tunnel import Tunnel
from arenahub.client.validation import rejection
from arenahub.protocol import frames

log = logging.getLogger("arenahub.client")


async def answer(req: frames.Request, tunnel: Tunnel, relay: BridgeRelay, stats: Stats, config: ClientConfig) -> None:
    if config.enable_request_validation and (refused := rejection(req)) is not None:
        # Not a failure of this client or its bridge: counted apart, so that the success rate
        # and response times the platform routes by stay about what the bridge did.
        stats.rejected += 1
        log.warning("request %s refused: %s", req.id, refused.message)
        await send_quietly(refused, tunnel)
        return
    started = stats.begin()
    ok = cancelled = False
    if config.enable_request_logging:
        log.info("request %s: started", req.id)
    try:
        usage: dict[str, Any] | None = None
        relayed = relay.images if req.kind == frames.IMAGES else relay.answer
        async for events, batch_usage in relayed(bytes(req.body)):
            usage = batch_usage or usage
            if events:
                await tunnel.send_chunk(frames.Chunk(id=req.id, events=events))
        await tunnel.send(frames.End(id=req.id, usage=usage))
        ok = True
    except RelayError as exc:
        log.warning("request %s failed: %s", req.id, exc.message)
        await send_quietly(frames.Error(id=req.id, code=exc.code, message=exc.message, status=exc.status,
                                        retryable=exc.retryable, retry_after=exc.retry_after), tunnel)
    except asyncio.CancelledError:
        cancelled = True
        raise
    except (ConnectionResetError, aiohttp.ClientError) as exc:  # the tunnel broke while we answered
        log.warning("request %s: lost the platform connection (%s)", req.id, exc)
    finally:
        stats.end(started, ok=ok, cancelled=cancelled)
        if config.enable_request_logging:
            log.info("request %s: %s in %.0f ms", req.id, "ok" if ok else ("cancelled" if cancelled else "failed"),
                     (time.perf_counter() - started) * 1000)


async def send_quietly(frame: frames.Frame, tunnel: Tunnel) -> None:
    """Send a frame; a broken connection is logged, not raised (the link notices it and reconnects)."""
    try:
        await tunnel.send(frame)
    except (ConnectionResetError, aiohttp.ClientError) as exc:
        log.info("could not report to the platform: %s", exc)
