"""One connection of the client to a platform instance, and the answers it carries.

Each answer goes back on the connection its request came on. That is what lets a client move: when
an instance of a cluster shuts down it sends ``Move``; the link connects to another instance for new
work while this connection finishes its answers, then closes it (``link.py``).
"""

from __future__ import annotations

import asyncio

import aiohttp

from arenahub.client.flow import Credit
from arenahub.protocol import frames

# Chunk frames are split below this size (the platform closes a tunnel on a frame over 1 MiB).
CHUNK_FRAME_BYTES = frames.MAX_FRAME_BYTES // 2


class Tunnel:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, url: str) -> None:
        self.ws = ws
        self.url = url  # the platform URL it was opened to
        self.moving: str | None = None  # once told to move: the platform's reason
        self._lock = asyncio.Lock()
        self._requests: dict[str, asyncio.Task[None]] = {}
        self._credits: dict[str, Credit] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def closed(self) -> bool:
        return self.ws.closed

    @property
    def active(self) -> int:
        return len(self._requests)

    # -- the requests it carries ----------------------------------------------------------------
    def started(self, request_id: str, task: asyncio.Task[None], window: int | None) -> None:
        self._credits[request_id] = Credit(window)
        self._requests[request_id] = task
        self._idle.clear()
        task.add_done_callback(lambda _task: self._done(request_id))

    def _done(self, request_id: str) -> None:
        self._requests.pop(request_id, None)
        self._credits.pop(request_id, None)
        if not self._requests:
            self._idle.set()

    def grant(self, request_id: str, n: int) -> None:
        credit = self._credits.get(request_id)
        if credit is not None:
            credit.grant(n)

    def cancel(self, request_id: str) -> bool:
        running = self._requests.get(request_id)
        if running is None:
            return False
        running.cancel()
        return True

    def cancel_all(self) -> None:
        for task in list(self._requests.values()):
            task.cancel()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # -- sending ----------------------------------------------------------------------------------
    async def send(self, frame: frames.Frame) -> None:
        if self.ws.closed:
            raise ConnectionResetError("not connected to the platform")
        data = frames.encode(frame)
        async with self._lock:
            await self.ws.send_bytes(data)

    async def send_chunk(self, frame: frames.Chunk) -> None:
        """A chunk of an answer, within the answer's flow-control grant (waits for more when it is used up);
        split in two while it is larger than the platform takes in one frame."""
        data = frames.encode(frame)
        if len(data) > CHUNK_FRAME_BYTES and len(frame.events) > 1:
            half = len(frame.events) // 2
            await self.send_chunk(frames.Chunk(id=frame.id, events=frame.events[:half]))
            await self.send_chunk(frames.Chunk(id=frame.id, events=frame.events[half:], usage=frame.usage))
            return
        credit = self._credits.get(frame.id)
        if credit is not None:
            await credit.spend(len(data))
        if self.ws.closed:
            raise ConnectionResetError("not connected to the platform")
        async with self._lock:
            await self.ws.send_bytes(data)
