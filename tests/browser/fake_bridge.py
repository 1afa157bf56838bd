"""A fake bridge for the userscript's browser tests: a plain WebSocket server that sees exactly the
messages the script sends (``arenahub.protocol.tab``) and sends it what the real bridge would; with
the ``bridge`` and ``tab`` fixtures and small helpers for reading answers."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.sync.server import Server, ServerConnection, serve

Message = dict[str, Any]


class FakeTab:
    """One userscript connection, as the bridge sees it."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.inbox: queue.Queue[tuple[float, Message]] = queue.Queue()
        self.all: list[Message] = []
        self._stash: list[tuple[float, Message]] = []
        self.closed = threading.Event()
        self.hello: Message = {}
        self.page: Any = None

    def send(self, message: Message) -> None:
        self.conn.send(json.dumps(message))

    def _next(self, match: Callable[[Message], bool], timeout: float) -> tuple[float, Message] | None:
        for i, (_at, message) in enumerate(self._stash):
            if match(message):
                return self._stash.pop(i)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, message = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            if match(message):
                return at, message
            self._stash.append((at, message))
        return None

    def receive(self, match: Callable[[Message], bool] = lambda m: True, timeout: float = 15.0) -> Message:
        found = self._next(match, timeout)
        assert found, f"no matching message from the tab within {timeout} s; others: {[m for _, m in self._stash]}"
        return found[1]

    def expect_none(self, match: Callable[[Message], bool], seconds: float) -> None:
        found = self._next(match, seconds)
        assert found is None, f"unexpected message from the tab: {found[1] if found else None}"

    def ask(self, kind: str, answer: str, **fields: Any) -> Message:
        question = str(uuid.uuid4())
        self.send({"type": kind, "id": question, **fields})
        return self.receive(lambda m: m.get("type") == answer and m.get("id") == question, 30)

    def run(self, **task: Any) -> str:
        request_id = str(uuid.uuid4())
        self.send({"type": "run", "id": request_id, "task": {"mode": "direct", "modality": "chat", **task}})
        return request_id

    def answer(self, request_id: str, timeout: float = 30.0) -> list[Message]:
        """Every message of the request, up to ``done`` or ``failed``."""
        items: list[Message] = []
        while True:
            found = self._next(lambda m: m.get("id") == request_id, timeout)
            assert found, f"request {request_id} did not end within {timeout} s: {items}"
            items.append(found[1])
            if found[1]["type"] in ("done", "failed"):
                return items


class FakeBridge:
    """A WebSocket server on a loopback port that hands each userscript connection to the test."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.tabs: queue.Queue[FakeTab] = queue.Queue()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> FakeBridge:
        sock = socket.create_server(("127.0.0.1", self.port))
        self._server = serve(self._handle, sock=sock, max_size=64 * 1024 * 1024, compression=None)
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-bridge")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            assert self._thread is not None
            self._thread.join(10)
            self._server = None

    def _handle(self, conn: ServerConnection) -> None:
        tab = FakeTab(conn)
        self.tabs.put(tab)
        try:
            for frame in conn:
                message = json.loads(frame)
                tab.all.append(message)
                tab.inbox.put((time.monotonic(), message))
        finally:
            tab.closed.set()

    def next_tab(self, timeout: float = 15.0) -> FakeTab:
        """The next tab to connect, once it said hello."""
        try:
            tab = self.tabs.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no tab connected within {timeout} s") from None
        tab.hello = tab.receive(lambda m: m.get("type") == "hello")
        return tab


@pytest.fixture
def bridge() -> Iterator[FakeBridge]:
    server = FakeBridge().start()
    yield server
    server.stop()


@pytest.fixture
def tab(bridge, open_arena_tab) -> FakeTab:
    """One page on https://arena.ai running the userscript, connected to the fake bridge (``tab.page``)."""
    page = open_arena_tab(bridge.url)
    fake = bridge.next_tab()
    fake.page = page
    return fake


def model(sim, name: str = "gpt-5-high") -> str:
    return next(m["id"] for m in sim.state()["models"] if m["publicName"] == name)


def text_of(items: list[Message], side: str = "a") -> str:
    assert items[-1]["type"] == "done", items[-1]
    raw = "".join(m["data"] for m in items if m["type"] == "chunk")
    return "".join(json.loads(line[3:]) for line in raw.splitlines() if line.startswith(f"{side}0:"))


def wait_title(page, prefix: str) -> str:
    page.wait_for_function("p => document.title.startsWith(p)", arg=prefix, timeout=15_000)
    return str(page.title())


def uuid7_ms(value: str) -> int:
    parsed = uuid.UUID(value)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122, value
    return int(value.replace("-", "")[:12], 16)
