"""Scripted outcomes: each one's exact lines or response, pacing, heartbeats, and callers that go away."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from arenahub.tools.arena_sim import answers
from tests.tools.arena_support import CREATE, create_body, lines, open_site

USAGE = '"usage":{"promptTokens":3,"completionTokens":%d}'


@pytest.fixture
async def site():
    async with open_site() as s:
        yield s


async def answer(site, outcome: dict[str, Any], body: dict[str, Any] | None = None):
    await site.script(outcome)
    body = body or create_body()
    return await site.create(body), body


def head(body: dict[str, Any], p: str = "a") -> str:
    return f'{p}f:{{"messageId":"{body["modelAMessageId" if p == "a" else "modelBMessageId"]}"}}'


def end(words: int, finish: str = "stop", p: str = "a") -> list[str]:
    return [f'{p}e:{{"finishReason":"{finish}","isContinued":false}}',
            f'{p}d:{{"finishReason":"{finish}",{USAGE % words}}}']


# --- text ---------------------------------------------------------------------------------------

async def test_text(site):
    response, body = await answer(site, {"kind": "text", "text": 'Say "hi"\n ünï'})
    assert lines(response) == [head(body), 'a0:"Say "', 'a0:"\\"hi\\"\\n "', 'a0:"ünï"', *end(3)]


async def test_words_and_reasoning(site):
    response, body = await answer(site, {"kind": "text", "words": 3, "reasoning": "think hard"})
    assert lines(response) == [head(body), 'ag:"think "', 'ag:"hard"', 'a0:"w0 "', 'a0:"w1 "', 'a0:"w2"', *end(3)]


@pytest.mark.parametrize("finish", ["length", "content-filter"])
async def test_finish_reasons(site, finish):
    response, body = await answer(site, {"kind": "text", "text": "cut", "finish": finish})
    assert lines(response) == [head(body), 'a0:"cut"', *end(1, finish)]


async def test_finish_error_and_no_usage(site):
    response, body = await answer(site, {"kind": "text", "text": "cut", "finish": "error"})
    assert lines(response) == [head(body), 'a0:"cut"', 'ad:{"finishReason":"error"}']
    response, body = await answer(site, {"kind": "text", "text": "ok", "usage": False})
    assert lines(response) == [head(body), 'a0:"ok"', 'ae:{"finishReason":"stop","isContinued":false}',
                               'ad:{"finishReason":"stop"}']


async def test_routed_model_and_citations(site):
    outcome = {"kind": "text", "text": "ok", "routed_model": "claude-opus-4-1",
               "citations": [{"url": "https://a.test/", "title": "A"}]}
    response, body = await answer(site, outcome)
    got = lines(response)
    assert got[:2] == [head(body), 'a0:"ok"'] and got[-2:] == end(1)
    c1, c2, routed = got[2:5]
    joined = json.loads(c1[3:])["argsTextDelta"] + json.loads(c2[3:])["argsTextDelta"]
    assert c1.startswith("ac:") and json.loads(joined) == {"source": [{"url": "https://a.test/", "title": "A"}]}
    assert routed == 'a2:[{"type":"routed_model","publicName":"claude-opus-4-1","organization":"anthropic"}]'


async def test_no_citations_when_the_script_says_so(site):
    from tests.tools.arena_support import GROUNDING

    response, _ = await answer(site, {"kind": "text", "text": "ok", "citations": []},
                               create_body(modelAId=GROUNDING, modality="search"))
    assert not any(line.startswith("ac:") for line in lines(response))


async def test_side_b_text_in_a_battle(site):
    body = create_body("battle")
    response, _ = await answer(site, {"kind": "text", "text": "A says", "side_b_text": "B differs"}, body)
    assert lines(response) == [head(body), head(body, "b"), 'a0:"A "', 'b0:"B "', 'a0:"says"', 'b0:"differs"',
                               *[x for pair in zip(end(2), end(2, p="b"), strict=True) for x in pair]]


async def test_pacing(site):
    started = time.monotonic()
    response, _ = await answer(site, {"kind": "text", "words": 3, "first_ms": 100, "delay_ms": 50})
    assert time.monotonic() - started >= 0.1 + 4 * 0.05 - 0.02  # 3 words, e, d: 4 gaps
    assert len(lines(response)) == 6


async def test_a_long_wait_sends_heartbeats_on_each_side(site):
    body = create_body("battle")
    response, _ = await answer(site, {"kind": "text", "text": "x", "first_ms": 1100}, body)
    assert lines(response)[:4] == [head(body), head(body, "b"), 'a2:[{"type":"heartbeat"}]',
                                   'b2:[{"type":"heartbeat"}]']


@pytest.mark.parametrize("ms, beats", [(0, 0), (900, 0), (1000, 0), (2000, 1), (2500, 2), (3200, 3)])
async def test_heartbeats_come_after_each_whole_second_of_a_wait(monkeypatch, ms, beats):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(answers.anyio, "sleep", sleep)
    sent: list[str] = []

    async def emit(line: str) -> None:
        sent.append(line)

    await answers._wait(ms, ["hb\n"], emit)
    assert sent == ["hb\n"] * beats and sum(slept) == pytest.approx(ms / 1000)


# --- image, error --------------------------------------------------------------------------------

async def test_image_with_urls_and_text(site):
    response, body = await answer(site, {"kind": "image", "urls": ["https://i.test/1.png", "https://i.test/2.png"],
                                         "text": "Here"})
    images = [{"type": "image", "image": f"https://i.test/{i}.png", "mimeType": "image/png"} for i in (1, 2)]
    assert lines(response) == [head(body), 'a0:"Here"', "a2:" + json.dumps(images, separators=(",", ":")), *end(1)]


async def test_image_count(site):
    response, _ = await answer(site, {"kind": "image", "count": 3})
    assert len(json.loads(lines(response)[1][3:])) == 3


async def test_error_after_words(site):
    response, body = await answer(site, {"kind": "error", "message": "boom", "after_words": 2})
    assert response.status_code == 200
    assert lines(response) == [head(body), 'a0:"hello "', 'a0:"there  "', 'a3:"boom"']


# --- outcomes that answer at once ---------------------------------------------------------------

async def test_challenge_for_one_call(site):
    response, _ = await answer(site, {"kind": "challenge"})
    assert response.status_code == 403 and response.headers["cf-mitigated"] == "challenge"
    assert response.headers["server"] == "cloudflare" and "<title>Just a moment...</title>" in response.text
    assert "Enable JavaScript and cookies to continue" in response.text
    assert (await site.state())["cloudflare"] == "off" and (await site.create()).status_code == 200


async def test_block_for_one_call(site):
    response, _ = await answer(site, {"kind": "block"})
    assert response.status_code == 403 and "<title>Attention Required! | Cloudflare</title>" in response.text
    assert "Sorry, you have been blocked" in response.text and 'id="cf-error-details"' in response.text
    assert (await site.create()).status_code == 200


@pytest.mark.parametrize("status, body, retry_after", [
    (401, {"error": "User not found"}, None),
    (403, {"error": "recaptcha validation failed"}, None),
    (413, {"error": "Request Entity Too Large"}, None),
    (422, {"error": "Request rejected: Content violates our terms of use"}, None),
    (429, {"error": "Too many requests"}, "30"),
    (500, {"error": "Internal Server Error"}, None),
    (503, {"error": "Service Unavailable"}, None),
])
async def test_status_defaults(site, status, body, retry_after):
    response, _ = await answer(site, {"kind": "status", "status": status})
    assert response.status_code == status and response.json() == body
    assert response.headers.get("retry-after") == retry_after
    record = await site.last()
    assert (record["status"], record["outcome"], record["stream"]) == (status, "status", None)


async def test_status_with_its_own_body_and_retry_after(site):
    response, _ = await answer(site, {"kind": "status", "status": 429, "body": "slow down", "retry_after": 5})
    assert response.text == "slow down" and response.headers["retry-after"] == "5"
    assert response.headers["content-type"].startswith("text/plain")
    response, _ = await answer(site, {"kind": "status", "status": 429, "retry_after": None})
    assert "retry-after" not in response.headers
    response, _ = await answer(site, {"kind": "status", "status": 502, "body": {"error": "x", "code": 7}})
    assert response.json() == {"error": "x", "code": 7} and "retry-after" not in response.headers


async def test_schema_outcome(site):
    response, _ = await answer(site, {"kind": "schema", "path": ["userMessage", "content"], "message": "Too long"})
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid request body", "issues": [
        {"code": "custom", "path": ["userMessage", "content"], "message": "Too long"}]}


async def test_html_outcome(site):
    response, _ = await answer(site, {"kind": "html"})
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.startswith("<!DOCTYPE html>")


async def test_raw_lines(site):
    response, _ = await answer(site, {"kind": "raw", "lines": ['a0:"x"', "zz:unknown"]})
    assert response.text == 'a0:"x"\nzz:unknown\n' and response.headers["x-vercel-ai-data-stream"] == "v1"
    response, _ = await answer(site, {"kind": "raw", "lines": ["a0:", '"x"'], "no_newline": True,
                                      "content_type": "application/json"})
    assert response.text == 'a0:"x"' and response.headers["content-type"] == "application/json"
    assert (await site.last())["lines_sent"] == 2


# --- the script queue and the log ----------------------------------------------------------------

async def test_outcomes_are_taken_in_order_by_calls_that_pass_the_checks(site):
    await site.script({"kind": "text", "text": "one"}, {"kind": "text", "text": "two"})
    assert (await site.send(CREATE, "{bad", action=None)).status_code == 400  # takes none
    assert "one" in (await site.create()).text
    assert "two" in (await site.create()).text
    assert "hello" in (await site.create()).text
    outcomes = [r["outcome"] for r in await site.log()]
    assert outcomes == [None, "text", "text", "text"]


async def test_the_retry_path_takes_outcomes_too(site):
    page = (await site.state())["page"]
    await site.script({"kind": "status", "status": 500})
    assert (await site.retry(page["session_id"], page["message_id"])).status_code == 500


# --- callers that go away ------------------------------------------------------------------------

async def leave_after(site, seconds: float) -> list[dict[str, Any]]:
    """A create-evaluation call whose caller disconnects after ``seconds``: the messages the app sent."""
    body = json.dumps({**create_body(), "recaptchaV3Token": await site.token()}).encode()
    cookies = "; ".join(f"{k}={v}" for k, v in site.sim.session.cookies().items())
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "https", "path": CREATE, "raw_path": CREATE.encode(), "query_string": b"",
             "headers": [(b"host", b"arena.ai"), (b"cookie", cookies.encode()),
                         (b"content-type", b"text/plain;charset=UTF-8")],
             "server": ("arena.ai", 443), "client": ("127.0.0.1", 50000), "root_path": ""}
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep(seconds)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await site.app(scope, receive, send)
    return sent


async def test_hang_sends_nothing_until_the_caller_goes_away(site):
    await site.script({"kind": "hang"})
    sent = await leave_after(site, 0.2)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert not any(m.get("body") for m in sent[1:])
    record = await site.last()
    assert (record["outcome"], record["stream"], record["lines_sent"]) == ("hang", "aborted", 0)


async def test_a_slow_stream_left_midway_is_recorded_as_aborted(site):
    await site.script({"kind": "text", "words": 20, "delay_ms": 50})
    sent = await leave_after(site, 0.3)
    record = await site.last()
    assert record["stream"] == "aborted" and 2 <= record["lines_sent"] < 22
    assert len([m for m in sent if m.get("body")]) == record["lines_sent"]
    message_id = record["json"]["modelAMessageId"]
    messages = next(e for e in (await site.state())["evaluations"] if e["id"] == record["json"]["id"])["messages"]
    assert next(m for m in messages if m["id"] == message_id)["content"] == ""  # not stored: never finished
