"""Helpers of the platform tests that run the platform in process (Starlette's TestClient): serving it with
an admin token, its state and event loop, waiting for a condition, registering clients, and real client
sessions over the in-process tunnel with the consumer requests they serve."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.testclient import TestClient

from arenahub.platform.app import create_app
from arenahub.platform.settings import PlatformSettings
from arenahub.protocol import frames


@contextmanager
def serving(database_url: str, token: str, **settings: Any) -> Iterator[TestClient]:
    """The platform in process on ``database_url``, the admin token ``token`` sent by default."""
    settings.setdefault("credential_failures_per_minute", 0)  # tests offer wrong tokens on purpose, many times
    with TestClient(create_app(PlatformSettings(database_url=database_url, admin_token=token, **settings))) as http:
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def platform_of(http: TestClient) -> Any:
    return http.app.state.platform  # type: ignore[attr-defined]


def call(http: TestClient, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` (a coroutine function) on the app's event loop, where its engine lives."""
    return http.portal.call(lambda: fn(*args, **kwargs))  # type: ignore[union-attr]


def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy, and return that; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout} s")
        time.sleep(0.02)
    return result


def register(http: TestClient, name: str = "c", **body: Any) -> tuple[str, str]:
    """Register a client with the admin API: its (client_id, api_key)."""
    made = http.post("/api/admin/clients", json={"name": name, **body}).json()
    return made["client_id"], made["api_key"]


@contextmanager
def connected(http: TestClient, client_id: str, api_key: str, models: tuple[str, ...] = ("m1",),
              max_concurrent: int = 4) -> Iterator[Any]:
    """A real client session over the in-process tunnel, welcomed."""
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                 api_key=api_key, models=list(models),
                                                 max_concurrent_requests=max_concurrent)))
        assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
        yield ws


def next_request(ws: Any) -> frames.Request:
    while not isinstance(frame := frames.decode(ws.receive_bytes()), frames.Request):
        pass
    return frame


def next_cancel(ws: Any) -> frames.Cancel:
    """The next Cancel; Routing and other frames the platform may send meanwhile are skipped."""
    while not isinstance(frame := frames.decode(ws.receive_bytes()), frames.Cancel):
        pass
    return frame


def answer(ws: Any, request: frames.Request, text: str = "ok") -> None:
    ws.send_bytes(frames.encode(frames.Chunk(id=request.id, events=[[{"index": 0, "delta": {"content": text}}]])))
    ws.send_bytes(frames.encode(frames.End(id=request.id)))


def chat_in_background(http: TestClient, key: str, text: str = "hi") -> tuple[threading.Thread, dict[str, Any]]:
    """A consumer request for model m1 on a thread: join the thread, then read ``out["response"]``."""
    out: dict[str, Any] = {}

    def run() -> None:
        out["response"] = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                    json={"model": "m1", "messages": [{"role": "user", "content": text}]})
    thread = threading.Thread(target=run)
    thread.start()
    return thread, out
