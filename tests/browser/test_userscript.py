"""The userscript in real headless chromium, on https://arena.ai (the simulator), talking to a fake bridge.

The fake bridge is a plain WebSocket server: it sees exactly the messages the script sends
(``arenahub.protocol.tab``) and sends it what the real bridge would. The simulator records the
upstream calls and refuses what the real site refuses.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from arenahub.bridge.lmarena import page_models
from tests.browser.fake_bridge import bridge, model, tab, text_of, uuid7_ms, wait_title  # noqa: F401 (fixtures)

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
    # The interstitial waits long enough for the userscript to say hello on a slow machine (CI has 2 cores).
    lmarena_sim.control("cloudflare", {"mode": "challenge", "clears_after_ms": 4000})
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
