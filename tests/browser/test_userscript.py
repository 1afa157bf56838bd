"""The userscript in real headless chromium, on the simulator's page, talking to a fake bridge.

The fake bridge is a plain WebSocket server: it sees exactly the frames the script sends and
sends it the frames the real bridge would. The simulator records the upstream calls.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from arenahub.tools.lmarena_sim import AUTH_COOKIE

Message = dict[str, Any]


class FakeTab:
    """One userscript connection, as the bridge sees it."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.inbox: queue.Queue[tuple[float, Message]] = queue.Queue()
        self._stash: list[tuple[float, Message]] = []
        self.closed = threading.Event()
        self.hello: Message = {}
        self.page: Any = None  # the Playwright page, when the test opened it

    def send(self, message: Message) -> None:
        self.conn.send(json.dumps(message))

    def _next(self, match: Callable[[Message], bool], timeout: float) -> tuple[float, Message] | None:
        for i, (at, message) in enumerate(self._stash):
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
        assert found, f"no matching frame from the tab within {timeout} s; others: {[m for _, m in self._stash]}"
        return found[1]

    def expect_none(self, match: Callable[[Message], bool], seconds: float) -> None:
        found = self._next(match, seconds)
        assert found is None, f"unexpected frame from the tab: {found[1] if found else None}"

    def run(self, payload: Message) -> str:
        request_id = str(uuid.uuid4())
        self.send({"request_id": request_id, "payload": payload})
        return request_id

    def answer(self, request_id: str, timeout: float = 20.0) -> list[tuple[float, Any]]:
        """Every ``data`` of the request, with arrival times, up to "[DONE]" or an error."""
        items: list[tuple[float, Any]] = []
        while True:
            found = self._next(lambda m: m.get("request_id") == request_id, timeout)
            assert found, f"request {request_id} did not end within {timeout} s: {items}"
            at, message = found
            items.append((at, message["data"]))
            if message["data"] == "[DONE]" or isinstance(message["data"], dict):
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
        sock = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: restarts on the same port
        self._server = serve(self._handle, sock=sock, max_size=32 * 1024 * 1024, compression=None)
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
                tab.inbox.put((time.monotonic(), json.loads(frame)))
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
    """One page running the userscript, connected to the fake bridge; the page is ``tab.page``."""
    page = open_arena_tab(bridge.url)
    fake = bridge.next_tab()
    fake.page = page
    return fake


def template(role: str, content: str, position: str = "a", attachments: list[Message] | None = None) -> Message:
    return {"role": role, "content": content, "attachments": attachments or [], "participantPosition": position}


def payload(sim, *templates: Message, model: str | None | bool = True, session: str | None = None,
            image: bool = False) -> Message:
    state = sim.state()
    model_id = state["models"][0]["id"] if model is True else model
    return {"message_templates": list(templates), "target_model_id": model_id,
            "session_id": session or state["page"]["session_id"], "message_id": state["page"]["message_id"],
            "is_image_request": image}


def text_lines(chunks: list[tuple[float, Any]]) -> list[str]:
    assert chunks[-1][1] == "[DONE]", chunks[-1]
    raw = "".join(data for _, data in chunks[:-1])
    assert all(isinstance(data, str) and data for _, data in chunks[:-1])
    return raw.rstrip("\n").split("\n")


def wait_title(page, prefix: str) -> str:
    page.wait_for_function("p => document.title.startsWith(p)", arg=prefix, timeout=15_000)
    return str(page.title())


# --- Connecting --------------------------------------------------------------------------------

def test_connects_says_hello_and_shows_its_state_in_the_title(tab, lmarena_sim):
    page = tab.page
    assert tab.hello == {"type": "hello", "version": tab.hello["version"], "origin": lmarena_sim.origin,
                          "title": "LMArena"}
    assert tab.hello["version"]
    assert wait_title(page, "✅ ") == "✅ LMArena"


def test_without_a_bridge_the_title_says_disconnected(open_arena_tab):
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    page = open_arena_tab(f"ws://127.0.0.1:{port}/ws")
    assert wait_title(page, "🔴 ") == "🔴 LMArena"
    assert page.evaluate("window.__arenahubBridge.state") == "disconnected"


def test_two_tabs_connect_at_once_and_stream_in_parallel(bridge, open_arena_tab, lmarena_sim):
    pages = [open_arena_tab(bridge.url), open_arena_tab(bridge.url)]
    tabs = [bridge.next_tab(), bridge.next_tab()]
    for page in pages:
        wait_title(page, "✅ ")
    lmarena_sim.script(*[{"kind": "text", "words": 8, "delay_ms": 100}] * 2)
    request_ids = [t.run(payload(lmarena_sim, template("user", f"tab {i}"))) for i, t in enumerate(tabs)]
    answers = [t.answer(r) for t, r in zip(tabs, request_ids, strict=True)]
    for chunks in answers:
        assert text_lines(chunks)[-1] == 'ad:{"finishReason":"stop"}'
    first_chunks, ends = [a[0][0] for a in answers], [a[-1][0] for a in answers]
    assert max(first_chunks) < min(ends), "the two answers streamed at the same time"
    assert len(lmarena_sim.stream_requests()) == 2


def test_reconnects_after_the_bridge_restarts_and_drops_its_calls(bridge, tab, lmarena_sim):
    page = tab.page
    lmarena_sim.script({"kind": "text", "words": 60, "delay_ms": 50})
    request_id = tab.run(payload(lmarena_sim, template("user", "long")))
    tab.receive(lambda m: m.get("request_id") == request_id)
    bridge.stop()
    assert wait_title(page, "🔴 ") == "🔴 LMArena"
    bridge.start()  # same port
    again = bridge.next_tab(timeout=15)
    assert again.hello["origin"] == lmarena_sim.origin
    assert wait_title(page, "✅ ") == "✅ LMArena"
    (call,) = lmarena_sim.stream_requests()
    assert call["stream"] != "complete" and call["lines_sent"] < 61, "the socket closed: the upstream call stopped"


# --- Tasks: the upstream call ------------------------------------------------------------------

def _assert_messages(body: Message, session: str, templates: list[Message]) -> None:
    messages = body["messages"]
    assert [m["role"] for m in messages] == [t["role"] for t in templates]
    assert [m["content"] for m in messages] == [t["content"] for t in templates]
    assert [m["participantPosition"] for m in messages] == [t["participantPosition"] for t in templates]
    assert [m["experimental_attachments"] for m in messages] == [t["attachments"] for t in templates]
    ids = [m["id"] for m in messages]
    assert len(set(ids)) == len(ids) and all(str(uuid.UUID(i)) == i for i in ids)
    assert [m["parentMessageIds"] for m in messages] == [[]] + [[i] for i in ids[:-1]]
    assert [m["status"] for m in messages] == ["success"] * (len(messages) - 1) + ["pending"]
    for m in messages:
        assert (m["evaluationId"], m["failureReason"], m["metadata"]) == (None, None, None)
        assert m["evaluationSessionId"] == session
        datetime.fromisoformat(m["createdAt"])
        datetime.fromisoformat(m["updatedAt"])
        assert set(m) == {"role", "content", "id", "evaluationId", "evaluationSessionId", "parentMessageIds",
                          "experimental_attachments", "failureReason", "metadata", "participantPosition",
                          "createdAt", "updatedAt", "status"}


def test_direct_chat_task_makes_exactly_the_upstream_call(tab, lmarena_sim):
    state = lmarena_sim.state()
    templates = [template("system", "Be brief.", "b"), template("user", "Hi"), template("assistant", "Hello!"),
                 template("user", "Say  something, twice?")]
    request_id = tab.run(payload(lmarena_sim, *templates))
    assert text_lines(tab.answer(request_id)) == [
        'a0:"Say  "', 'a0:"something, "', 'a0:"twice?"', 'ad:{"finishReason":"stop"}']
    (call,) = lmarena_sim.requests()
    session, message = state["page"]["session_id"], state["page"]["message_id"]
    assert call["method"] == "PUT" and call["status"] == 200 and call["error"] is None
    assert call["path"] == f"/nextjs-api/stream/retry-evaluation-session-message/{session}/messages/{message}"
    assert call["headers"]["content-type"] == "text/plain;charset=UTF-8"
    assert f"{AUTH_COOKIE}={state['auth_cookie']['value']}" in call["headers"]["cookie"]
    assert call["headers"]["origin"] == lmarena_sim.origin
    assert set(call["json"]) == {"messages", "modelId"} and call["json"]["modelId"] == state["models"][0]["id"]
    _assert_messages(call["json"], session, templates)


@pytest.mark.parametrize("target", ["a", "b"])
def test_battle_task_keeps_the_target_position_and_no_model(tab, lmarena_sim, target):
    battle = str(uuid.uuid4())
    lmarena_sim.set_sessions([{"id": battle, "mode": "battle"}])
    templates = [template("system", "Rules", target), template("user", "Who wins?", target)]
    request_id = tab.run(payload(lmarena_sim, *templates, model=None, session=battle))
    assert text_lines(tab.answer(request_id)) == [f'{target}0:"Who "', f'{target}0:"wins?"',
                                                   f'{target}d:{{"finishReason":"stop"}}']
    (call,) = lmarena_sim.requests()
    assert call["status"] == 200 and call["json"]["modelId"] is None
    _assert_messages(call["json"], battle, templates)


def test_attachments_are_sent_as_experimental_attachments(tab, lmarena_sim):
    attachments = [{"name": "dot.png", "contentType": "image/png", "url": "data:image/png;base64,iVBORw0KGgo="},
                   {"name": "cat.jpg", "contentType": "image/jpeg", "url": "https://images.example.test/cat.jpg"}]
    templates = [template("user", "What is in these?", attachments=attachments)]
    tab.answer(tab.run(payload(lmarena_sim, *templates)))
    (call,) = lmarena_sim.stream_requests()
    assert call["json"]["messages"][0]["experimental_attachments"] == attachments


def test_image_model_task_streams_the_image_line(tab, lmarena_sim):
    image_model = lmarena_sim.state()["models"][-1]
    assert "image" in image_model["capabilities"]["outputCapabilities"]
    task = payload(lmarena_sim, template("user", "a cat"), model=image_model["id"], image=True)
    lines = text_lines(tab.answer(tab.run(task)))
    assert lines[0].startswith('a2:[{"type":"image","image":"' + lmarena_sim.origin + "/__sim/images/")
    assert lines[1] == 'ad:{"finishReason":"stop"}'


def test_chunks_are_forwarded_raw_as_they_come_then_done(tab, lmarena_sim):
    lines = ['a0:"one"', "x9:unknown", '{"error":"late"}', 'ad:{"finishReason":"length"}']
    lmarena_sim.script({"kind": "raw", "lines": lines, "delay_ms": 150})
    chunks = tab.answer(tab.run(payload(lmarena_sim, template("user", "go"))))
    assert len(chunks) >= 4, "a slow stream arrives in several chunks"
    assert "".join(d for _, d in chunks[:-1]) == "\n".join(lines) + "\n"
    assert chunks[-1][1] == "[DONE]"


def test_unicode_split_across_chunks_is_decoded_whole(tab, lmarena_sim):
    lmarena_sim.script({"kind": "text", "text": "héllo wörld ✅ 漢字", "delay_ms": 20})
    lines = text_lines(tab.answer(tab.run(payload(lmarena_sim, template("user", "x")))))
    assert "".join(json.loads(line[3:]) for line in lines if line.startswith("a0:")) == "héllo wörld ✅ 漢字"


# --- Errors --------------------------------------------------------------------------------------

def test_a_foreign_session_reports_401_with_status_and_body(tab, lmarena_sim):
    foreign = str(uuid.uuid4())
    request_id = tab.run(payload(lmarena_sim, template("user", "hi"), session=foreign))
    ((_, error),) = tab.answer(request_id)
    assert error["status"] == 401 and "401" in error["error"]
    user = lmarena_sim.state()["user_id"]
    assert json.loads(error["body"]) == {"error": f"User {user} does not have access to evaluation session {foreign}"}
    tab.expect_none(lambda m: m.get("request_id") == request_id, 0.5)  # no [DONE] after an error


@pytest.mark.parametrize("outcome, status, fragment", [
    ({"kind": "challenge", "status": 503}, 503, "<title>Just a moment...</title>"),
    ({"kind": "challenge"}, 403, "Enable JavaScript and cookies to continue"),
    ({"kind": "status", "status": 413}, 413, "Too Large"),
    ({"kind": "status", "status": 422}, 422, "Content violates our terms of use"),
    ({"kind": "status", "status": 429}, 429, "Too many requests"),
])
def test_upstream_failures_report_status_and_body(tab, lmarena_sim, outcome, status, fragment):
    lmarena_sim.script(outcome)
    ((_, error),) = tab.answer(tab.run(payload(lmarena_sim, template("user", "hi"))))
    assert error["status"] == status and fragment in error["body"]


def test_a_long_error_body_is_cut_to_2000_characters(tab, lmarena_sim):
    lmarena_sim.script({"kind": "status", "status": 500, "body": "x" * 5000})
    ((_, error),) = tab.answer(tab.run(payload(lmarena_sim, template("user", "hi"))))
    assert error["status"] == 500 and error["body"] == "x" * 2000


def test_a_task_without_ids_is_an_error_naming_the_fix(tab, lmarena_sim):
    task = payload(lmarena_sim, template("user", "hi"))
    task["session_id"] = None
    ((_, error),) = tab.answer(tab.run(task))
    assert "capture-ids" in error["error"] and "status" not in error
    assert lmarena_sim.requests() == []


def test_cancel_aborts_the_upstream_call(tab, lmarena_sim):
    lmarena_sim.script({"kind": "text", "words": 30, "delay_ms": 100})
    request_id = tab.run(payload(lmarena_sim, template("user", "long")))
    tab.receive(lambda m: m.get("request_id") == request_id)
    tab.send({"command": "cancel", "request_id": request_id})
    tab.expect_none(lambda m: m.get("request_id") == request_id and m["data"] == "[DONE]", 3.5)
    (call,) = lmarena_sim.stream_requests()
    assert call["stream"] != "complete" and call["lines_sent"] < 31
    # The tab goes on serving.
    assert text_lines(tab.answer(tab.run(payload(lmarena_sim, template("user", "next")))))[0] == 'a0:"next"'


# --- Commands ------------------------------------------------------------------------------------

def test_id_capture_reports_the_ids_of_the_pages_retry_once(tab, lmarena_sim):
    page = tab.page
    state = lmarena_sim.state()
    tab.send({"command": "activate_id_capture"})
    assert wait_title(page, "✅ 🎯 ") == "✅ 🎯 LMArena"
    # The script's own calls are not the user's Retry.
    tab.answer(tab.run(payload(lmarena_sim, template("user", "mine"))))
    tab.expect_none(lambda m: m.get("type") == "ids_captured", 0.3)
    page.click("#retry")
    captured = tab.receive(lambda m: m.get("type") == "ids_captured")
    assert captured == {"type": "ids_captured", "session_id": state["page"]["session_id"],
                        "message_id": state["page"]["message_id"]}
    page.wait_for_selector("#answer[data-state=done]")  # the page's own call went through unchanged
    assert page.text_content("#answer") == "Hello! Which model are you?"
    assert wait_title(page, "✅ ") == "✅ LMArena"
    assert page.evaluate("window.__arenahubBridge.armed") is False
    assert page.evaluate("window.fetch.toString().includes('[native code]')")
    page.click("#retry")  # disarmed: nothing more is reported
    page.wait_for_function("document.querySelector('#answer').dataset.state === 'done'")
    tab.expect_none(lambda m: m.get("type") == "ids_captured", 0.5)
    assert len(lmarena_sim.stream_requests()) == 3


def test_send_page_source_sends_the_page_with_its_model_list(tab, lmarena_sim):
    from arenahub.bridge.lmarena import extract_page_models

    tab.send({"command": "send_page_source"})
    source = tab.receive(lambda m: m.get("type") == "page_source")
    assert "self.__next_f.push" in source["html"] and "<title>" in source["html"]
    models = extract_page_models(source["html"])
    assert set(models) == {m["publicName"] for m in lmarena_sim.state()["models"]}


def test_page_model_list_is_real_flight_data(tab):
    page = tab.page
    flight = page.evaluate("self.__next_f.filter(x => x[0] === 1).map(x => x[1]).join('')")
    assert '"initialModels":[{"id":"' in flight


@pytest.mark.parametrize("command", ["refresh", "reconnect"])
def test_refresh_and_reconnect_reload_the_page_which_connects_again(bridge, tab, command):
    page = tab.page
    page.evaluate("window.__marker = 1")
    tab.send({"command": command})
    again = bridge.next_tab()
    assert again.hello["title"] == "LMArena"
    assert tab.closed.wait(10)
    assert page.evaluate("window.__marker") is None  # a new document
    assert wait_title(page, "✅ ") == "✅ LMArena"


def test_unknown_commands_and_frames_are_ignored(tab, lmarena_sim):
    tab.send({"command": "dance"})
    tab.conn.send("not json")
    tab.send({"what": "ever"})
    assert text_lines(tab.answer(tab.run(payload(lmarena_sim, template("user", "still here")))))[0] == 'a0:"still "'
