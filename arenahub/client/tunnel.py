"""One connection of the client to a platform instance, and the answers it carries.

Each answer goes back on the connection its request came on. That is what lets a client move: when
an instance of a cluster shuts down it sends ``Move``; the link connects to another instance for new
work while this connection finishes its answers, then closes it (``link.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import aiohttp

from arenahub.client.flow import Credit
from arenahub.protocol import frames

log = logging.getLogger("arenahub.client.tunnel")

# Chunk frames are split below this size (the platform closes a tunnel on a frame over 1 MiB).
CHUNK_FRAME_BYTES = frames.MAX_FRAME_BYTES // 2
# A sender waits while this much is queued for the socket and not yet written.
QUEUE_BYTES = 1024 * 1024
# Closing a connection waits this long at most for the frames queued on it to be written.
FLUSH_SECONDS = 5.0


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
        # Once the platform says it reads batches (its welcome), frames go through a queue and a writer
        # that puts those queued together in one message.
        self.batches = False
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._flushed = asyncio.Event()
        self._flushed.set()
        self._writer: asyncio.Task[None] | None = None
        self._broken: BaseException | None = None

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
        await self._write(frames.encode(frame))

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
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        if not self.batches:
            async with self._lock:
                await self.ws.send_bytes(data)
            return
        if self._broken is not None:
            raise ConnectionResetError(f"the connection to the platform broke: {self._broken}")
        self._queue.append(data)
        self._queued_bytes += len(data)
        self._flushed.clear()
        self._wake.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="tunnel-writer")
        if self._queued_bytes > QUEUE_BYTES:
            self._room.clear()
            await self._room.wait()

    async def _write_loop(self) -> None:
        queue = self._queue
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while queue:
                    parts = [queue.popleft()]
                    size = len(parts[0])
                    while queue and size < frames.BATCH_BYTES and len(parts) < frames.MAX_BATCH_FRAMES:
                        parts.append(queue.popleft())
                        size += len(parts[-1])
                    self._queued_bytes -= size
                    if self._queued_bytes <= QUEUE_BYTES // 2:
                        self._room.set()
                    async with self._lock:
                        await self.ws.send_bytes(frames.batch(parts))
                self._flushed.set()
        except (ConnectionResetError, aiohttp.ClientError, OSError, RuntimeError) as exc:
            self._broken = exc
            log.info("writing to the platform failed: %s", exc)
            queue.clear()
            self._room.set()
            self._flushed.set()

    async def close(self) -> None:
        """Close the connection once the frames queued on it are written (FLUSH_SECONDS at most)."""
        if self._writer is not None:
            try:
                async with asyncio.timeout(FLUSH_SECONDS):
                    await self._flushed.wait()
            except TimeoutError:
                log.warning("closing the connection to %s with %d byte(s) of frames not written", self.url,
                            self._queued_bytes)
            self._writer.cancel()
        await self.ws.close()
