"""The browser tabs running the userscript: several may be connected; requests are spread over them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger("arenahub.bridge.tabs")

_encode = msgspec.json.Encoder().encode


class TabClosed:
    """Put into a request's queue when the tab running it goes away."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Tab:
    def __init__(self, ws: WebSocket, tab_id: str) -> None:
        self.ws = ws
        self.id = tab_id
        self.connected_at = time.time()
        self.origin: str | None = None
        self.title: str | None = None
        self.script_version: str | None = None
        self.requests: dict[str, asyncio.Queue[Any]] = {}
        self.closed = False
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name=f"tab-writer-{tab_id}")

    def send_nowait(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self._outbox.put_nowait(_encode(message))

    async def _write_loop(self) -> None:
        while (data := await self._outbox.get()) is not None:
            try:
                await self.ws.send_text(data.decode())
            except (RuntimeError, OSError, WebSocketDisconnect) as exc:
                log.info("tab %s: send failed (%s)", self.id, exc)
                return

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        requests, self.requests = self.requests, {}
        for queue in requests.values():
            queue.put_nowait(TabClosed(reason))
        self._outbox.put_nowait(None)

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "origin": self.origin, "title": self.title, "script_version": self.script_version,
                "connected_at": self.connected_at, "active_requests": len(self.requests)}


class TabPool:
    def __init__(self) -> None:
        self._tabs: dict[str, Tab] = {}
        self._owner: dict[str, Tab] = {}  # request id -> tab
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._tabs)

    def tabs(self) -> list[Tab]:
        return list(self._tabs.values())

    def add(self, tab: Tab) -> None:
        self._tabs[tab.id] = tab
        self.changed.set()

    def remove(self, tab: Tab, reason: str) -> None:
        if self._tabs.get(tab.id) is tab:
            del self._tabs[tab.id]
        for request_id in list(tab.requests):
            self._owner.pop(request_id, None)
        tab.close(reason)
        self.changed.set()

    def pick(self) -> Tab | None:
        """The connected tab with the fewest requests in flight."""
        best = None
        for tab in self._tabs.values():
            if not tab.closed and (best is None or len(tab.requests) < len(best.requests)):
                best = tab
        return best

    def open(self, tab: Tab, request_id: str, payload: dict[str, Any]) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        tab.requests[request_id] = queue
        self._owner[request_id] = tab
        tab.send_nowait({"request_id": request_id, "payload": payload})
        return queue

    def deliver(self, request_id: str, data: Any) -> bool:
        tab = self._owner.get(request_id)
        queue = tab.requests.get(request_id) if tab else None
        if queue is None:
            return False
        queue.put_nowait(data)
        return True

    def finish(self, request_id: str) -> None:
        tab = self._owner.pop(request_id, None)
        if tab is not None:
            tab.requests.pop(request_id, None)

    def cancel(self, request_id: str) -> None:
        """Stop a request: the tab aborts its upstream fetch."""
        tab = self._owner.pop(request_id, None)
        if tab is not None and tab.requests.pop(request_id, None) is not None:
            tab.send_nowait({"command": "cancel", "request_id": request_id})

    def broadcast(self, command: str) -> int:
        for tab in self._tabs.values():
            tab.send_nowait({"command": command})
        return len(self._tabs)
