"""The whole real path in a real browser: the openai package -> the bridge (a real process) ->
the userscript in headless Chromium -> the LMArena simulator; and the same through the platform."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.harness import Program, Stack, free_port, wait_until

BATTLE_SESSION = "9b1e0c55-7a43-4f0e-9d1c-3a0c2b7c5e11"


def write_bridge_files(folder: Path, sim_state: dict, extra: dict | None = None, comments: bool = True) -> Path:
    models = {m["publicName"]: m["id"] + (":image" if "image" in m["capabilities"]["outputCapabilities"] else "")
              for m in sim_state["models"]}
    (folder / "models.json").write_text(json.dumps(models, indent=2))
    config = {"session_id": sim_state["page"]["session_id"], "message_id": sim_state["page"]["message_id"],
              "id_updater_last_mode": "direct_chat", "id_updater_battle_target": "A",
              "bypass_enabled": False, "tavern_mode_enabled": False, "stream_response_timeout_seconds": 20,
              "use_default_ids_if_mapping_not_found": True, **(extra or {})}
    body = json.dumps(config, indent=2)
    text = "{\n  // LMArenaBridge settings (kept by capture-ids)\n" + body[2:] if comments else body
    path = folder / "config.jsonc"
    path.write_text(text)
    return path


class Bridge(Program):
    def __init__(self, workdir: Path, config: Path) -> None:
        self.port = free_port()
        super().__init__("bridge", ["bridge", "--config", str(config), "--port", str(self.port)], workdir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def status(self) -> dict:
        return httpx.get(self.url + "/bridge/status", timeout=5).json()

    def wait_tabs(self, n: int) -> None:
        wait_until(lambda: len(self.status()["tabs"]) == n or None, 15, f"{n} tab(s) connected")


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    yield s
    s.stop_all()


@pytest.fixture
def bridge(stack, tmp_path, lmarena_sim):
    config = write_bridge_files(tmp_path, lmarena_sim.state())
    program = Bridge(tmp_path, config)
    stack.programs.append(program)
    program.start()
    program.wait_http(program.url + "/bridge/status")
    return program


def client_for(bridge: Bridge) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_text_streaming_and_whole_through_a_real_tab(bridge, open_arena_tab, lmarena_sim):
    open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(1)
    api = client_for(bridge)
    whole = api.chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": "hello arena"}])
    assert whole.choices[0].message.content == "hello arena"
    assert whole.choices[0].finish_reason == "stop"
    pieces = []
    for chunk in api.chat.completions.create(model="gpt-5-high", stream=True, stream_options={"include_usage": True},
                                             messages=[{"role": "system", "content": "be brief"},
                                                       {"role": "user", "content": "one two three"}]):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            last = chunk
        else:
            assert chunk.usage.completion_tokens > 0
    assert "".join(pieces) == "one two three"
    assert last.choices[0].finish_reason == "stop"
    sent = lmarena_sim.stream_requests()[-1]["json"]
    assert [m["participantPosition"] for m in sent["messages"]] == ["b", "a"]  # direct_chat: system on b
    assert bridge.status()["lmarena"]["session_valid"] is True


def test_battle_mode_returns_the_target_side(stack, tmp_path, lmarena_sim, open_arena_tab):
    lmarena_sim.set_sessions([lmarena_sim.state()["page"]["session_id"], {"id": BATTLE_SESSION, "mode": "battle"}])
    state = lmarena_sim.state()
    config = write_bridge_files(tmp_path, {**state, "page": {**state["page"], "session_id": BATTLE_SESSION}},
                                {"id_updater_last_mode": "battle", "id_updater_battle_target": "B"})
    bridge = Bridge(tmp_path, config)
    stack.programs.append(bridge)
    bridge.start()
    bridge.wait_http(bridge.url + "/bridge/status")
    open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(1)
    answer = client_for(bridge).chat.completions.create(
        model="gpt-5-high", messages=[{"role": "user", "content": "battle answer"}])
    assert answer.choices[0].message.content == "battle answer"
    sent = lmarena_sim.stream_requests()[-1]["json"]
    assert sent["modelId"] is None and {m["participantPosition"] for m in sent["messages"]} == {"b"}


def test_image_model_and_attachment(bridge, open_arena_tab, lmarena_sim):
    open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(1)
    api = client_for(bridge)
    images = api.images.generate(model="imagen-4.0-generate", prompt="a red square")
    assert images.data[0].url and "/__sim/images/" in images.data[0].url
    pixel = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8"
             "AAAAASUVORK5CYII=")
    answer = api.chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": pixel}}]}])
    assert answer.choices[0].message.content == "what is this"
    attachments = lmarena_sim.stream_requests()[-1]["json"]["messages"][-1]["experimental_attachments"]
    assert attachments and attachments[0]["contentType"] == "image/png" and attachments[0]["url"] == pixel


def test_cloudflare_challenge_then_recovery(bridge, open_arena_tab, lmarena_sim):
    page = open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(1)
    lmarena_sim.script({"kind": "challenge", "status": 403})
    api = client_for(bridge)
    with pytest.raises(openai.APIStatusError) as info:
        api.chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503 and "verification" in info.value.message.lower()
    # The tab was told to reload; it comes back, and the bridge serves again.
    wait_until(lambda: not bridge.status()["lmarena"].get("needs_verification") or None, 20, "verification cleared")
    answer = api.chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": "back again"}])
    assert answer.choices[0].message.content == "back again"
    assert page.title().startswith("✅")


def test_invalid_session_recovers_after_capture_ids(stack, tmp_path, bridge, open_arena_tab, lmarena_sim):
    page = open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(1)
    # The account loses the session in the config; the page now shows a new one.
    new_session = "0f9c8e7d-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
    new_message = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
    lmarena_sim.set_sessions([new_session], page={"session_id": new_session, "message_id": new_message})
    page.reload()  # the page now shows the new conversation
    wait_until(lambda: page.title().startswith("✅") or None, 15, "the tab connected again")
    bridge.wait_tabs(1)
    api = client_for(bridge)
    with pytest.raises(openai.APIStatusError) as info:
        api.chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503 and "capture-ids" in info.value.message
    assert bridge.status()["lmarena"]["session_valid"] is False
    capture = Program("capture", ["bridge", "capture-ids", "--config", str(tmp_path / "config.jsonc"),
                                  "--bridge-url", bridge.url, "--timeout", "30"], tmp_path)
    stack.programs.append(capture)
    capture.start()
    wait_until(lambda: bridge.status()["capture"]["armed"] or None, 15, "capture armed")
    wait_until(lambda: "🎯" in page.title() or None, 10, "the tab shows capture armed")
    page.click("#retry")
    assert capture.wait_stopped(30) == 0, capture.log()
    text = (tmp_path / "config.jsonc").read_text()
    assert new_session in text and new_message in text and "// LMArenaBridge settings" in text
    answer = api.chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": "fixed now"}])
    assert answer.choices[0].message.content == "fixed now"


def test_tab_closed_mid_stream_fails_fast(bridge, open_arena_tab, lmarena_sim):
    page = open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(1)
    lmarena_sim.script({"kind": "text", "words": 40, "delay_ms": 150})
    stream = client_for(bridge).chat.completions.create(
        model="gpt-5-high", stream=True, messages=[{"role": "user", "content": "x"}])
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    page.close()
    started = time.monotonic()
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert time.monotonic() - started < 3
    assert "tab" in str(info.value).lower()


def test_two_tabs_serve_two_requests_in_parallel(bridge, open_arena_tab, lmarena_sim):
    open_arena_tab(bridge.ws_url)
    open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(2)
    lmarena_sim.script({"kind": "text", "words": 10, "delay_ms": 100}, {"kind": "text", "words": 10, "delay_ms": 100})
    import concurrent.futures
    api = client_for(bridge)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: api.chat.completions.create(
            model="gpt-5-high", messages=[{"role": "user", "content": "x"}]), range(2)))
    elapsed = time.monotonic() - started
    assert all(a.choices[0].message.content.split() == [f"w{i}" for i in range(10)] or a.choices[0].message.content
               for a in answers)
    assert elapsed < 1.8  # each answer takes ~1 s; one after the other would take ~2 s
    assert all(t["active_requests"] == 0 for t in bridge.status()["tabs"])


def test_broken_models_json_is_reported_with_file_line_and_key(tmp_path, lmarena_sim):
    write_bridge_files(tmp_path, lmarena_sim.state())
    (tmp_path / "models.json").write_text('{\n  "good": "072a7000-a5be-565f-825e-ff45572e40e0",\n  "bad": 42\n}\n')
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "arenahub", "bridge", "--config", str(tmp_path / "config.jsonc"),
                           "--port", str(free_port())], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "models.json:3" in done.stderr and "bad" in done.stderr


def bridge_on_platform(stack, tmp_path, sim, heartbeat: float):
    """A platform, and a bridge whose embedded client is registered with it; returns (platform, bridge, key, config)."""
    platform = stack.platform(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    account = stack.admin("create-client", "--name", "bridge-client", database_url=platform.database_url)
    key = stack.create_key(platform)["key"]
    config = write_bridge_files(tmp_path, sim.state(), {"platform_integration": {
        "enabled": True, "platform_url": platform.api_url, "client_id": account["client_id"],
        "api_key": account["api_key"], "heartbeat_interval_seconds": heartbeat}})
    bridge = Bridge(tmp_path, config)
    stack.programs.append(bridge)
    bridge.start()
    bridge.wait_http(bridge.url + "/health")
    return platform, bridge, key, config


def test_through_the_platform(stack, tmp_path, lmarena_sim, open_arena_tab):
    platform, bridge, key, _ = bridge_on_platform(stack, tmp_path, lmarena_sim, heartbeat=1)
    health = httpx.get(bridge.url + "/health").json()
    assert set(health) == {"enabled", "connected", "healthy", "platform_url", "client_id", "stats"}
    open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(1)
    platform.wait_health(lambda h: "gpt-5-high" in h["models"], "the bridge's models on the platform")
    api = openai.OpenAI(base_url=platform.v1, api_key=key, max_retries=0, timeout=30)
    pieces = [c.choices[0].delta.content or "" for c in api.chat.completions.create(
        model="gpt-5-high", stream=True, messages=[{"role": "user", "content": "via the platform"}]) if c.choices]
    assert "".join(pieces) == "via the platform"
    assert httpx.get(bridge.url + "/health").json()["connected"] is True


def test_platform_stops_routing_to_an_invalid_session_and_resumes(stack, tmp_path, lmarena_sim, open_arena_tab):
    platform, bridge, key, config = bridge_on_platform(stack, tmp_path, lmarena_sim, heartbeat=0.5)
    page = open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(1)
    platform.wait_health(lambda h: h["clients_available"] == 1, "the client available")
    api = openai.OpenAI(base_url=platform.v1, api_key=key, max_retries=0, timeout=30)
    # The session stops being this account's: the first request fails with the named error...
    page_ids = lmarena_sim.state()["page"]
    lmarena_sim.set_sessions(["0f9c8e7d-6b5a-4c3d-8e2f-1a0b9c8d7e6f"], page=page_ids)
    with pytest.raises(openai.APIStatusError) as info:
        api.chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    # ...and after the next heartbeat the platform routes nothing there.
    platform.wait_health(lambda h: h["clients_available"] == 0, "the client out of rotation")
    with pytest.raises(openai.APIStatusError) as info:
        api.chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503 and "unhealthy" in info.value.message
    # Capturing ids again brings it back.
    lmarena_sim.set_sessions([page_ids["session_id"]], page=page_ids)
    capture = Program("capture", ["bridge", "capture-ids", "--config", str(config), "--bridge-url", bridge.url,
                                  "--timeout", "30"], tmp_path)
    stack.programs.append(capture)
    capture.start()
    wait_until(lambda: "🎯" in page.title() or None, 15, "the tab shows capture armed")
    page.click("#retry")
    assert capture.wait_stopped(30) == 0, capture.log()
    platform.wait_health(lambda h: h["clients_available"] == 1, "the client back in rotation")
    answer = api.chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": "recovered"}])
    assert answer.choices[0].message.content == "recovered"


def test_update_models_reads_the_page(stack, tmp_path, bridge, open_arena_tab, lmarena_sim):
    open_arena_tab(bridge.ws_url)
    bridge.wait_tabs(1)
    (tmp_path / "models.json").write_text('{\n  // mine\n  "gpt-5-high": "072a7000-a5be-565f-825e-ff45572e40e0",\n}\n')
    update = Program("update", ["bridge", "update-models", "--config", str(tmp_path / "config.jsonc"),
                                "--bridge-url", bridge.url, "--write-models"], tmp_path)
    stack.programs.append(update)
    update.start()
    assert update.wait_stopped(30) == 0, update.log()
    available = json.loads((tmp_path / "available_models.json").read_text())
    expected = {m["publicName"] for m in lmarena_sim.state()["models"]}
    assert set(available) == expected
    assert available["imagen-4.0-generate"].endswith(":image")
    assert set(json.loads((tmp_path / "models.json").read_text())) == expected
    assert "not in models.json" in update.log()
