"""HTTP helpers shared by platform and bridge: bounded body reading, and a response that notices
at once when the HTTP client goes away."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from arenahub.protocol.errors import RequestTooLarge


class WatchedResponse(Response):
    """Runs ``answer(send)`` while watching the connection; if the peer disconnects, the work is
    cancelled at once (not at the next write) and ``left()`` is called. ``done()`` runs last."""

    def __init__(self) -> None:
        self.background = None

    async def answer(self, send: Send) -> None:
        raise NotImplementedError

    def left(self) -> None:
        """The peer disconnected before the answer was complete."""

    def done(self) -> None:
        """Runs after everything, whatever happened."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    task.cancel()
                    return

        watcher = asyncio.ensure_future(watch())
        try:
            await self.answer(send)
        except asyncio.CancelledError:
            if not gone.is_set():
                raise
            task.uncancel()
            self.left()
        except OSError:  # the peer's socket broke while we wrote
            self.left()
        finally:
            watcher.cancel()
            self.done()


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is {int(declared)} bytes; the limit is {limit} bytes.")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        parts.append(part)
    return b"".join(parts)
