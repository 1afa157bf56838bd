"""Running an ASGI app with uvicorn (uvloop + httptools), with an optional drain on shutdown and,
for the platform, the connection limits of ``arenahub.connections``."""

from __future__ import annotations

import asyncio
import errno
import gc
import socket
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from arenahub.connections import GuardedConfig, ServerLimits


class DrainingServer(uvicorn.Server):
    """On the first SIGTERM/SIGINT, run ``drain`` (finish work in flight), then stop; a second signal stops at once."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(config)
        self._drain = drain
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain is None or self._draining or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._drain_then_exit(sig, frame)))  # type: ignore[union-attr]

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        try:
            await self._drain()  # type: ignore[misc]
        finally:
            super().handle_exit(sig, frame)


def server(app: ASGIApp, host: str, port: int, log_level: str = "info",
           drain: Callable[[], Awaitable[None]] | None = None, limits: ServerLimits | None = None,
           graceful_seconds: float = 30.0) -> DrainingServer:
    """uvicorn on uvloop + httptools; with ``limits``, the guarded protocols above. Its loggers
    propagate to the root logger's handler (``configure_logging``) instead of uvicorn's own."""
    options: dict[str, Any] = dict(host=host, port=port, loop="uvloop", ws="websockets-sansio",
                                   log_level=log_level.lower(), log_config=None, access_log=False, lifespan="on",
                                   ws_max_size=64 * 1024 * 1024, timeout_graceful_shutdown=graceful_seconds)
    if limits is None:
        config = uvicorn.Config(app, http="httptools", **options)
    else:
        del options["ws"]
        options["ws_max_size"] = limits.max_message_bytes
        config = GuardedConfig(app, limits, **options)
    return DrainingServer(config, drain)


def tune_gc() -> None:
    """Long-lived services allocate many short-lived objects per request: move what start-up
    built out of the collector's way and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, before anything else starts: a port in use is then one clean error
    (OSError) before the application's start-up has done anything (made the admin token, say)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run(app: ASGIApp, host: str, port: int, log_level: str = "info",
        drain: Callable[[], Awaitable[None]] | None = None, limits: ServerLimits | None = None,
        command: str = "arenahub", graceful_seconds: float = 30.0) -> int:
    """Serve ``app`` until a signal; ``graceful_seconds``: how long connections still open at the end may take
    to finish (a test tool's streams are cut after a second)."""
    try:
        sock = listen(host, port)
    except OSError as exc:
        hint = (" (another program has it: is a copy of this one running already? Stop it, or choose another "
                "port)") if exc.errno == errno.EADDRINUSE else ""
        print(f"{command}: cannot listen on {host}:{port}: {exc.strerror or exc}{hint}", file=sys.stderr, flush=True)
        return 1
    tune_gc()
    srv = server(app, host, port, log_level, drain, limits, graceful_seconds)
    try:
        srv.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down gracefully on Ctrl-C, then raises it again for the caller
        pass
    return 0 if srv.started else 1
