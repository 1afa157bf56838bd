"""The client's side of flow control (see ``Request.window`` in the protocol): what it may still send
of each answer. While an answer's grant is used up, its relay waits, so the client stops reading
that answer from the bridge, and the bridge (and arena.ai behind it) is held back in turn."""

from __future__ import annotations

import asyncio


class Credit:
    """Bytes of Chunk frames one answer may still send; ``None`` window: no flow control."""

    def __init__(self, window: int | None) -> None:
        self.left = window
        self._more = asyncio.Event()

    def grant(self, n: int) -> None:
        if self.left is not None:
            self.left += n
            self._more.set()

    async def spend(self, n: int) -> None:
        """Wait until some of the grant is left, then spend ``n`` bytes of it (it may go below zero by
        this one frame, as the protocol allows)."""
        if self.left is None:
            return
        while self.left <= 0:
            self._more.clear()
            await self._more.wait()
        self.left -= n
