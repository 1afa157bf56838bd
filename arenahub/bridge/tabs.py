"""The browser tabs running the userscript: several may be connected; requests are spread over them.

Each tab has one socket (``/ws``) carrying many requests at once, each by its own id
(``arenahub.protocol.tab``; ``arenahub.protocol.mux`` keeps them). A request's messages go into its own
queue; when the tab goes away, every open request gets ``TabClosed``. Questions (diagnose, the page's
models) are futures answered by id. Only tabs that speak this bridge's protocol, on a normal arena.ai
page, take work.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, TypeVar

from starlette.websockets import WebSocket, WebSocketDisconnect

from arenahub.bridge.diagnosis import TabView, on_site
from arenahub.protocol import mux, tab

log = logging.getLogger("arenahub.bridge.tabs")
T = TypeVar("T")


class TabClosed:
    """Put into a request's queue when the tab running it goes away."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


Incoming = tab.Started | tab.Chunk | tab.Done | tab.Failed | TabClosed


class Tab:
    def __init__(self, ws: WebSocket, tab_id: str) -> None:
        self.ws = ws
        self.id = tab_id
        self.connected_at = time.time()
        self.protocol = 0
        self.script_version = ""
        self.facts = tab.PageFacts()
        self.models_in_page: int | None = None
        self.requests: mux.Mux[mux.Queue[Incoming], Incoming] = mux.Mux()
        self.questions: dict[str, asyncio.Future[Any]] = {}
        self.closed = False
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name=f"tab-writer-{tab_id}")

    @property
    def usable(self) -> bool:
        """Speaks this bridge's protocol and shows a normal arena.ai page (or a local stand-in)."""
        return not self.closed and self.protocol == tab.TAB_PROTOCOL_VERSION and self.facts.page == "arena"

    def view(self) -> TabView:
        return TabView(self.protocol, self.script_version, self.facts, self.models_in_page)

    def send(self, message: tab.FromBridge) -> None:
        if not self.closed:
            self._outbox.put_nowait(tab.encode(message))

    async def _write_loop(self) -> None:
        while (data := await self._outbox.get()) is not None:
            try:
                await self.ws.send_text(data)
            except (RuntimeError, OSError, WebSocketDisconnect) as exc:
                log.info("tab %s: send failed (%s)", self.id, exc)
                return

    async def ask(self, message_for: Any, timeout: float) -> Any:
        """Send the question ``message_for(id)`` and wait for the answer with that id."""
        question_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.questions[question_id] = future
        try:
            self.send(message_for(question_id))
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self.questions.pop(question_id, None)

    def answer(self, question_id: str, value: Any) -> bool:
        future = self.questions.get(question_id)
        if future is None or future.done():
            return False
        future.set_result(value)
        return True

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.requests.fail_all(TabClosed(reason))
        for future in self.questions.values():
            if not future.done():
                future.set_exception(ConnectionError(reason))
        self._outbox.put_nowait(None)

    def snapshot(self) -> dict[str, Any]:
        facts = self.facts
        return {"id": self.id, "origin": facts.origin or None, "on_site": on_site(facts.origin), "page": facts.page,
                "title": facts.title or None, "script_version": self.script_version or None,
                "protocol": self.protocol, "usable": self.usable,
                "signed_in": bool(facts.auth_cookies) and facts.account != "guest", "account": facts.account or None,
                "models_in_page": self.models_in_page, "connected_at": self.connected_at,
                "active_requests": len(self.requests)}


class TabPool:
    def __init__(self) -> None:
        self._tabs: dict[str, Tab] = {}
        self._owner: dict[str, Tab] = {}  # request id -> tab
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._tabs)

    def tabs(self) -> list[Tab]:
        return list(self._tabs.values())

    def get(self, tab_id: str) -> Tab | None:
        found = self._tabs.get(tab_id)
        return found if found is not None and found.usable else None

    def usable(self) -> list[Tab]:
        return [t for t in self._tabs.values() if t.usable]

    def best(self) -> Tab | None:
        """The tab whose page tells most about the session: a usable one, else the newest."""
        tabs = self.usable() or self.tabs()
        return max(tabs, key=lambda t: t.connected_at) if tabs else None

    def add(self, new: Tab) -> None:
        self._tabs[new.id] = new
        self.changed.set()

    def remove(self, gone: Tab, reason: str) -> None:
        if self._tabs.get(gone.id) is gone:
            del self._tabs[gone.id]
        for request_id in gone.requests.ids():
            self._owner.pop(request_id, None)
        gone.close(reason)
        self.changed.set()

    def pick(self, prefer: str | None = None) -> Tab | None:
        """``prefer`` if it is usable, else the usable tab with the fewest requests in flight."""
        if prefer is not None and (chosen := self.get(prefer)) is not None:
            return chosen
        best = None
        for candidate in self._tabs.values():
            if candidate.usable and (best is None or len(candidate.requests) < len(best.requests)):
                best = candidate
        return best

    def open(self, on: Tab, request_id: str, task: tab.Task) -> mux.Queue[Incoming]:
        queue = on.requests.open(request_id, mux.Queue())
        self._owner[request_id] = on
        on.send(tab.Run(id=request_id, task=task))
        return queue

    def deliver(self, request_id: str, message: Incoming) -> bool:
        owner = self._owner.get(request_id)
        return owner is not None and owner.requests.deliver(request_id, message) is not None

    def finish(self, request_id: str) -> None:
        owner = self._owner.pop(request_id, None)
        if owner is not None:
            owner.requests.end(request_id)

    def cancel(self, request_id: str) -> None:
        """Stop a request: the tab aborts its upstream call."""
        owner = self._owner.pop(request_id, None)
        if owner is not None and owner.requests.end(request_id) is not None:
            owner.send(tab.Cancel(id=request_id))

    def broadcast(self, message: tab.FromBridge) -> int:
        sent = 0
        for each in self._tabs.values():
            if each.protocol == tab.TAB_PROTOCOL_VERSION:
                each.send(message)
                sent += 1
        return sent
