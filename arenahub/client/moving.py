"""A connection the platform asked the client to leave (a ``move`` frame: its instance shuts down).

It keeps reading (cancels, flow-control grants) and heartbeating until its answers are done and the client
serves on its new connection (MOVED_WAIT_SECONDS at most: the cluster waits for it meanwhile), then closes;
or until the instance closes it first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from arenahub.client.tunnel import Tunnel

log = logging.getLogger("arenahub.client")

# After a Move, the old connection stays open until the client serves on its new one, this long at most.
MOVED_WAIT_SECONDS = 10.0


async def leave(tunnel: Tunnel, serve: Coroutine[Any, Any, None], moved_on: Callable[[], bool],
                changed: asyncio.Event, heartbeats: asyncio.Task[None]) -> None:
    """``serve`` reads the old connection; ``moved_on()``: the client serves on a new one (checked whenever
    ``changed`` is set)."""
    reading = asyncio.create_task(serve)
    idle = asyncio.create_task(_done_and_moved(tunnel, moved_on, changed))
    try:
        await asyncio.wait({reading, idle}, return_when=asyncio.FIRST_COMPLETED)
        if idle.done():
            log.info("the answers in flight on the connection to %s are done; closing it", tunnel.url)
        else:
            log.warning("the platform instance at %s closed the connection (code %s) before its %d answer(s) "
                        "in flight were done", tunnel.url, tunnel.ws.close_code, tunnel.active)
    finally:
        for task in (reading, idle, heartbeats):
            task.cancel()
        tunnel.cancel_all()
        await tunnel.close()


async def _done_and_moved(tunnel: Tunnel, moved_on: Callable[[], bool], changed: asyncio.Event) -> None:
    await tunnel.wait_idle()
    deadline = time.monotonic() + MOVED_WAIT_SECONDS
    while not moved_on():
        if time.monotonic() > deadline:
            return
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return
