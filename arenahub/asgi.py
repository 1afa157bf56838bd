"""HTTP helpers shared by platform and bridge: bounded body reading, and a response that notices
at once when the HTTP client goes away."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from arenahub.protocol.errors import ApiError, RequestTooLarge


class ClientClosed(ApiError):
    """The HTTP client went away before its request was read in full (it left, or the server cut
    a body that stalled): nobody is left to answer, and nothing went wrong here. nginx's 499."""

    status = 499
    type = "invalid_request_error"
    code = "client_closed"


# The ASGI extension (``arenahub.serving`` provides it) that drops a connection at once, data unsent.
ABORT_EXTENSION = "arenahub.abort"


class WatchedResponse(Response):
    """Runs ``answer(send)`` while watching the connection; if the peer disconnects, the work is
    cancelled at once (not at the next write) and ``left()`` is called. ``done()`` runs last."""

    def __init__(self) -> None:
        self.background = None
        self._task: asyncio.Task[Any] | None = None
        self._cut = False

    def cut(self) -> None:
        """End the answer from this side, now (the peer reads it too slowly): the work is cancelled
        and the connection dropped; ``left()`` is not called, ``done()`` is."""
        self._cut = True
        if self._task is not None:
            self._task.cancel()

    async def answer(self, send: Send) -> None:
        raise NotImplementedError

    def left(self) -> None:
        """The peer disconnected before the answer was complete."""

    def done(self) -> None:
        """Runs after everything, whatever happened."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
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
            if self._cut:
                task.uncancel()
                drop = scope.get("extensions", {}).get(ABORT_EXTENSION)
                if drop is not None:
                    drop["abort"]()
            elif not gone.is_set():
                raise
            else:
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
    try:
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
            parts.append(part)
    except ClientDisconnect:
        raise ClientClosed(f"The client closed the connection after {size} bytes of the request body.") from None
    return b"".join(parts)
