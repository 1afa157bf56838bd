"""The whole real path in a real browser: the openai package -> the bridge (a real process) ->
the userscript in headless Chromium on https://arena.ai -> the arena.ai simulator; and the same
through the platform. Every named failure a person must act on, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.harness import Program, Stack, free_port, wait_until

ADMIN_TOKEN = "bridge-path-admin-token-0123456789"
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8"
         "AAAAASUVORK5CYII=")


def write_bridge_files(folder: Path, extra: dict | None = None) -> Path:
    """A config.jsonc as a person writes it (comments included); models.json comes from update-models."""
    config = {"stream_response_timeout_seconds": 20, **(extra or {})}
    body = json.dumps(config, indent=2)
    (folder / "config.jsonc").write_text("{\n  // the bridge's settings\n" + body[2:])
    return folder / "config.jsonc"


class Bridge(Program):
    def __init__(self, workdir: Path, config: Path) -> None:
        self.port = free_port()
        self.config = config
        super().__init__("bridge", ["bridge", "--config", str(config), "--port", str(self.port)], workdir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def status(self) -> dict:
        return httpx.get(self.url + "/bridge/status", timeout=5).json()

    def wait_ready(self, n: int = 1) -> None:
        """``n`` usable tabs, checked (their page's models counted)."""
        wait_until(lambda: sum(1 for t in self.status()["tabs"] if t["usable"] and t["models_in_page"]) == n or None,
                   20, f"{n} checked tab(s)")

    def wait_state(self, state: str) -> dict:
        return wait_until(lambda: (s := self.status())["state"] == state and s or None, 20, f"state {state}")

    def command(self, stack: Stack, *args: str, timeout: float = 60) -> tuple[int, str]:
        program = Program(f"cli-{args[0]}", ["bridge", *args, "--config", str(self.config), "--bridge-url", self.url],
                          self.config.parent)
        stack.programs.append(program)
        program.start()
        code = program.wait_stopped(timeout)
        return code, program.log()


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    yield s
    s.stop_all()


def start_bridge(stack, tmp_path, extra=None) -> Bridge:
    program = Bridge(tmp_path, write_bridge_files(tmp_path, extra))
    stack.programs.append(program)
    program.start()
    program.wait_http(program.url + "/bridge/status")
    return program


@pytest.fixture
def bridge(stack, tmp_path, lmarena_sim) -> Bridge:
    return start_bridge(stack, tmp_path)


def ready(stack, bridge, open_arena_tab):
    """A tab on arena.ai connected and checked, and models.json read from its page."""
    page = open_arena_tab(bridge.ws_url)
    bridge.wait_ready()
    assert not (bridge.config.parent / "models.json").exists()
    code, log = bridge.command(stack, "update-models", "--write-models")
    assert code == 0, log
    # The running bridge serves them once the command returns, and the command, which writes the missing
    # models.json, does not tell the user to run itself.
    served = bridge.status()["models"]
    assert served > 0 and f"serves {served} model(s) now" in log, log
    assert "missing" not in log and "run `arenahub bridge update-models" not in log, log
    return page


def client_for(bridge: Bridge) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def ask(api, content="hi", **kw):
    messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
    return api.chat.completions.create(model=kw.pop("model", "gpt-5-high"), messages=messages, **kw)


def test_from_scratch_models_doctor_and_answers(stack, bridge, open_arena_tab, lmarena_sim):
    ready(stack, bridge, open_arena_tab)
    models = json.loads((bridge.config.parent / "models.json").read_text())
    assert set(models) == {"gpt-5-high", "claude-opus-4-1", "gemini-2.5-pro", "gemini-2.5-pro-grounding",
                           "imagen-4.0-generate"}
    assert models["imagen-4.0-generate"].endswith(":image") and models["gemini-2.5-pro-grounding"].endswith(":search")
    code, log = bridge.command(stack, "doctor")
    assert code == 0, log
    assert "[ok  ] recaptcha" in log and "[ok  ] uploads" in log and "[ok  ] call" in log
    api = client_for(bridge)
    whole = ask(api, "hello arena")
    assert whole.choices[0].message.content == "hello arena" and whole.choices[0].finish_reason == "stop"
    lmarena_sim.script({"kind": "text", "text": "one two three", "reasoning": "thinking first"})
    pieces, reasoning = [], []
    for chunk in ask(api, "x", stream=True, stream_options={"include_usage": True}):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            reasoning.append((chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or "")
        else:
            assert chunk.usage.completion_tokens > 0
    assert "".join(pieces) == "one two three" and "".join(reasoning) == "thinking first"
    status = bridge.status()
    assert status["state"] == "ready" and all(c["ok"] for c in status["checks"])


def test_a_conversation_is_flattened_once_then_followed_up(stack, bridge, open_arena_tab, lmarena_sim):
    ready(stack, bridge, open_arena_tab)
    api = client_for(bridge)
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    first = ask(api, history).choices[0].message.content
    (create,) = lmarena_sim.requests("create")
    sent = create["json"]["userMessage"]["content"]
    assert sent.startswith("[The conversation so far") and sent.endswith("<user>\nWhat is 2+2?\n</user>")
    assert first == sent  # the simulator echoes what it got
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "And 3+3?"}]
    assert ask(api, history).choices[0].message.content == "And 3+3?"
    (follow,) = lmarena_sim.requests("follow_up")
    assert follow["status"] == 200 and follow["json"]["userMessage"]["content"] == "And 3+3?"
    assert follow["path"].endswith(create["json"]["id"])


def test_search_images_and_battle(stack, tmp_path, lmarena_sim, open_arena_tab):
    bridge = start_bridge(stack, tmp_path)
    ready(stack, bridge, open_arena_tab)
    api = client_for(bridge)
    images = api.images.generate(model="imagen-4.0-generate", prompt="a red square")
    assert images.data[0].url and "/__sim/images/" in images.data[0].url
    answer = ask(api, [{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": PIXEL}}]}],
        model="claude-opus-4-1")
    assert answer.choices[0].message.content == "what is this\n\n[image 1]"
    files = lmarena_sim.requests("create")[-1]["json"]["userMessage"]["experimental_attachments"]
    assert len(files) == 1 and files[0]["contentType"] == "image/png" and "/__storage/" in files[0]["url"]
    searched = ask(api, "news", model="gemini-2.5-pro-grounding").choices[0].message
    assert searched.content == "news" and len(searched.annotations) == 2
    assert all(a.type == "url_citation" and a.url_citation.url.startswith("http") for a in searched.annotations)
    assert lmarena_sim.requests("create")[-1]["json"]["modality"] == "search"


@pytest.mark.parametrize("target, expected", [("A", "battle answer"), ("B", "B: battle answer")])
def test_battle_mode_returns_the_target_side(stack, tmp_path, lmarena_sim, open_arena_tab, target, expected):
    bridge = start_bridge(stack, tmp_path, {"arena_mode": "battle", "id_updater_battle_target": target})
    ready(stack, bridge, open_arena_tab)
    assert ask(client_for(bridge), "battle answer").choices[0].message.content == expected
    assert lmarena_sim.requests("create")[-1]["json"]["mode"] == "battle"


def test_verification_required_until_a_person_sends_a_message_in_the_tab(stack, bridge, open_arena_tab, lmarena_sim):
    page = ready(stack, bridge, open_arena_tab)
    api = client_for(bridge)
    lmarena_sim.control("recaptcha", {"fail_next": 2})  # the call and its one retry with a new token
    with pytest.raises(openai.APIStatusError) as info:
        ask(api)
    assert info.value.status_code == 503 and info.value.code == "verification_required"
    status = bridge.wait_state("verification_required")
    assert "send one message by hand" in status["action"] and status["lmarena"]["needs_verification"]
    calls = len(lmarena_sim.requests("create"))
    with pytest.raises(openai.APIStatusError):
        ask(api)  # refused at once: no call upstream, and the page is not reloaded
    assert len(lmarena_sim.requests("create")) == calls
    assert page.evaluate("window.__arenahubBridge.state") == "connected"
    page.fill("#prompt", "I am a person")
    page.click("#send")
    bridge.wait_state("ready")
    assert ask(api, "after").choices[0].message.content == "after"


def test_signed_out_then_signed_in_again(stack, bridge, open_arena_tab, lmarena_sim):
    page = ready(stack, bridge, open_arena_tab)
    lmarena_sim.control("auth", {"revoke": True, "auto_sign_in": "none"})
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(bridge))
    assert info.value.code == "arena_signed_out" and "Sign in at arena.ai" in info.value.message
    assert bridge.wait_state("signed_out")["lmarena"]["session_valid"] is False
    page.click("#sign-in")  # signs in and reloads: the tab connects again, signed in
    bridge.wait_state("ready")
    assert ask(client_for(bridge), "back").choices[0].message.content == "back"


def test_cloudflare_check_is_cleared_by_the_browser_after_one_reload(stack, bridge, open_arena_tab, lmarena_sim):
    page = ready(stack, bridge, open_arena_tab)
    lmarena_sim.script({"kind": "challenge"})
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(bridge))
    assert info.value.code == "needs_verification"
    wait_until(lambda: bridge.status()["state"] == "ready" or None, 20, "the reloaded tab")
    assert ask(client_for(bridge), "again").choices[0].message.content == "again" and page.title().startswith("✅")


def test_cloudflare_block_needs_a_person(stack, bridge, open_arena_tab, lmarena_sim):
    ready(stack, bridge, open_arena_tab)
    lmarena_sim.script({"kind": "block"})
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(bridge))
    assert info.value.code == "cloudflare_blocked" and "another network" in info.value.message
    assert "another network" in bridge.wait_state("blocked")["action"]


@pytest.mark.parametrize("outcome, status, code", [
    ({"kind": "schema", "path": ["userMessage", "metadata"], "message": "Expected object, received null"}, 502,
     "upstream_schema_error"),
    ({"kind": "html"}, 502, "unexpected_upstream_answer"),
    ({"kind": "status", "status": 422}, 400, "content_policy_violation"),
    ({"kind": "text", "words": 3, "finish": "error"}, 502, "lmarena_error"),
    ({"kind": "error", "message": "model overloaded", "after_words": 2}, 502, "lmarena_error"),
])
def test_failures_of_the_site_are_named(stack, bridge, open_arena_tab, lmarena_sim, outcome, status, code):
    ready(stack, bridge, open_arena_tab)
    lmarena_sim.script(outcome)
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(bridge))
    assert info.value.status_code == status and info.value.code == code
    if code == "upstream_schema_error":
        assert "userMessage.metadata" in info.value.message


def test_a_clock_an_hour_off_is_named(stack, bridge, open_arena_tab, lmarena_sim):
    page = ready(stack, bridge, open_arena_tab)
    page.clock.install(time=time.time() + 2 * 3600)  # the page's Date.now: two hours ahead
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(bridge))
    assert info.value.code == "clock_skew" and "clock" in info.value.message
    assert bridge.wait_state("clock_skew")["action"]


def test_tab_closed_mid_stream_fails_fast(stack, bridge, open_arena_tab, lmarena_sim):
    page = ready(stack, bridge, open_arena_tab)
    lmarena_sim.script({"kind": "text", "words": 40, "delay_ms": 150})
    stream = ask(client_for(bridge), "x", stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    page.close()
    started = time.monotonic()
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert time.monotonic() - started < 3 and "tab" in str(info.value).lower()
    wait_until(lambda: (c := lmarena_sim.requests("create")) and c[-1]["stream"] == "aborted" or None, 10,
               "the upstream call stopped")


def test_legacy_mode_with_capture_ids(stack, tmp_path, lmarena_sim, open_arena_tab):
    bridge = start_bridge(stack, tmp_path, {"upstream_api": "legacy-retry"})
    page = ready(stack, bridge, open_arena_tab)
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(bridge))
    assert info.value.code == "session_not_captured"
    capture = Program("capture", ["bridge", "capture-ids", "--config", str(bridge.config), "--bridge-url", bridge.url,
                                  "--timeout", "30"], tmp_path)
    stack.programs.append(capture)
    capture.start()
    wait_until(lambda: "🎯" in page.title() or None, 15, "the tab shows capture armed")
    page.click("#retry")
    assert capture.wait_stopped(30) == 0, capture.log()
    text = bridge.config.read_text()
    state = lmarena_sim.state()["page"]
    assert state["session_id"] in text and "// the bridge's settings" in text
    assert ask(client_for(bridge), "legacy works").choices[0].message.content == "legacy works"
    (retry,) = [r for r in lmarena_sim.requests("retry") if r["status"] == 200 and r["json"]["messages"][-1]
                ["content"] == "legacy works"]
    assert retry["path"].endswith(f"/{state['session_id']}/messages/{state['message_id']}")
    lmarena_sim.control("feedback", {"session_id": state["session_id"], "message_id": state["message_id"],
                                     "has_feedback": True})
    with pytest.raises(openai.APIStatusError) as info:
        ask(client_for(bridge))
    assert info.value.code == "message_has_feedback"


def test_broken_models_json_is_reported_with_file_line_and_key(tmp_path):
    write_bridge_files(tmp_path)
    (tmp_path / "models.json").write_text('{\n  "good": "072a7000-a5be-765f-825e-ff45572e40e0",\n  "bad": 42\n}\n')
    done = subprocess.run([sys.executable, "-m", "arenahub", "bridge", "--config", str(tmp_path / "config.jsonc"),
                           "--port", str(free_port())], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "models.json:3" in done.stderr and "bad" in done.stderr


# --- Through the platform ----------------------------------------------------------------------

def bridge_on_platform(stack, tmp_path, heartbeat: float):
    """A platform, and a bridge whose embedded client is registered with it; returns (platform, bridge, key)."""
    platform = stack.platform(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", env={"ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN})
    account = stack.admin("create-client", "--name", "bridge-client", database_url=platform.database_url)
    key = stack.create_key(platform)["key"]
    bridge = start_bridge(stack, tmp_path, {"platform_integration": {
        "enabled": True, "platform_url": platform.api_url, "client_id": account["client_id"],
        "api_key": account["api_key"], "heartbeat_interval_seconds": heartbeat}})
    bridge.wait_http(bridge.url + "/health")
    return platform, bridge, key, account["client_id"]


def test_through_the_platform_a_429_and_a_person_needed(stack, tmp_path, lmarena_sim, open_arena_tab):
    platform, bridge, key, client_id = bridge_on_platform(stack, tmp_path, heartbeat=0.5)
    page = ready(stack, bridge, open_arena_tab)
    platform.wait_health(lambda h: "gpt-5-high" in h["models"], "the bridge's models on the platform")
    api = openai.OpenAI(base_url=platform.v1, api_key=key, max_retries=0, timeout=30)
    pieces = [c.choices[0].delta.content or "" for c in ask(api, "via the platform", stream=True) if c.choices]
    assert "".join(pieces) == "via the platform"
    # arena.ai rate limits the account: the consumer gets 429 with its Retry-After, and the next request
    # is answered at once, without reaching the site.
    lmarena_sim.script({"kind": "status", "status": 429, "retry_after": 3})
    with pytest.raises(openai.RateLimitError) as info:
        ask(api)
    assert info.value.response.headers["retry-after"] == "3"
    calls = len(lmarena_sim.requests("create"))
    with pytest.raises(openai.RateLimitError) as info:
        ask(api)
    assert info.value.code == "upstream_rate_limited" and len(lmarena_sim.requests("create")) == calls
    time.sleep(3.2)
    assert ask(api, "after the wait").choices[0].message.content == "after the wait"
    # reCAPTCHA wants a person: the platform routes around the client; its status says what to do.
    lmarena_sim.control("recaptcha", {"fail_next": 2})
    with pytest.raises(openai.APIStatusError) as info:
        ask(api)
    assert info.value.status_code == 503
    platform.wait_health(lambda h: h["clients_available"] == 0, "the client out of rotation")
    local = httpx.get(bridge.url + "/platform/status").json()["bridge"]
    assert local["state"] == "verification_required" and "Security Verification" in local["action"]
    admin = httpx.get(f"{platform.url}/api/admin/clients/{client_id}", timeout=5,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert admin["live"]["session"]["state"] == "verification_required"
    assert "Security Verification" in admin["live"]["session"]["action"]
    page.fill("#prompt", "a person")
    page.click("#send")
    platform.wait_health(lambda h: h["clients_available"] == 1, "the client back in rotation")
    assert ask(api, "recovered").choices[0].message.content == "recovered"
