"""The userscript in real headless chromium, on https://arena.ai (the simulator), talking to a fake bridge.

The fake bridge is a plain WebSocket server: it sees exactly the messages the script sends
(``arenahub.protocol.tab``) and sends it what the real bridge would. The simulator records the
upstream calls and refuses what the real site refuses.
"""

from __future__ import annotations

import base64
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

from arenahub.bridge.lmarena import page_models

Message = dict[str, Any]
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001a5f645400000000049454e44ae426082")).decode()


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


# --- Connecting, and what the page shows -----------------------------------------------------------

def test_hello_says_what_the_page_has_and_the_title_shows_the_state(tab, lmarena_sim):
    hello = tab.hello
    state = lmarena_sim.state()
    assert hello["protocol"] == 2 and hello["script_version"]
    facts = hello["facts"]
    assert facts["origin"] == "https://arena.ai" and facts["page"] == "arena"
    assert set(facts["auth_cookies"]) == {"arena-auth-prod-v1.0", "arena-auth-prod-v1.1"}
    assert facts["sitekey_found"] and facts["sitekey_hint"] == state["site_key"][:6]
    assert "site_key" not in json.dumps(hello) and state["site_key"] not in json.dumps(hello)
    assert wait_title(tab.page, "✅ ") == "✅ Arena AI (simulated)"


def test_diagnose_finds_recaptcha_and_the_upload_actions_in_the_pages_scripts(tab):
    facts = tab.ask("diagnose", "diagnosis")["facts"]
    assert facts["grecaptcha"] is True and facts["upload_actions"] is True and facts["page"] == "arena"


def test_page_models_sends_the_flight_data_with_initial_models(tab, lmarena_sim):
    flight = tab.ask("page_models", "flight")
    assert flight["source"] == "flight"
    found = {m.name: m for m in page_models(flight["text"])}
    assert set(found) == {m["publicName"] for m in lmarena_sim.state()["models"]}
    assert found["internal-test-model"].selectable is False and found["veo-3"].kind is None
    assert found["imagen-4.0-generate"].kind == "image" and found["gemini-2.5-pro-grounding"].kind == "search"


def test_lmarena_ai_redirects_to_arena_ai_and_the_tab_connects_there(bridge, open_arena_tab):
    page = open_arena_tab(bridge.url, path="/")
    bridge.next_tab()
    page.goto("https://lmarena.ai/text/direct")
    again = bridge.next_tab()
    assert page.url == "https://arena.ai/text/direct" and again.hello["facts"]["origin"] == "https://arena.ai"


def test_without_a_bridge_the_title_says_disconnected(open_arena_tab):
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    page = open_arena_tab(f"ws://127.0.0.1:{port}/ws")
    assert wait_title(page, "🔴 ") == "🔴 Arena AI (simulated)"
    assert page.evaluate("window.__arenahubBridge.state") == "disconnected"


# --- A new conversation, a follow-up, the legacy retry ------------------------------------------

def test_create_makes_exactly_the_call_the_site_takes(tab, lmarena_sim):
    started = time.time() * 1000
    request_id = tab.run(call="create", model_a_id=model(lmarena_sim), content="Say  something, twice?")
    items = tab.answer(request_id)
    assert items[0]["type"] == "started" and items[0]["status"] == 200
    assert items[0]["content_type"].startswith("text/plain")
    assert text_of(items) == "Say  something, twice?"
    raw = "".join(m["data"] for m in items if m["type"] == "chunk")
    assert raw.startswith('af:{"messageId":') and '"usage":{"promptTokens"' in raw
    (call,) = lmarena_sim.requests("create")
    body = call["json"]
    assert call["status"] == 200 and call["error"] is None and call["method"] == "POST"
    assert call["headers"]["content-type"] == "text/plain;charset=UTF-8"
    assert "arena-auth-prod-v1.0" in call["headers"]["cookie"] and "arena-auth-prod-v1.1" in call["headers"]["cookie"]
    assert body["mode"] == "direct" and body["modelAId"] == model(lmarena_sim) and body["modality"] == "chat"
    assert body["userMessage"] == {"content": "Say  something, twice?", "experimental_attachments": [],
                                   "metadata": {}}
    assert body["recaptchaV3Token"] == "<token>"
    for key in ("id", "userMessageId", "modelAMessageId", "modelBMessageId"):
        assert abs(uuid7_ms(body[key]) - started) < 60_000, key
    assert items[0]["evaluation_id"] == body["id"]


def test_a_follow_up_continues_the_conversation(tab, lmarena_sim):
    first = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="one"))
    evaluation = first[0]["evaluation_id"]
    second = tab.answer(tab.run(call="follow_up", evaluation_id=evaluation, content="two"))
    assert text_of(second) == "two" and second[0]["evaluation_id"] == evaluation
    (call,) = lmarena_sim.requests("follow_up")
    assert call["status"] == 200 and call["path"] == f"/nextjs-api/stream/post-to-evaluation/{evaluation}"
    assert call["json"]["userMessage"]["content"] == "two" and "id" not in call["json"]
    evaluations = {e["id"]: e for e in lmarena_sim.state()["evaluations"]}
    assert len(evaluations[evaluation]["messages"]) == 4


@pytest.mark.parametrize("mode, side", [("battle", "b"), ("direct-battle", "a")])
def test_battle_modes_stream_both_sides(tab, lmarena_sim, mode, side):
    task = {"call": "create", "mode": mode, "content": "who wins"}
    if mode != "battle":
        task["model_a_id"] = model(lmarena_sim)
    items = tab.answer(tab.run(**task))
    assert text_of(items, "a") == "who wins" and text_of(items, "b") == "B: who wins"
    (call,) = lmarena_sim.requests("create")
    assert call["json"]["mode"] == mode and ("modelAId" in call["json"]) == (mode != "battle")


def test_the_legacy_retry_sends_a_chat_retry_token_and_metadata_objects(tab, lmarena_sim):
    page = lmarena_sim.state()["page"]
    messages = [{"role": "system", "content": "Rules", "position": "b", "attachments": []},
                {"role": "user", "content": "Retry me", "position": "a", "attachments": []}]
    items = tab.answer(tab.run(call="retry", session_id=page["session_id"], message_id=page["message_id"],
                               messages=messages, model_id=None))
    assert text_of(items) == "Retry me"
    (call,) = lmarena_sim.requests("retry")
    assert call["status"] == 200 and call["method"] == "PUT" and call["json"]["recaptchaV3Token"] == "<token>"
    sent = call["json"]["messages"]
    assert [m["metadata"] for m in sent] == [{}, {}] and [m["participantPosition"] for m in sent] == ["b", "a"]
    assert sent[1]["parentMessageIds"] == [sent[0]["id"]] and sent[1]["status"] == "pending"


def test_every_call_gets_its_own_token_and_no_token_ever_reaches_the_bridge(tab, lmarena_sim):
    tab.page.wait_for_function("window.grecaptcha && window.grecaptcha.enterprise")
    tab.page.evaluate("""() => {
        window.__tokens = [];
        const g = window.grecaptcha.enterprise, execute = g.execute.bind(g);
        g.execute = (key, options) => execute(key, options).then((t) => {
            window.__tokens.push([options.action, t]);
            return t;
        });
    }""")
    for i in range(3):
        assert text_of(tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content=f"n{i}"))) == f"n{i}"
    tokens = tab.page.evaluate("window.__tokens")
    assert [action for action, _ in tokens] == ["chat_submit"] * 3 and len({t for _, t in tokens}) == 3
    sent = json.dumps(tab.all)
    assert not any(token in sent for _, token in tokens)


def test_a_refused_token_is_retried_once_with_a_new_one_then_reported(tab, lmarena_sim):
    lmarena_sim.control("recaptcha", {"fail_next": 1})
    assert text_of(tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="x"))) == "x"
    lmarena_sim.control("recaptcha", {"fail_next": 2})
    items = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="y"))
    failed = items[-1]
    assert failed["stage"] == "upstream" and failed["status"] == 403
    assert json.loads(failed["body"]) == {"error": "recaptcha validation failed"}
    calls = lmarena_sim.requests("create")
    assert [c["status"] for c in calls] == [403, 200, 403, 403]


def test_a_rotated_site_key_is_read_again_from_the_reloaded_page(bridge, tab, lmarena_sim):
    lmarena_sim.control("recaptcha", {"rotate_site_key": True})
    items = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="old page"))
    assert items[-1]["type"] == "failed" and items[-1]["stage"] == "token"  # the old page's key is refused
    tab.page.reload()
    again = bridge.next_tab()
    assert again.hello["facts"]["sitekey_hint"] == lmarena_sim.state()["site_key"][:6]
    assert text_of(again.answer(again.run(call="create", model_a_id=model(lmarena_sim), content="new"))) == "new"


# --- Images ------------------------------------------------------------------------------------

def image(name: str = "dot.png") -> dict[str, str]:
    return {"name": name, "content_type": "image/png", "data_url": f"data:image/png;base64,{PNG}"}


def test_images_are_uploaded_the_way_the_page_does_then_attached(tab, lmarena_sim):
    items = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim, "claude-opus-4-1"), content="what is it",
                               attachments=[image("a.png"), image("b.png")]))
    assert items[-1]["type"] == "done", items[-1]
    kinds = [(c["kind"], c.get("action")) for c in lmarena_sim.requests()]
    assert kinds.count(("action", "generateUploadUrl")) == 2 and kinds.count(("action", "getSignedUrl")) == 2
    assert sum(1 for kind, _ in kinds if kind == "storage") >= 2
    (call,) = lmarena_sim.requests("create")
    files = call["json"]["userMessage"]["experimental_attachments"]
    assert [(f["name"], f["contentType"]) for f in files] == [("a.png", "image/png"), ("b.png", "image/png")]
    assert all("/__storage/" in f["url"] for f in files) and call["status"] == 200


def test_a_new_build_of_the_site_is_found_again(tab, lmarena_sim):
    task = {"call": "create", "model_a_id": model(lmarena_sim, "claude-opus-4-1"), "content": "x",
            "attachments": [image()]}
    assert tab.answer(tab.run(**task))[-1]["type"] == "done"
    lmarena_sim.control("build", {"rotate": True})
    items = tab.answer(tab.run(**task))
    assert items[-1]["type"] == "done", items[-1]
    statuses = [c["status"] for c in lmarena_sim.requests("action")]
    assert 404 in statuses, "the cached action id was stale, then found again"


def test_upload_actions_that_cannot_be_found_are_a_named_failure(tab, lmarena_sim):
    lmarena_sim.control("build", {"actions": "missing"})
    items = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="x", attachments=[image()]))
    failed = items[-1]
    assert failed["type"] == "failed" and failed["stage"] == "upload"
    assert "generateUploadUrl" in failed["message"]
    assert lmarena_sim.requests("create") == []
    facts = tab.ask("diagnose", "diagnosis")["facts"]
    assert facts["upload_actions"] is False and "generateUploadUrl" in facts["upload_problem"]


def test_an_image_too_large_for_the_storage_is_reported_with_its_status(tab, lmarena_sim):
    big = base64.b64encode(b"\x89PNG" + b"0" * (6 * 1024 * 1024)).decode()
    attachment = {"name": "big.png", "content_type": "image/png", "data_url": f"data:image/png;base64,{big}"}
    items = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="x", attachments=[attachment]))
    failed = items[-1]
    assert failed["stage"] == "upload" and failed["status"] == 413 and "EntityTooLarge" in failed["body"]


# --- Failures and commands --------------------------------------------------------------------------

@pytest.mark.parametrize("outcome, status, fragment", [
    ({"kind": "challenge"}, 403, "<title>Just a moment...</title>"),
    ({"kind": "block"}, 403, "Attention Required! | Cloudflare"),
    ({"kind": "status", "status": 429, "retry_after": 42}, 429, "Too many requests"),
    ({"kind": "schema", "path": ["userMessage", "metadata"], "message": "Expected object, received null"}, 400,
     "Expected object"),
])
def test_upstream_failures_report_status_headers_and_body(tab, lmarena_sim, outcome, status, fragment):
    lmarena_sim.script(outcome)
    failed = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="hi"))[-1]
    assert failed["type"] == "failed" and failed["status"] == status and fragment in failed["body"]
    if status == 429:
        assert failed["retry_after"] == "42"


def test_a_long_error_body_is_cut_to_4000_characters(tab, lmarena_sim):
    lmarena_sim.script({"kind": "status", "status": 500, "body": "x" * 9000})
    failed = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="hi"))[-1]
    assert failed["status"] == 500 and failed["body"] == "x" * 4000


def test_an_html_page_where_a_stream_was_expected_is_streamed_with_its_content_type(tab, lmarena_sim):
    lmarena_sim.script({"kind": "html"})
    items = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="hi"))
    assert items[0]["type"] == "started" and items[0]["content_type"].startswith("text/html")
    assert "<html" in "".join(m.get("data", "") for m in items).lower()


def test_cancel_aborts_the_upstream_call(tab, lmarena_sim):
    lmarena_sim.script({"kind": "text", "words": 40, "delay_ms": 100})
    request_id = tab.run(call="create", model_a_id=model(lmarena_sim), content="long")
    tab.receive(lambda m: m.get("id") == request_id and m["type"] == "chunk")
    tab.send({"type": "cancel", "id": request_id})
    tab.expect_none(lambda m: m.get("id") == request_id and m["type"] == "done", 2.0)
    (call,) = lmarena_sim.requests("create")
    assert call["stream"] != "complete" and call["lines_sent"] < 40
    assert text_of(tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="next"))) == "next"


def test_a_person_sending_a_message_in_the_page_is_reported(tab):
    page = tab.page
    page.fill("#prompt", "typed by a person")
    page.click("#send")
    call = tab.receive(lambda m: m.get("type") == "page_call")
    assert call == {"type": "page_call", "ok": True, "status": 200}
    page.wait_for_selector("#answer[data-state=done]")


def test_id_capture_reports_the_ids_of_the_pages_retry_once(tab, lmarena_sim):
    page = tab.page
    state = lmarena_sim.state()
    tab.send({"type": "arm_capture"})
    assert wait_title(page, "✅ 🎯 ").startswith("✅ 🎯 Arena AI")
    page.click("#retry")
    captured = tab.receive(lambda m: m.get("type") == "ids_captured")
    assert captured == {"type": "ids_captured", "session_id": state["page"]["session_id"],
                        "message_id": state["page"]["message_id"]}
    page.wait_for_selector("#answer[data-state=done]")
    assert wait_title(page, "✅ ") == "✅ Arena AI (simulated)"
    page.click("#retry")  # disarmed: nothing more is reported
    tab.expect_none(lambda m: m.get("type") == "ids_captured", 0.5)


def test_reload_reloads_the_page_which_connects_again(bridge, tab):
    page = tab.page
    page.evaluate("window.__marker = 1")
    tab.send({"type": "reload", "reason": "test"})
    again = bridge.next_tab()
    assert again.hello["facts"]["page"] == "arena" and tab.closed.wait(10)
    assert page.evaluate("window.__marker") is None  # a new document


def test_unknown_messages_are_ignored(tab, lmarena_sim):
    tab.send({"type": "dance"})
    tab.conn.send("not json")
    tab.send({"what": "ever"})
    assert text_of(tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="still"))) == "still"


# --- Pages that are not the chat ---------------------------------------------------------------

def test_cloudflares_check_is_reported_then_cleared_by_the_browser(bridge, open_arena_tab, lmarena_sim):
    lmarena_sim.control("cloudflare", {"mode": "challenge"})
    open_arena_tab(bridge.url)
    first = bridge.next_tab()
    assert first.hello["facts"]["page"] == "challenge"
    failed = first.answer(first.run(call="create", model_a_id=model(lmarena_sim), content="x"))[-1]
    assert failed["stage"] == "task" and "challenge" in failed["message"]
    cleared = bridge.next_tab(timeout=20)  # the interstitial clears itself and reloads the page
    assert cleared.hello["facts"]["page"] == "arena"


def test_cloudflares_block_page_is_reported(bridge, open_arena_tab, lmarena_sim):
    lmarena_sim.control("cloudflare", {"mode": "block"})
    open_arena_tab(bridge.url)
    blocked = bridge.next_tab()
    assert blocked.hello["facts"]["page"] == "block"
    lmarena_sim.control("cloudflare", {"mode": "off"})


def test_signed_out_the_hello_has_no_auth_cookie_and_the_site_refuses(bridge, browser, open_arena_tab, lmarena_sim):
    lmarena_sim.control("auth", {"auto_sign_in": "none"})
    context = browser.new_context(ignore_https_errors=True)
    try:
        open_arena_tab(bridge.url, context=context)
        tab = bridge.next_tab()
        assert tab.hello["facts"]["auth_cookies"] == []
        failed = tab.answer(tab.run(call="create", model_a_id=model(lmarena_sim), content="x"))[-1]
        assert failed["status"] == 401 and json.loads(failed["body"]) == {"error": "User not found"}
    finally:
        context.close()


@pytest.mark.parametrize("who", ["user", "guest"])
def test_the_hello_tells_an_account_from_a_guest_without_sending_the_cookie(bridge, browser, open_arena_tab,
                                                                            lmarena_sim, who):
    lmarena_sim.control("auth", {"auto_sign_in": who})
    context = browser.new_context(ignore_https_errors=True)
    try:
        open_arena_tab(bridge.url, context=context)
        tab = bridge.next_tab()
        assert tab.hello["facts"]["account"] == who
        cookies = {c["name"]: c["value"] for c in context.cookies("https://arena.ai")}
        assert cookies["arena-auth-prod-v1.0"] not in json.dumps(tab.all)
    finally:
        context.close()


def test_a_retry_the_site_refuses_is_not_captured(tab, lmarena_sim):
    page = tab.page
    ids = lmarena_sim.state()["page"]
    lmarena_sim.control("feedback", {**{k: ids[k] for k in ("session_id", "message_id")}, "has_feedback": True})
    tab.send({"type": "arm_capture"})
    wait_title(page, "✅ 🎯 ")
    page.click("#retry")
    assert tab.receive(lambda m: m.get("type") == "page_call")["ok"] is False
    tab.expect_none(lambda m: m.get("type") == "ids_captured", 0.5)
    assert page.evaluate("window.__arenahubBridge.armed") is True  # still waiting for a Retry the site takes
    lmarena_sim.control("feedback", {**{k: ids[k] for k in ("session_id", "message_id")}, "has_feedback": False})
    page.click("#retry")
    assert tab.receive(lambda m: m.get("type") == "ids_captured")["session_id"] == ids["session_id"]
