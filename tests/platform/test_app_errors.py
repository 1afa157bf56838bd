"""The platform app's error mapping for what a peer causes (issue 11, item 10): a client that leaves
while sending is a quiet 499, and JSON nested deeper than a parser's stack is a 400, on every route."""

from __future__ import annotations

import logging

import msgspec
import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from arenahub.asgi import ClientClosed, read_body
from arenahub.platform.app import create_app
from arenahub.platform.settings import PlatformSettings


async def decode_any(request: Request) -> Response:
    msgspec.json.decode(await request.body())  # untyped, as a skipped or Any field is read
    return Response("decoded")


async def leave(request: Request) -> Response:
    raise ClientDisconnect()


async def leave_while_read(request: Request) -> Response:
    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}
    await read_body(Request(request.scope, receive), 1000)
    return Response("read")


async def our_bug(request: Request) -> Response:
    def again(n: int) -> int:
        return again(n + 1)
    return Response(str(again(0)))


@pytest.fixture
def http(tmp_path) -> TestClient:
    app = create_app(PlatformSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    app.router.routes[:0] = [Route("/t/decode", decode_any, methods=["POST"]), Route("/t/leave", leave),
                             Route("/t/leave-while-read", leave_while_read), Route("/t/bug", our_bug)]
    return TestClient(app, raise_server_exceptions=False)  # no lifespan: these routes need no platform


def test_json_deeper_than_the_parsers_stack_is_400(http: TestClient) -> None:
    resp = http.post("/t/decode", content=b"[" * 100_000 + b"]" * 100_000)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"


def test_a_recursion_bug_of_ours_is_still_a_logged_500(http: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    resp = http.get("/t/bug")
    assert resp.status_code == 500
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("path", ["/t/leave", "/t/leave-while-read"])
def test_a_client_that_leaves_is_one_info_line(http: TestClient, caplog: pytest.LogCaptureFixture, path: str) -> None:
    with caplog.at_level(logging.DEBUG):
        resp = http.get(path)
    assert resp.status_code == ClientClosed.status == 499
    assert resp.json()["error"]["code"] == "client_closed"
    mine = [r for r in caplog.records if r.name.startswith("arenahub")]
    assert [r.levelno for r in mine] == [logging.INFO]
    assert not any(r.exc_info for r in caplog.records)
