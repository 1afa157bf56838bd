"""A scripted tab for the bridge server's tests: a WebSocket client speaking the tab protocol
(``arenahub.protocol.tab``) the way the userscript does, without a browser.

``FakeTab(url, answers)``: each ``run`` takes the next answer from ``answers`` (``ok(...)``,
``fail(...)``, ``HANG``) and replays it; ``diagnose`` and ``page_models`` are answered from
``facts`` and ``flight``. Everything the bridge sent is kept in ``received``.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from arenahub.bridge.runtime import Bridge
from arenahub.bridge.server import create_app
from arenahub.client.config import disabled_client_config
from tests.e2e.harness import free_port

HANG = "hang"
MODEL_ID = "0199e8e9-01ed-73e0-8ba1-5d5b0c3c6f2e"
IMAGE_ID = "0199e8e9-01ed-73e0-8ba1-5d5b0c3c6f2f"
SESSION = "11111111-2222-4333-8444-555555555555"
MESSAGE = "66666666-7777-4888-9999-aaaaaaaaaaaa"
ARENA_FACTS = {"origin": "https://arena.ai", "page": "arena", "title": "Arena AI",
               "auth_cookies": ["arena-auth-prod-v1.0", "arena-auth-prod-v1.1"], "sitekey_found": True,
               "sitekey_hint": "6LeTGM", "grecaptcha": True}
FLIGHT = '8:["$","$L9",null,' + json.dumps({"initialModels": [
    {"id": MODEL_ID, "publicName": "gpt-test", "displayName": "GPT Test", "userSelectable": True,
     "capabilities": {"outputCapabilities": {"text": True}}},
    {"id": IMAGE_ID, "publicName": "img-test", "displayName": "Img", "userSelectable": True,
     "capabilities": {"outputCapabilities": {"image": {}}}},
    {"id": "0199e8e9-01ed-73e0-8ba1-5d5b0c3c6f30", "publicName": "hidden", "userSelectable": False,
     "capabilities": {"outputCapabilities": {"text": True}}}]}) + "]\n"


def ok(*lines: str, content_type: str = "text/plain; charset=utf-8", evaluation_id: str | None = None,
       chunked: bool = False) -> dict[str, Any]:
    """A 200 answer made of ``lines`` (one chunk, or one per line with ``chunked``)."""
    body = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return {"ok": True, "chunks": [line + "\n" for line in lines] if chunked else [body],
            "content_type": content_type, "evaluation_id": evaluation_id}


def fail(stage: str = "upstream", status: int | None = None, body: str | None = None, message: str = "failed",
         retry_after: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "failed", "stage": stage, "message": message}
    if status is not None:
        out["status"] = status
    if body is not None:
        out["body"] = body
    if retry_after is not None:
        out["retry_after"] = retry_after
    return out


class FakeTab:
    def __init__(self, url: str, answers: list[Any] | None = None, *, facts: dict[str, Any] | None = None,
                 protocol: int = 2, flight: str = FLIGHT, hello: dict[str, Any] | None = None,
                 origin: str | None = "https://arena.ai") -> None:
        self.url, self.answers = url, deque(answers or [])
        self.facts = {**ARENA_FACTS, **(facts or {})}
        self.protocol, self.flight, self.hello, self.origin = protocol, flight, hello, origin
        self.received: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.evaluations = 0

    async def __aenter__(self) -> FakeTab:
        self.ws = await websockets.connect(self.url, origin=self.origin, max_size=None)  # type: ignore[arg-type]
        hello = self.hello or {"type": "hello", "script_version": "test", "protocol": self.protocol,
                               "facts": self.facts}
        await self.ws.send(json.dumps(hello))
        self.runner = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.runner.cancel()
        await self.ws.close()

    def sent(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def _run(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            self.received.append(msg)
            kind = msg.get("type")
            if kind == "diagnose":
                await self.send({"type": "diagnosis", "id": msg["id"], "facts": {**self.facts, "upload_actions": True}})
            elif kind == "page_models":
                await self.send({"type": "flight", "id": msg["id"], "text": self.flight})
            elif kind == "run":
                self.tasks.append(msg["task"])
                asyncio.create_task(self._answer(msg["id"], msg["task"]))

    async def _answer(self, request_id: str, task: dict[str, Any]) -> None:
        answer = self.answers.popleft() if self.answers else ok('a0:"ok"', 'ad:{"finishReason":"stop"}')
        if answer == HANG:
            return
        if answer.get("type") == "failed":
            await self.send({**answer, "id": request_id})
            return
        self.evaluations += 1
        evaluation = answer["evaluation_id"] or (task.get("evaluation_id") if task["call"] == "follow_up"
                                                 else f"0199ffff-0000-7000-8000-{self.evaluations:012d}")
        await self.send({"type": "started", "id": request_id, "status": 200, "content_type": answer["content_type"],
                         "evaluation_id": evaluation})
        for chunk in answer["chunks"]:
            if chunk == HANG:
                return
            await self.send({"type": "chunk", "id": request_id, "data": chunk})
        await self.send({"type": "done", "id": request_id})


async def until(condition: Any, what: str, seconds: float = 5.0) -> Any:
    for _ in range(int(seconds / 0.02)):
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def write_files(folder: Any, **config: Any) -> Any:
    base = {"stream_response_timeout_seconds": 3, "session_id": SESSION, "message_id": MESSAGE}
    (folder / "config.jsonc").write_text(json.dumps({**base, **config}))
    (folder / "models.json").write_text(json.dumps({"gpt-test": MODEL_ID, "img-test": IMAGE_ID + ":image"}))
    return folder / "config.jsonc"


class Running:
    """A bridge served by uvicorn in this event loop, with an HTTP client and its tab socket URL."""

    def __init__(self, state: Bridge, http: httpx.AsyncClient, ws_url: str) -> None:
        self.state, self.http, self.ws_url = state, http, ws_url

    def tab(self, answers: list[Any] | None = None, **kw: Any) -> FakeTab:
        return FakeTab(self.ws_url, answers, **kw)

    async def ready(self, tab: FakeTab) -> FakeTab:
        """Wait until the bridge has checked ``tab`` (it answers diagnose and page_models at once)."""
        # Checked: its page models counted (the last step), or an old userscript (never checked further).
        await until(lambda: any(t.models_in_page for t in self.state.tabs.tabs()) or
                    any(t.protocol not in (0, 2) for t in self.state.tabs.tabs()), "the tab's checks")
        return tab

    async def status(self) -> dict[str, Any]:
        return (await self.http.get("/bridge/status")).json()  # type: ignore[no-any-return]


async def serve(config_path: Any) -> Any:
    port = free_port()
    state = Bridge(config_path)
    app = create_app(state, disabled_client_config(config_path), port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15)
    return Running(state, http, f"ws://127.0.0.1:{port}/ws"), server, task, http


@pytest.fixture
async def running(tmp_path: Any, request: pytest.FixtureRequest) -> Any:
    """The bridge with config.jsonc (plus ``@pytest.mark.bridge_config(key=value)``) and models.json."""
    marker = request.node.get_closest_marker("bridge_config")
    config = write_files(tmp_path, **(marker.kwargs if marker else {}))
    bridge, server, task, http = await serve(config)
    yield bridge
    await http.aclose()
    server.should_exit = True
    await task


def chat(model: str = "gpt-test", stream: bool = False, content: Any = "hello",
         messages: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": messages or [{"role": "user", "content": content}], **extra}
