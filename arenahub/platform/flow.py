"""Flow control of one answer, from the client through the platform to the consumer.

A request's frames wait in its ``Inbox`` until the consumer's side takes them. The client may
send ``window`` bytes of Chunk frames (as encoded on the wire) beyond what the consumer has
taken: the platform grants more with a ``Window`` frame as the consumer takes them. A client that
keeps to its window (arenahub's does, and then stops reading from its bridge) never makes the
platform hold more than the window and one frame (``bound``) for the request. One that does not is made to
wait: the tunnel stops reading its socket until the consumer catches up, so the buffer stays
bounded either way.

While the client is held back (its window used up, the consumer not taking), the time counts
against the consumer. When the total passes ``slow_consumer_seconds``, ``on_stalled`` runs: the
consumer is cut with ``consumer_too_slow``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from arenahub.protocol import frames

# Bytes of Chunk frames a client may send ahead of the consumer (per request), and how much of it
# the consumer must take before the platform grants it back (fewer, larger Window frames).
DEFAULT_WINDOW = 256 * 1024
GRANT_SHARE = 2


class Inbox(asyncio.Queue[Any]):  # of tunnel_session.Incoming (which imports this module)
    """A request's frames from its client, with the bytes it holds counted and its window granted back."""

    def __init__(self, window: int, grant: Callable[[int], None], *, slow_consumer_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        # A client keeping to its window holds at most the window and the frame that crossed it here.
        self.bound = window + frames.MAX_FRAME_BYTES
        self.credit = window  # bytes the client may still send
        self.buffered = 0  # bytes of Chunk frames waiting here
        self.held_seconds = 0.0  # time the client was held back by this request's consumer, in all
        self._sizes: deque[int] = deque()
        self._ungranted = 0
        self._grant = grant
        self._clock = clock
        self._held_since: float | None = None
        self._budget = slow_consumer_seconds
        self._timer: asyncio.TimerHandle | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self.on_stalled: Callable[[], None] | None = None
        self.stalled = False

    # -- the tunnel's side --------------------------------------------------------------------
    def put_frame(self, frame: frames.Chunk | frames.End | frames.Error, size: int) -> None:
        """Queue a frame that took ``size`` bytes on the wire. When this request then holds more than
        it may (``over_bound``), the tunnel waits for ``room()`` before it reads the client's socket again."""
        if isinstance(frame, frames.Chunk):
            self._sizes.append(size)
            self.buffered += size
            self.credit -= size
            if self.credit <= 0:
                self._hold()
        self.put_nowait(frame)
        if self.buffered > self.bound and not self._closed:
            self._room.clear()

    @property
    def over_bound(self) -> bool:
        return not self._room.is_set()

    async def room(self) -> None:
        await self._room.wait()

    def close(self) -> None:
        """The request is over: nothing more is granted or held, and a tunnel waiting for room goes on."""
        self._closed = True
        self._room.set()
        self._release()

    # -- the consumer's side ------------------------------------------------------------------
    def get_nowait(self) -> Any:
        frame = super().get_nowait()
        if isinstance(frame, frames.Chunk) and self._sizes:
            size = self._sizes.popleft()
            self.buffered -= size
            self._ungranted += size
            if self.buffered <= self.bound:
                self._room.set()
            if not self._closed and (self._ungranted * GRANT_SHARE >= self.window or self.buffered == 0
                                     and self.credit <= 0):
                granted, self._ungranted = self._ungranted, 0
                self.credit += granted
                if self.credit > 0:
                    self._release()
                self._grant(granted)
        return frame

    # -- time held ----------------------------------------------------------------------------
    def _hold(self) -> None:
        if self._held_since is not None or self._closed:
            return
        self._held_since = self._clock()
        left = self._budget - self.held_seconds
        if self._budget > 0:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, left), self._stall)

    def _release(self) -> None:
        if self._held_since is not None:
            self.held_seconds += self._clock() - self._held_since
            self._held_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _stall(self) -> None:
        self._timer = None
        if self._closed or self.stalled:
            return
        self.stalled = True
        self._release()
        if self.on_stalled is not None:
            self.on_stalled()
