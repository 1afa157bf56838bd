"""The bridge server with a scripted tab (a plain WebSocket client standing in for the userscript)."""

import asyncio
import json

import httpx
import pytest
import uvicorn
import websockets

from arenahub.bridge.runtime import Bridge
from arenahub.bridge.server import create_app
from arenahub.client.config import disabled_client_config
from tests.e2e.harness import free_port

SESSION = "11111111-2222-4333-8444-555555555555"
MESSAGE = "66666666-7777-4888-9999-aaaaaaaaaaaa"
MODEL_ID = "0199e8e9-01ed-73e0-8ba1-5d5b0c3c6f2e"
IMAGE_ID = "0199e8e9-01ed-73e0-8ba1-5d5b0c3c6f2f"


@pytest.fixture
async def bridge(tmp_path):
    (tmp_path / "config.jsonc").write_text(json.dumps({
        "session_id": SESSION, "message_id": MESSAGE, "id_updater_last_mode": "direct_chat",
        "id_updater_battle_target": "A", "bypass_enabled": False, "stream_response_timeout_seconds": 2}))
    (tmp_path / "models.json").write_text(json.dumps({"gpt-test": MODEL_ID, "img-test": IMAGE_ID + ":image"}))
    port = free_port()
    state = Bridge(tmp_path / "config.jsonc")
    app = create_app(state, disabled_client_config(tmp_path / "config.jsonc"), port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        yield state, http, f"ws://127.0.0.1:{port}/ws"
    server.should_exit = True
    await task


class FakeTab:
    """Answers tasks with scripted upstream text, like the userscript relaying LMArena."""

    def __init__(self, url, script):
        self.url, self.script, self.tasks, self.commands = url, script, [], []

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url)
        await self.ws.send(json.dumps({"type": "hello", "version": "test", "origin": "http://sim"}))
        self.runner = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc):
        self.runner.cancel()
        await self.ws.close()

    async def run(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if "command" in msg:
                self.commands.append(msg)
                continue
            self.tasks.append(msg["payload"])
            for item in self.script:
                if item == "hang":
                    break
                await self.ws.send(json.dumps({"request_id": msg["request_id"], "data": item}))


async def wait_tabs(state, n):
    for _ in range(100):
        if len(state.tabs) == n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("tab did not connect")


def chat(model="gpt-test", stream=False, content="hello"):
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}


async def test_no_tab_is_a_clear_503(bridge):
    state, http, _ = bridge
    r = await http.post("/v1/chat/completions", json=chat())
    assert r.status_code == 503 and r.json()["error"]["code"] == "browser_not_connected"
    assert "userscript" in r.json()["error"]["message"]


async def test_models_and_unknown_model(bridge):
    state, http, _ = bridge
    r = await http.get("/v1/models")
    assert [m["id"] for m in r.json()["data"]] == ["gpt-test", "img-test"]
    r = await http.post("/v1/chat/completions", json=chat(model="nope"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


async def test_whole_answer_from_the_tab(bridge):
    state, http, url = bridge
    async with FakeTab(url, ['a0:"Hel"\n', 'a0:"lo"\nad:{"finishReason":"stop"}\n', "[DONE]"]) as tab:
        await wait_tabs(state, 1)
        r = await http.post("/v1/chat/completions", json=chat())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "Hello"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] >= 1
    task = tab.tasks[0]
    assert task["session_id"] == SESSION and task["message_id"] == MESSAGE and task["target_model_id"] == MODEL_ID
    assert state.session.session_valid is True


async def test_streamed_answer_starts_with_role_and_carries_finish_and_usage(bridge):
    state, http, url = bridge
    async with FakeTab(url, ['a0:"Hi"\n', 'ad:{"finishReason":"length"}\n', "[DONE]"]):
        await wait_tabs(state, 1)
        body = chat(stream=True)
        body["stream_options"] = {"include_usage": True}
        r = await http.post("/v1/chat/completions", json=body)
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert r.text.rstrip().endswith("data: [DONE]")
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[1]["choices"][0]["delta"] == {"content": "Hi"}
    assert events[2]["choices"][0]["finish_reason"] == "length"
    assert events[3]["usage"]["total_tokens"] >= 2


@pytest.mark.parametrize("error, status, code", [
    ({"error": "x", "status": 401, "body": '{"error":"User abc does not have access to evaluation session"}'},
     503, "lmarena_session_invalid"),
    ({"error": "x", "status": 422, "body": "Request rejected: Content violates our terms of use"},
     400, "content_policy_violation"),
    ({"error": "x", "status": 429, "body": "Too many requests"}, 429, "upstream_rate_limited"),
    ({"error": "x", "status": 403, "body": "<html><title>Just a moment...</title></html>"}, 503, "needs_verification"),
])
async def test_upstream_failures_become_named_errors_and_status(bridge, error, status, code):
    state, http, url = bridge
    async with FakeTab(url, [error]):
        await wait_tabs(state, 1)
        r = await http.post("/v1/chat/completions", json=chat())
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
        st = (await http.get("/bridge/status")).json()["lmarena"]
    if code == "lmarena_session_invalid":
        assert st["session_valid"] is False
        assert "capture-ids" in r.json()["error"]["message"]
    if code == "needs_verification":
        assert st["needs_verification"] is True
        r = await http.post("/v1/chat/completions", json=chat())  # refused at once until a tab reconnects
        assert r.status_code == 503 and r.json()["error"]["code"] == "needs_verification"


async def test_cloudflare_page_in_the_stream_asks_the_tab_to_reload(bridge):
    state, http, url = bridge
    async with FakeTab(url, ["<!DOCTYPE html><html><head><title>Just a moment...</title>", "[DONE]"]) as tab:
        await wait_tabs(state, 1)
        r = await http.post("/v1/chat/completions", json=chat())
        assert r.status_code == 503 and r.json()["error"]["code"] == "needs_verification"
        await asyncio.sleep(0.1)
        assert {"command": "refresh"} in tab.commands
    # A tab connecting again clears it.
    async with FakeTab(url, ['a0:"ok"\n', "[DONE]"]):
        await wait_tabs(state, 1)
        await asyncio.sleep(0.1)
        r = await http.post("/v1/chat/completions", json=chat())
        assert r.status_code == 200


async def test_a_tab_closing_mid_stream_ends_the_stream_with_an_error(bridge):
    state, http, url = bridge
    tab = FakeTab(url, ['a0:"par"\n', "hang"])
    await tab.__aenter__()
    await wait_tabs(state, 1)
    async with http.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as r:
        lines = []
        async for line in r.aiter_lines():
            lines.append(line)
            if '"par"' in line:
                await tab.__aexit__()
    assert any('"tab_closed"' in line for line in lines)


async def test_stream_timeout_is_named(bridge):
    state, http, url = bridge
    async with FakeTab(url, ["hang"]) as tab:
        await wait_tabs(state, 1)
        r = await http.post("/v1/chat/completions", json=chat())
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_stream_timeout"
        await asyncio.sleep(0.1)
        assert tab.commands and tab.commands[-1]["command"] == "cancel"


async def test_requests_spread_over_two_tabs(bridge):
    state, http, url = bridge
    slow = ['a0:"x"\n', "[DONE]"]
    async with FakeTab(url, slow) as t1, FakeTab(url, slow) as t2:
        await wait_tabs(state, 2)
        # Hold the tabs busy by opening requests before answering: both must be used.
        results = await asyncio.gather(*(http.post("/v1/chat/completions", json=chat()) for _ in range(6)))
    assert all(r.status_code == 200 for r in results)
    assert t1.tasks and t2.tasks


async def test_images(bridge):
    state, http, url = bridge
    async with FakeTab(url, ['a2:[{"type":"image","image":"https://img/x.png"}]\n', "[DONE]"]) as tab:
        await wait_tabs(state, 1)
        r = await http.post("/v1/images/generations", json={"prompt": "a cat", "model": "img-test"})
        assert r.status_code == 200, r.text
        assert r.json()["data"] == [{"url": "https://img/x.png"}]
        assert tab.tasks[0]["is_image_request"] is True
        r = await http.post("/v1/images/generations", json={"prompt": "a cat", "model": "gpt-test"})
        assert r.status_code == 400


async def test_malformed_input(bridge):
    state, http, _ = bridge
    r = await http.post("/v1/chat/completions", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = await http.post("/v1/images/generations", json={"prompt": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


async def test_id_capture_round_trip(bridge):
    state, http, url = bridge
    async with FakeTab(url, []) as tab:
        await wait_tabs(state, 1)
        r = await http.post("/internal/start_id_capture", json={"mode": "battle", "target": "B"})
        assert r.status_code == 200 and r.json()["armed"]
        await asyncio.sleep(0.05)
        assert {"command": "activate_id_capture"} in tab.commands
        new_s, new_m = "aaaaaaaa-2222-4333-8444-555555555555", "bbbbbbbb-7777-4888-9999-aaaaaaaaaaaa"
        await tab.ws.send(json.dumps({"type": "ids_captured", "session_id": new_s, "message_id": new_m}))
        r = await http.get("/internal/id_capture?wait=5")
    assert r.json()["captured"] and r.json()["session_id"] == new_s
    assert state.files.endpoint_for("gpt-test").session_id == new_s


async def test_tab_sockets_from_other_web_pages_are_refused(bridge):
    state, http, url = bridge
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(url, origin="https://evil.example"):
            pass
    async with websockets.connect(url, origin="https://lmarena.ai") as ws:
        await ws.send(json.dumps({"type": "hello"}))
        await wait_tabs(state, 1)
    assert len(state.tabs) <= 1
