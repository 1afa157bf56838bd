"""The bridge server with a scripted tab (a WebSocket client speaking the tab protocol, no browser):
answers, the tasks the tab is given, and every named failure with what it does to the session state."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import websockets

from arenahub.bridge.lmarena import failures
from tests.bridge.fake_tab import HANG, MODEL_ID, chat, fail, ok, running, until  # noqa: F401 (fixture)

STOP = 'ad:{"finishReason":"stop"}'


async def test_no_tab_is_a_clear_503(running):
    r = await running.http.post("/v1/chat/completions", json=chat())
    assert r.status_code == 503 and r.json()["error"]["code"] == "browser_not_connected"
    assert "https://arena.ai" in r.json()["error"]["message"] and r.headers["retry-after"]
    status = await running.status()
    assert status["state"] == "no_tab" and "arena.ai" in status["action"]


async def test_models_and_unknown_model(running):
    r = await running.http.get("/v1/models")
    assert [m["id"] for m in r.json()["data"]] == ["gpt-test", "img-test"]
    r = await running.http.post("/v1/chat/completions", json=chat(model="nope"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


async def test_whole_answer_and_the_task_the_tab_gets(running):
    async with running.tab([ok('af:{"messageId":"m"}', 'ag:"thinking"', 'a0:"Hel"', 'a0:"lo"',
                               'ad:{"finishReason":"stop","usage":{"promptTokens":7,"completionTokens":2}}')]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat(content="hello arena"))
        status = await running.status()
    assert r.status_code == 200, r.text
    body = r.json()
    message = body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Hello", "reasoning_content": "thinking"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    (task,) = tab.tasks
    assert {k: v for k, v in task.items() if v not in (None, [], "")} == {
        "call": "create", "mode": "direct", "modality": "chat", "model_a_id": MODEL_ID, "content": "hello arena"}
    assert status["state"] == "ready" and status["lmarena"]["session_valid"] is True


async def test_streamed_answer_with_role_reasoning_citations_finish_and_usage(running):
    source = json.dumps({"source": [{"url": "https://example.org/a", "title": "A"}]})
    lines = ['ag:"why"', 'a0:"Hi"', f'ac:{json.dumps({"toolCallId": "t1", "argsTextDelta": source[:10]})}',
             f'ac:{json.dumps({"toolCallId": "t1", "argsTextDelta": source[10:]})}', 'ad:{"finishReason":"length"}']
    async with running.tab([ok(*lines, chunked=True)]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions",
                                    json=chat(stream=True, stream_options={"include_usage": True}))
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert r.text.rstrip().endswith("data: [DONE]")
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"reasoning_content": "why"} and deltas[2] == {"content": "Hi"}
    assert deltas[3] == {"annotations": [{"type": "url_citation", "url_citation": {
        "url": "https://example.org/a", "title": "A", "start_index": 2, "end_index": 2}}]}
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "length"
    assert events[-1]["usage"]["completion_tokens"] >= 1


async def test_a_follow_up_goes_to_the_same_conversation_with_only_the_new_turn(running):
    async with running.tab([ok('a0:"Four."', STOP, evaluation_id="0199aaaa-0000-7000-8000-000000000001"),
                            ok('a0:"Six."', STOP)]) as tab:
        await running.ready(tab)
        first = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
        r = await running.http.post("/v1/chat/completions", json=chat(messages=first))
        assert r.json()["choices"][0]["message"]["content"] == "Four."
        history = [*first, {"role": "assistant", "content": "Four."}, {"role": "user", "content": "3+3?"}]
        r = await running.http.post("/v1/chat/completions", json=chat(messages=history))
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Six."
        # An edited history is not the same conversation: a new one, with the whole (edited) history.
        edited = [*first, {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"}]
        await running.http.post("/v1/chat/completions", json=chat(messages=edited))
    create, follow, fresh = tab.tasks
    assert create["call"] == "create" and "<system>\nBe brief.\n</system>" in create["content"]
    assert {k: v for k, v in follow.items() if v not in (None, [], "")} == {
        "call": "follow_up", "mode": "direct", "modality": "chat", "content": "3+3?",
        "evaluation_id": "0199aaaa-0000-7000-8000-000000000001"}
    assert fresh["call"] == "create" and "<assistant>\n4\n</assistant>" in fresh["content"]


async def test_a_refused_follow_up_starts_a_new_conversation(running):
    gone = '{"error":"User u does not have access to evaluation session 0199aaaa-0000-7000-8000-000000000001"}'
    async with running.tab([ok('a0:"A"', STOP), fail(status=401, body=gone), ok('a0:"B"', STOP)]) as tab:
        await running.ready(tab)
        await running.http.post("/v1/chat/completions", json=chat(content="one"))
        history = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "A"},
                   {"role": "user", "content": "two"}]
        r = await running.http.post("/v1/chat/completions", json=chat(messages=history))
        assert (await running.status())["state"] == "ready"
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "B"
    assert [t["call"] for t in tab.tasks] == ["create", "follow_up", "create"]
    assert "<user>\ntwo\n</user>" in tab.tasks[2]["content"]


@pytest.mark.bridge_config(follow_up=False, arena_mode="battle", id_updater_battle_target="B")
async def test_battle_mode_without_follow_ups_reads_the_target_side(running):
    async with running.tab([ok('a0:"left"', 'b0:"right"', 'bd:{"finishReason":"stop"}', 'ad:{"finishReason":"stop"}'),
                            ok('b0:"again"', 'bd:{"finishReason":"stop"}')]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.json()["choices"][0]["message"]["content"] == "right"
        history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "right"},
                   {"role": "user", "content": "more"}]
        await running.http.post("/v1/chat/completions", json=chat(messages=history))
    assert [t["call"] for t in tab.tasks] == ["create", "create"]
    assert tab.tasks[0]["mode"] == "battle" and tab.tasks[0]["model_a_id"] is None


@pytest.mark.parametrize("failure, status, code, state", [
    (fail(status=403, body='{"error":"recaptcha validation failed"}'), 503, "verification_required",
     "verification_required"),
    (fail(status=401, body='{"error":"User not found"}'), 503, "arena_signed_out", "signed_out"),
    (fail(status=403, body="<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title>"),
     503, "cloudflare_blocked", "blocked"),
    (fail(status=400, body=json.dumps({"error": "Invalid request body", "issues": [
        {"code": "invalid_type", "path": ["userMessage", "metadata"], "message": "Expected object, received null"}]})),
     502, "upstream_schema_error", "site_changed"),
    (fail(status=400, body='{"error":"Evaluation session ID seems spoofed, offset too big"}'), 503, "clock_skew",
     "clock_skew"),
    (fail(status=404, body="Not Found"), 502, "upstream_api_changed", "site_changed"),
    (fail(status=422, body='{"error":"Request rejected: Content violates our terms of use"}'), 400,
     "content_policy_violation", "ready"),
    (fail(stage="token", message="grecaptcha.enterprise did not load in the page"), 503, "recaptcha_unavailable",
     "site_changed"),
    (fail(stage="upload", message="generateUploadUrl not found"), 502, "upload_unavailable", "ready"),
    (ok("<!DOCTYPE html><html><head><title>Arena</title></head><body>hi</body></html>",
        content_type="text/html"), 502, "unexpected_upstream_answer", "site_changed"),
])
async def test_named_failures_and_the_state_they_leave(running, failure, status, code, state):
    async with running.tab([failure]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["code"] == code
        status_now = await running.status()
    assert status_now["state"] == state
    if state != "ready":
        assert status_now["action"]
        session = status_now["lmarena"]
        assert session.get("session_valid") is False or session.get("needs_verification") is True


async def test_verification_required_is_refused_at_once_until_the_pages_own_call_goes_through(running):
    async with running.tab([fail(status=403, body='{"error":"recaptcha validation failed"}')]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.json()["error"]["code"] == "verification_required"
        assert "Security Verification" in r.json()["error"]["message"] and "Reloading" in r.json()["error"]["message"]
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.status_code == 503 and r.json()["error"]["code"] == "verification_required"
        assert len(tab.tasks) == 1, "refused without a call upstream"
        assert tab.sent("reload") == [], "a failed token is never answered by reloading"
        health = (await running.http.get("/health")).json()
        assert health["healthy"] is False and health["lmarena"]["state"] == "verification_required"
        await tab.send({"type": "page_call", "ok": False, "status": 403})
        await asyncio.sleep(0.1)
        assert (await running.status())["state"] == "verification_required"
        await tab.send({"type": "page_call", "ok": True, "status": 200})  # a person solved it in the tab
        await until(lambda: running.state.session.state(1) == "ready", "the state to clear")
        r = await running.http.post("/v1/chat/completions", json=chat())
    assert r.status_code == 200


async def test_rate_limit_passes_retry_after_through(running):
    async with running.tab([fail(status=429, body='{"error":"Too many requests"}', retry_after="42")]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat())
        status = await running.status()
    assert r.status_code == 429 and r.json()["error"]["code"] == "upstream_rate_limited"
    assert r.headers["retry-after"] == "42"
    assert status["state"] == "rate_limited" and status["lmarena"]["rate_limited_until"] > 0


async def test_a_cloudflare_interstitial_reloads_the_tab_once_not_in_a_loop(running):
    page = "<!DOCTYPE html><html><head><title>Just a moment...</title>"
    async with running.tab([fail(status=403, body=page), fail(status=403, body=page)]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.json()["error"]["code"] == "needs_verification"
        await until(lambda: tab.sent("reload"), "a reload")
        running.state.session.conditions.clear()  # as if the tab came back; the next one fails again
        await running.http.post("/v1/chat/completions", json=chat())
        await asyncio.sleep(0.1)
        assert len(tab.sent("reload")) == 1
    # A tab that connects on a normal page ends the condition.
    running.state.session.failed(failures.challenge())
    async with running.tab([ok('a0:"ok"', STOP)]) as again:
        await running.ready(again)
        await until(lambda: running.state.session.state(1) != "cloudflare_challenge", "the condition to end")
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.status_code == 200


async def test_signed_out_ends_when_the_tab_reconnects_signed_in(running):
    async with running.tab([fail(status=401, body='{"error":"User not found"}')], facts={"auth_cookies": []}) as tab:
        await running.ready(tab)
        status = await running.status()
        assert status["state"] == "signed_out" and "Sign in at arena.ai" in status["action"]
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.json()["error"]["code"] == "arena_signed_out" and len(tab.tasks) == 0
    async with running.tab([ok('a0:"hi"', STOP)]) as tab:
        await running.ready(tab)
        await until(lambda: running.state.session.state(1) == "ready", "signed in again")
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.status_code == 200


async def test_an_unknown_line_kind_is_logged_once_and_skipped(running, caplog):
    caplog.set_level(logging.WARNING, "arenahub.bridge")
    answers = [ok('a0:"x"', 'ah:{"new":1}', 'ah:{"new":2}', 'a2:[{"type":"video"}]', STOP) for _ in range(2)]
    async with running.tab(answers) as tab:
        await running.ready(tab)
        for _ in range(2):
            r = await running.http.post("/v1/chat/completions", json=chat())
            assert r.json()["choices"][0]["message"]["content"] == "x"
    warnings = [rec.getMessage() for rec in caplog.records if "does not know" in rec.getMessage()]
    assert len(warnings) == 2 and any("(h:" in w for w in warnings) and any("2:video" in w for w in warnings)


async def test_a_tab_closing_mid_stream_ends_the_stream_with_an_error(running):
    tab = running.tab([{**ok('a0:"par"'), "chunks": ['a0:"par"\n', HANG]}])
    await tab.__aenter__()
    await running.ready(tab)
    async with running.http.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as r:
        lines = []
        async for line in r.aiter_lines():
            lines.append(line)
            if '"par"' in line:
                await tab.__aexit__()
    assert any('"tab_closed"' in line for line in lines)


async def test_stream_timeout_is_named_and_the_tab_told_to_stop(running):
    async with running.tab([HANG]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_stream_timeout"
        await until(lambda: tab.sent("cancel"), "a cancel")


async def test_a_2025_userscript_is_told_to_update(running):
    hello = {"type": "hello", "version": "0.1.0", "origin": "https://lmarena.ai", "title": "LMArena"}
    async with running.tab(hello=hello) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat())
        status = await running.status()
    assert r.status_code == 503 and "userscript" in r.json()["error"]["message"]
    assert status["state"] == "userscript_outdated" and "arenahub userscript" in status["action"]
    assert tab.tasks == []


async def test_requests_spread_over_two_tabs(running):
    async with running.tab([ok('a0:"x"', STOP)] * 6) as t1, running.tab([ok('a0:"x"', STOP)] * 6) as t2:
        await until(lambda: len(running.state.tabs.usable()) == 2, "two usable tabs")
        await until(lambda: all(t.models_in_page for t in running.state.tabs.tabs()), "checks")
        results = await asyncio.gather(*(running.http.post("/v1/chat/completions", json=chat()) for _ in range(6)))
    assert all(r.status_code == 200 for r in results)
    assert t1.tasks and t2.tasks


async def test_image_generation_and_image_models(running):
    async with running.tab([ok('a2:[{"type":"image","image":"https://img.example/x.png"}]', STOP)]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/images/generations", json={"prompt": "a cat", "model": "img-test"})
        assert r.status_code == 200, r.text
        assert r.json()["data"] == [{"url": "https://img.example/x.png"}]
        assert tab.tasks[0]["modality"] == "image" and tab.tasks[0]["content"] == "a cat"
        r = await running.http.post("/v1/images/generations", json={"prompt": "a cat", "model": "gpt-test"})
        assert r.status_code == 400


async def test_image_inputs_reach_the_tab_as_data_urls(running):
    png = "data:image/png;base64,iVBORw0KGgo="
    content = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": png}}]
    async with running.tab([ok('a0:"a dot"', STOP)]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat(content=content))
        assert r.status_code == 200
        bad = [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]
        r = await running.http.post("/v1/chat/completions", json=chat(content=bad))
    assert tab.tasks[0]["attachments"] == [{"name": "image-1.png", "content_type": "image/png", "data_url": png}]
    assert tab.tasks[0]["content"] == "what is this\n\n[image 1]"
    assert r.status_code == 400 and "private or local" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "messages[0].content[0].image_url.url" and len(tab.tasks) == 1


async def test_malformed_input(running):
    r = await running.http.post("/v1/chat/completions", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = await running.http.post("/v1/images/generations", json={"prompt": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


async def test_broken_messages_from_a_tab_are_ignored(running):
    async with running.tab([ok('a0:"fine"', STOP)]) as tab:
        await running.ready(tab)
        for junk in ("not json", json.dumps({"type": "nonsense"}), json.dumps({"type": "chunk"}),
                     json.dumps({"type": "done", "id": "unknown-request"}), json.dumps([1, 2])):
            await tab.ws.send(junk)
        r = await running.http.post("/v1/chat/completions", json=chat())
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fine"


async def test_tab_sockets_from_other_web_pages_are_refused(running):
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(running.ws_url, origin="https://evil.example"):
            pass
    for origin in ("https://arena.ai", "https://lmarena.ai", "https://www.arena.ai"):
        async with websockets.connect(running.ws_url, origin=origin) as ws:
            await ws.send(json.dumps({"type": "hello", "script_version": "t", "protocol": 2}))
            await until(lambda: len(running.state.tabs) == 1, "the tab")
        await until(lambda: len(running.state.tabs) == 0, "the tab to go")


async def test_two_requests_continuing_one_history_at_once_do_not_share_its_conversation(running):
    slow = {**ok('a0:"later"', STOP), "chunks": ['a0:"later"\n', STOP + "\n"]}
    async with running.tab([ok('a0:"first"', STOP, evaluation_id="0199aaaa-0000-7000-8000-000000000009"),
                            slow, ok('a0:"other"', STOP)]) as tab:
        await running.ready(tab)
        await running.http.post("/v1/chat/completions", json=chat(content="q"))
        history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "first"},
                   {"role": "user", "content": "next"}]
        await asyncio.gather(*(running.http.post("/v1/chat/completions", json=chat(messages=history))
                               for _ in range(2)))
    assert sorted(t["call"] for t in tab.tasks[1:]) == ["create", "follow_up"]


async def test_n_images_are_n_conversations_at_once(running):
    image = ok('a2:[{"type":"image","image":"https://img.example/x.png"}]', STOP)
    async with running.tab([image, image, image]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/images/generations", json={"prompt": "cats", "model": "img-test", "n": 3})
        assert r.status_code == 200 and len(r.json()["data"]) == 3 and len(tab.tasks) == 3
        for n in (0, 5, "2", True):
            r = await running.http.post("/v1/images/generations", json={"prompt": "cats", "n": n})
            assert r.status_code == 400 and r.json()["error"]["param"] == "n"


async def test_a_rate_limit_is_held_back_by_the_bridge_until_its_time(running):
    async with running.tab([fail(status=429, body='{"error":"Too many requests"}', retry_after="30")]) as tab:
        await running.ready(tab)
        await running.http.post("/v1/chat/completions", json=chat())
        r = await running.http.post("/v1/chat/completions", json=chat())
    assert r.status_code == 429 and 28 <= int(r.headers["retry-after"]) <= 30 and len(tab.tasks) == 1


async def test_every_named_failure_is_logged_and_says_when_to_retry(running, caplog):
    caplog.set_level(logging.WARNING, "arenahub.bridge")
    async with running.tab([fail(status=403, body='{"error":"recaptcha validation failed"}')]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat())
    assert r.headers["retry-after"] == "30"
    assert any("verification_required" in rec.getMessage() for rec in caplog.records)


async def test_a_guest_is_not_signed_in_for_a_mode_that_needs_an_account(running):
    async with running.tab(facts={"account": "guest"}) as tab:
        await running.ready(tab)
        status = await running.status()
        r = await running.http.post("/v1/chat/completions", json=chat())
    assert status["state"] == "signed_out" and "guest" in status["action"] + json.dumps(status["checks"])
    assert r.status_code == 503 and r.json()["error"]["code"] == "arena_signed_out" and tab.tasks == []
