"""What the bridge tells its client about image models, and image answers as base64."""

from __future__ import annotations

import base64

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from tests.bridge.fake_tab import ok, running  # noqa: F401 (fixture)
from tests.servers import ServerThread

STOP = 'ad:{"finishReason":"stop"}'
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
                       "RU5ErkJggg==")


@pytest.fixture
def image_host():
    async def image(request):
        return Response(PNG, media_type="image/png")

    server = ServerThread(Starlette(routes=[Route("/made.png", image)])).start()
    yield server.url + "made.png"
    server.stop()


async def test_the_model_list_gives_each_model_its_type(running):
    r = await running.http.get("/v1/models")
    types = {m["id"]: m["type"] for m in r.json()["data"]}
    assert types["img-test"] == "image" and types["gpt-test"] == "chat"


@pytest.mark.bridge_config(allow_private_image_urls=True)
async def test_b64_json_is_the_image_arena_made_downloaded(running, image_host):
    async with running.tab([ok(f'a2:[{{"type":"image","image":"{image_host}"}}]', STOP)]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/images/generations",
                                    json={"prompt": "a dot", "model": "img-test", "response_format": "b64_json"})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [{"b64_json": base64.b64encode(PNG).decode()}]


async def test_b64_json_of_an_image_the_bridge_may_not_fetch_is_a_502(running, image_host):
    async with running.tab([ok(f'a2:[{{"type":"image","image":"{image_host}"}}]', STOP)]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/images/generations",
                                    json={"prompt": "a dot", "model": "img-test", "response_format": "b64_json"})
        bad = await running.http.post("/v1/images/generations",
                                      json={"prompt": "a dot", "model": "img-test", "response_format": "png"})
    assert r.status_code == 502 and r.json()["error"]["code"] == "image_download_failed"
    assert "private or local" in r.json()["error"]["message"]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_format"
