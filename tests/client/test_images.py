"""The client's side of image requests: which capabilities it declares, how it relays an image request to
its bridge and sends the answer back in frame-sized events, and how it checks the request."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import aiohttp
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from arenahub.client import relay as relay_module
from arenahub.client.capabilities import announced
from arenahub.client.relay import BridgeRelay, RelayError
from arenahub.client.validation import rejection
from arenahub.protocol import frames
from arenahub.protocol.images import MAX_URL_CHARS, PIECE_CHARS, image_events
from tests.servers import ServerThread

BIG = base64.b64encode(bytes(range(256)) * 2000).decode()  # more than two pieces


@pytest.mark.parametrize("configured, image_models, declared", [
    (("chat", "models", "images"), {"img"}, ["chat", "models", "images"]),
    (("chat", "models", "images"), set(), ["chat", "models"]),  # the bridge serves no image model
    (("chat", "models", "images"), None, ["chat", "models", "images"]),  # it cannot tell: the config decides
    (("chat", "models"), {"img"}, ["chat", "models"]),  # the owner did not offer images
])
def test_images_is_declared_only_when_the_bridge_serves_an_image_model(configured, image_models, declared):
    assert announced(configured, image_models) == declared


def fake_bridge(typed: bool = True) -> Starlette:
    seen: list[dict] = []

    async def models(request: Request) -> JSONResponse:
        data = [{"id": "chatty", "object": "model"}, {"id": "painter", "object": "model"}]
        if typed:
            data[0]["type"], data[1]["type"] = "chat", "image"
        return JSONResponse({"object": "list", "data": data})

    async def images(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body)
        if body["prompt"] == "refuse":
            return JSONResponse({"error": {"message": "not an image model", "code": "invalid_request"}},
                                status_code=400)
        if body.get("response_format") == "b64_json":
            return JSONResponse({"created": 1, "data": [{"b64_json": BIG, "revised_prompt": "better"}]})
        return JSONResponse({"created": 1, "data": [{"url": f"https://img.example/{i}.png"} for i in range(body["n"])]})

    app = Starlette(routes=[Route("/v1/models", models), Route("/v1/images/generations", images, methods=["POST"])])
    app.state.seen = seen
    return app


@pytest.fixture
def bridge() -> Iterator[ServerThread]:
    server = ServerThread(fake_bridge()).start()
    yield server
    server.stop()


async def relayed(relay: BridgeRelay, body: dict) -> list[list[dict]]:
    return [event for events, usage in [item async for item in relay.images(msgspec.json.encode(body))]
            for event in events]


async def test_the_relay_reads_which_models_make_images(bridge) -> None:
    async with aiohttp.ClientSession() as http:
        assert await BridgeRelay(http, bridge.url).model_list() == (["chatty", "painter"], {"painter"})
    untyped = ServerThread(fake_bridge(typed=False)).start()
    try:
        async with aiohttp.ClientSession() as http:
            assert await BridgeRelay(http, untyped.url).model_list() == (["chatty", "painter"], None)
    finally:
        untyped.stop()


async def test_urls_go_back_one_event_each(bridge) -> None:
    async with aiohttp.ClientSession() as http:
        events = await relayed(BridgeRelay(http, bridge.url), {"model": "painter", "prompt": "cat", "n": 2})
    assert events == [[{"index": 0, "url": "https://img.example/0.png"}],
                      [{"index": 1, "url": "https://img.example/1.png"}]]
    assert bridge.server.config.app.state.seen[-1] == {"model": "painter", "prompt": "cat", "n": 2}


async def test_base64_goes_back_in_pieces_that_fit_a_frame(bridge) -> None:
    async with aiohttp.ClientSession() as http:
        events = await relayed(BridgeRelay(http, bridge.url),
                               {"model": "painter", "prompt": "cat", "response_format": "b64_json"})
    assert len(events) == -(-len(BIG) // PIECE_CHARS) > 1
    assert events[0][0]["revised_prompt"] == "better" and "revised_prompt" not in events[1][0]
    assert "".join(e[0]["b64_json"] for e in events) == BIG and {e[0]["index"] for e in events} == {0}
    assert all(len(frames.encode(frames.Chunk(id="r" * 32, events=[e]))) < frames.MAX_FRAME_BYTES // 2
               for e in events)


async def test_a_refusal_and_an_answer_too_large_are_relay_errors(bridge, monkeypatch) -> None:
    async with aiohttp.ClientSession() as http:
        relay = BridgeRelay(http, bridge.url)
        with pytest.raises(RelayError) as refused:
            await relayed(relay, {"model": "chatty", "prompt": "refuse"})
        assert (refused.value.status, refused.value.code) == (400, "invalid_request")
        monkeypatch.setattr(relay_module, "MAX_ANSWER_CHARS", 1000)
        with pytest.raises(RelayError) as large:
            await relayed(relay, {"model": "painter", "prompt": "cat", "response_format": "b64_json"})
        assert large.value.code == "image_answer_too_large"


def test_events_leave_out_what_the_platform_would_not_take() -> None:
    data = [{"url": "https://img.example/a.png"}, {"url": "data:image/png;base64," + "A" * MAX_URL_CHARS},
            {"b64_json": "AAAA"}, {"url": 5}, "junk", {"url": "https://img.example/b.png", "revised_prompt": "b"}]
    assert image_events(data, "url") == [[{"index": 0, "url": "https://img.example/a.png"}],
                                         [{"index": 1, "url": "https://img.example/b.png", "revised_prompt": "b"}]]
    assert image_events(data, "b64_json") == [[{"index": 0, "b64_json": "AAAA"}]]
    assert image_events({"not": "a list"}, "url") == []


def test_an_image_request_is_checked_as_one() -> None:
    def request(body: dict) -> frames.Request:
        return frames.Request(id="r1", body=msgspec.Raw(msgspec.json.encode(body)), kind=frames.IMAGES)

    assert rejection(request({"model": "painter", "prompt": "cat", "n": 2})) is None
    refused = rejection(request({"model": "painter", "prompt": "cat", "n": 0}))
    assert refused is not None and refused.status == 400 and "n" in refused.message
    # A chat body is not an image request (and the other way round).
    assert rejection(request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})) is not None
