"""The LMArena simulator: the page, every check on the upstream call, every scripted answer, the line format."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from arenahub.cli import build_parser
from arenahub.tools import lmarena_sim
from arenahub.tools.lmarena_sim import AUTH_COOKIE, DEFAULT_MODELS, create_app
from arenahub.tools.lmarena_sim_upstream import MESSAGE_FIELDS

# Fixed, not random: they appear in test ids, which must be the same in every pytest-xdist worker.
SESSION = "afe2d961-0824-48ef-b161-c52c7ffa86f0"
MESSAGE = "d8321516-82ff-4847-beb6-50f44de59843"
BATTLE = "d9eb4dfd-0ea4-4ebb-b58e-ea1cffbb6445"
TEXT_MODEL = DEFAULT_MODELS[0]["id"]
IMAGE_MODEL = next(m["id"] for m in DEFAULT_MODELS if "image" in m["capabilities"]["outputCapabilities"])


def stream_path(session: str = SESSION, message: str = MESSAGE) -> str:
    return f"/nextjs-api/stream/retry-evaluation-session-message/{session}/messages/{message}"


def messages(*contents: tuple[str, str], session: str = SESSION, position: str = "a") -> list[dict[str, Any]]:
    """A valid chain of messages, as the userscript builds it."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out: list[dict[str, Any]] = []
    for i, (role, content) in enumerate(contents):
        out.append({"role": role, "content": content, "id": str(uuid.uuid4()), "evaluationId": None,
                    "evaluationSessionId": session, "parentMessageIds": [out[-1]["id"]] if out else [],
                    "experimental_attachments": [], "failureReason": None, "metadata": None,
                    "participantPosition": position, "createdAt": now, "updatedAt": now,
                    "status": "pending" if i == len(contents) - 1 else "success"})
    return out


def body(model_id: str | None = TEXT_MODEL, **kw: Any) -> dict[str, Any]:
    return {"messages": messages(("system", "Be brief."), ("user", "hello there  world"), **kw), "modelId": model_id}


@pytest.fixture
async def sim() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(sessions=[SESSION, {"id": BATTLE, "mode": "battle"}], page_session_id=SESSION,
                     page_message_id=MESSAGE, max_attachment_bytes=3000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim.test") as client:
        assert (await client.get("/")).status_code == 200  # the page sets the account's cookie
        yield client


async def put(client: httpx.AsyncClient, payload: Any, path: str | None = None,
              content_type: str = "text/plain;charset=UTF-8") -> httpx.Response:
    data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return await client.put(path or stream_path(), content=data, headers={"Content-Type": content_type})


async def script(client: httpx.AsyncClient, *outcomes: dict[str, Any]) -> None:
    response = await client.post("/__sim/script", json=list(outcomes))
    assert response.status_code == 200, response.text


def lines(response: httpx.Response) -> list[str]:
    assert response.text.endswith("\n")
    return response.text[:-1].split("\n")


def text_of(response: httpx.Response, position: str = "a") -> str:
    return "".join(json.loads(line[3:]) for line in lines(response) if line.startswith(f"{position}0:"))


# --- The page ------------------------------------------------------------------------------------

async def test_page_looks_like_an_arena_page_and_sets_the_auth_cookie(sim):
    response = await sim.get("/")
    page = response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>LMArena</title>" in page and 'id="retry"' in page and ">Retry</button>" in page
    assert f'data-session-id="{SESSION}"' in page and f'data-message-id="{MESSAGE}"' in page
    assert "window.fetch(\n      `/nextjs-api/stream/retry-evaluation-session-message/" in page
    assert AUTH_COOKIE in response.headers["set-cookie"]


def _models_the_way_the_old_bridge_reads_them(page: str) -> list[dict[str, Any]]:
    """Find each escaped ``{\\"id\\":\\"<uuid>\\"``, match braces, undo one level of escaping, parse."""
    found = []
    for m in re.finditer(r'\{\\"id\\":\\"[a-f0-9-]+\\"', page):
        depth = 0
        for i in range(m.start(), len(page)):
            depth += {"{": 1, "}": -1}.get(page[i], 0)
            if depth == 0:
                found.append(json.loads(page[m.start():i + 1].replace('\\"', '"').replace("\\\\", "\\")))
                break
    return found


async def test_page_embeds_the_model_list_in_next_flight_data(sim):
    page = (await sim.get("/")).text
    flight = re.search(r'<script>self\.__next_f\.push\(\[1,("(?:[^"\\]|\\.)*")\]\)</script>', page)
    assert flight, "the model list is pushed to self.__next_f as a JS string"
    assert '\\"initialModels\\":[{\\"id\\":\\"' in flight.group(1)
    assert _models_the_way_the_old_bridge_reads_them(page) == list(DEFAULT_MODELS)


async def test_page_model_list_reads_with_the_bridge_extractor(sim):
    from arenahub.bridge.lmarena import extract_page_models

    models = extract_page_models((await sim.get("/")).text)
    assert models == {m["publicName"]: m["id"] + (":image" if m["id"] == IMAGE_MODEL else "") for m in DEFAULT_MODELS}


async def test_page_model_text_cannot_end_the_script_tag(sim):
    evil = {**DEFAULT_MODELS[0], "publicName": "</script><b>x"}
    assert (await sim.post("/__sim/models", json={"models": [evil]})).status_code == 200
    page = (await sim.get("/")).text
    assert "</script><b>" not in page
    assert _models_the_way_the_old_bridge_reads_them(page)[0]["publicName"] == "</script><b>x"


async def test_page_retry_button_calls_the_stream_endpoint(sim):
    # The page's own call (its script, run by a browser in tests/browser) is a valid call: check its body here.
    page = (await sim.get("/")).text
    assert 'method: "PUT", headers: {"Content-Type": "text/plain;charset=UTF-8"}' in page
    assert 'credentials: "include"' in page and 'status: "pending"' in page


# --- A valid call and the line format --------------------------------------------------------------

async def test_default_answer_echoes_the_last_user_message_word_by_word(sim):
    response = await put(sim, body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-vercel-ai-data-stream"] == "v1"
    assert lines(response) == ['a0:"hello "', 'a0:"there  "', 'a0:"world"', 'ad:{"finishReason":"stop"}']
    assert text_of(response) == "hello there  world"


async def test_text_is_json_encoded(sim):
    await script(sim, {"kind": "text", "text": 'say "hi"\\ \n ünï'})
    response = await put(sim, body())
    assert text_of(response) == 'say "hi"\\ \n ünï'
    assert all(re.fullmatch(r'a0:".*"|ad:\{.*\}', line) for line in lines(response))


async def test_position_b_answers_in_b_lines(sim):
    response = await put(sim, body(position="b"))
    assert [line[:3] for line in lines(response)] == ["b0:", "b0:", "b0:", "bd:"]


async def test_battle_session_with_null_model_and_one_position(sim):
    response = await put(sim, body(None, session=BATTLE, position="b"), stream_path(BATTLE))
    assert response.status_code == 200 and text_of(response, "b") == "hello there  world"


async def test_image_model_answers_with_an_image_by_default(sim):
    response = await put(sim, body(IMAGE_MODEL))
    (image_line, finish) = lines(response)
    assert image_line.startswith("a2:") and finish == 'ad:{"finishReason":"stop"}'
    (item,) = json.loads(image_line[3:])
    assert item["type"] == "image" and item["image"].startswith("http://sim.test/__sim/images/")
    png = await sim.get(item["image"])
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")


# --- What the site refuses -----------------------------------------------------------------------

def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(b: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = b
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value(b) if callable(value) else value
    return mutate


_DELETE = object()

REFUSED = [
    ("no modelId", _set("modelId", _DELETE), "modelId is required"),
    ("modelId not a uuid", _set("modelId", "gpt-5"), "modelId must be a uuid or null"),
    ("unknown modelId", _set("modelId", str(uuid.uuid4())), "is not a known model"),
    ("no messages", _set("messages", []), "messages must be a non-empty list"),
    ("messages not a list", _set("messages", {}), "messages must be a non-empty list"),
    ("message not an object", _set("messages.0", "hi"), "messages[0] must be an object"),
    ("unknown message field", _set("messages.0.extra", 1), "messages[0].extra is not a message field"),
    ("bad role", _set("messages.1.role", "bot"), "messages[1].role must be one of"),
    ("content not a string", _set("messages.1.content", [{"type": "text"}]), "messages[1].content must be a string"),
    ("id not a uuid", _set("messages.0.id", "m1"), "messages[0].id must be a fresh uuid"),
    ("repeated id", _set("messages.1.id", lambda b: b["messages"][0]["id"]), "messages[1].id must be a fresh uuid"),
    ("evaluationId set", _set("messages.0.evaluationId", "x"), "messages[0].evaluationId must be null"),
    ("failureReason set", _set("messages.1.failureReason", "x"), "messages[1].failureReason must be null"),
    ("metadata not an object", _set("messages.1.metadata", "x"), "messages[1].metadata must be null or an object"),
    ("metadata a list", _set("messages.1.metadata", []), "messages[1].metadata must be null or an object"),
    ("other session", _set("messages.1.evaluationSessionId", str(uuid.uuid4())),
     "messages[1].evaluationSessionId must be the session in the path"),
    ("first has a parent", _set("messages.0.parentMessageIds", lambda b: [b["messages"][1]["id"]]),
     "messages[0].parentMessageIds must be []"),
    ("broken chain", _set("messages.1.parentMessageIds", []), "messages[1].parentMessageIds must be ["),
    ("attachments not a list", _set("messages.1.experimental_attachments", None),
     "messages[1].experimental_attachments must be a list"),
    ("attachment missing a field", _set("messages.1.experimental_attachments", [{"name": "a", "url": "data:,"}]),
     "messages[1].experimental_attachments[0] must be an object with string fields name, contentType and url"),
    ("attachment url not data or http", _set("messages.1.experimental_attachments",
                                             [{"name": "a", "contentType": "image/png", "url": "file:///etc/passwd"}]),
     "messages[1].experimental_attachments[0].url must be a data URI or an http(s) URL"),
    ("attachment data uri not base64", _set("messages.1.experimental_attachments",
                                            [{"name": "a", "contentType": "image/png", "url": "data:image/png,xx"}]),
     "messages[1].experimental_attachments[0].url must be a base64 data URI"),
    ("bad position", _set("messages.1.participantPosition", "c"), "messages[1].participantPosition must be 'a' or 'b'"),
    ("bad createdAt", _set("messages.0.createdAt", "yesterday"), "messages[0].createdAt must be an ISO 8601 timestamp"),
    ("bad updatedAt", _set("messages.1.updatedAt", 1700000000), "messages[1].updatedAt must be an ISO 8601 timestamp"),
    ("last not pending", _set("messages.1.status", "success"), "messages[1].status must be 'pending'"),
    ("earlier pending", _set("messages.0.status", "pending"), "messages[0].status must be 'success'"),
]


@pytest.mark.parametrize("mutate, expected", [pytest.param(m, e, id=n) for n, m, e in REFUSED])
async def test_refuses_a_body_the_site_would_refuse_naming_the_field(sim, mutate, expected):
    b = body()
    mutate(b)
    response = await put(sim, b)
    assert response.status_code == 400, response.text
    assert expected in response.json()["error"]


@pytest.mark.parametrize("name", MESSAGE_FIELDS)
async def test_every_message_field_is_required(sim, name):
    b = body()
    del b["messages"][1][name]
    response = await put(sim, b)
    assert response.status_code == 400 and response.json() == {"error": f"messages[1].{name} is required"}


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "text/plain;charset=latin-1", ""])
async def test_refuses_another_content_type(sim, content_type):
    response = await put(sim, body(), content_type=content_type)
    assert response.status_code == 400 and "Content-Type must be text/plain;charset=UTF-8" in response.json()["error"]


async def test_metadata_may_be_null_or_an_object_as_the_2026_site_sends_it(sim):
    b = body()
    b["messages"][0]["metadata"] = {}
    b["messages"][1]["metadata"] = {"source": "page"}
    assert (await put(sim, b)).status_code == 200


async def test_a_top_level_recaptcha_token_is_ignored(sim):
    response = await put(sim, {**body(), "recaptchaV3Token": "03AFcWeA-anything"})
    assert response.status_code == 200 and text_of(response) == "hello there  world"


async def test_accepts_the_content_type_with_a_space(sim):
    assert (await put(sim, body(), content_type="text/plain; charset=utf-8")).status_code == 200


@pytest.mark.parametrize("payload, expected", [("{not json", "body is not JSON"),
                                               ("[1]", "body must be a JSON object")])
async def test_refuses_a_body_that_is_not_a_json_object(sim, payload, expected):
    response = await put(sim, payload)
    assert response.status_code == 400 and expected in response.json()["error"]


@pytest.mark.parametrize("method", ["POST", "GET", "PATCH"])
async def test_only_put_is_allowed(sim, method):
    response = await sim.request(method, stream_path(), content=json.dumps(body()),
                                 headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert response.status_code == 405 and response.headers["allow"] == "PUT"


async def test_path_ids_must_be_uuids(sim):
    response = await put(sim, body(), stream_path(message="latest"))
    assert response.status_code == 400 and "must be uuids" in response.json()["error"]


async def test_a_call_without_the_page_cookie_is_unauthorized(sim):
    sim.cookies.clear()
    response = await put(sim, body())
    assert response.status_code == 401 and "Unauthorized" in response.json()["error"]


async def test_a_session_of_another_account_is_refused_like_the_site_does(sim):
    foreign = str(uuid.uuid4())
    user = (await sim.get("/__sim/state")).json()["user_id"]
    response = await put(sim, body(session=foreign), stream_path(foreign))
    assert response.status_code == 401
    assert response.json() == {"error": f"User {user} does not have access to evaluation session {foreign}"}


async def test_battle_session_refuses_a_model_id(sim):
    response = await put(sim, body(session=BATTLE), stream_path(BATTLE))
    assert response.status_code == 400 and "modelId must be null in a battle session" in response.json()["error"]


async def test_battle_session_refuses_mixed_positions(sim):
    b = body(None, session=BATTLE)
    b["messages"][0]["participantPosition"] = "b"
    response = await put(sim, b, stream_path(BATTLE))
    assert response.status_code == 400 and "battle target" in response.json()["error"]


def _attachment(size: int) -> dict[str, str]:
    data = "A" * (size * 4 // 3)
    return {"name": "p.png", "contentType": "image/png", "url": f"data:image/png;base64,{data}"}


async def test_attachments_within_the_limit_pass(sim):
    b = body()
    b["messages"][1]["experimental_attachments"] = [_attachment(1000), {
        "name": "q.png", "contentType": "image/png", "url": "https://example.test/q.png"}]
    assert (await put(sim, b)).status_code == 200


async def test_attachments_over_the_limit_are_too_large(sim):
    b = body()
    b["messages"][1]["experimental_attachments"] = [_attachment(2000), _attachment(2000)]
    response = await put(sim, b)
    assert response.status_code == 413 and "Too Large" in response.json()["error"]


# --- Scripted answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("reason", ["stop", "length", "content-filter"])
async def test_each_finish_reason(sim, reason):
    await script(sim, {"kind": "text", "words": 3, "finish": reason})
    response = await put(sim, body())
    assert lines(response) == ['a0:"w0 "', 'a0:"w1 "', 'a0:"w2"', f'ad:{{"finishReason":"{reason}"}}']


async def test_a_stream_with_no_finish_line(sim):
    await script(sim, {"kind": "text", "text": "cut", "finish": None})
    assert lines(await put(sim, body())) == ['a0:"cut"']


async def test_scripted_images_with_text(sim):
    await script(sim, {"kind": "image", "urls": ["https://img.test/1.png", "https://img.test/2.png"], "text": "Here"},
                 {"kind": "image", "count": 2})
    first = lines(await put(sim, body()))
    assert first[0] == 'a0:"Here"' and first[2] == 'ad:{"finishReason":"stop"}'
    assert [i["image"] for i in json.loads(first[1][3:])] == ["https://img.test/1.png", "https://img.test/2.png"]
    second = lines(await put(sim, body()))
    assert len(json.loads(second[0][3:])) == 2


async def test_an_error_object_mid_stream(sim):
    await script(sim, {"kind": "error", "message": "Internal failure", "after_words": 2},
                 {"kind": "error", "message": "boom", "line": "a3"})
    response = await put(sim, body())
    assert response.status_code == 200
    assert lines(response) == ['a0:"hello "', 'a0:"there  "', '{"error":"Internal failure"}']
    assert lines(await put(sim, body(position="b"))) == ['b3:"boom"']


@pytest.mark.parametrize("status", [403, 503])
async def test_the_cloudflare_challenge_page(sim, status):
    await script(sim, {"kind": "challenge", "status": status})
    response = await put(sim, body())
    assert response.status_code == status and response.headers["content-type"].startswith("text/html")
    assert "<title>Just a moment...</title>" in response.text
    assert "Enable JavaScript and cookies to continue" in response.text
    assert response.headers["cf-mitigated"] == "challenge"


@pytest.mark.parametrize("status, fragment", [
    (401, "does not have access to evaluation session " + SESSION),
    (413, "Too Large"),
    (422, "Request rejected: Content violates our terms of use"),
    (429, "Too many requests"),
    (500, "HTTP 500"),
])
async def test_scripted_statuses_answer_like_the_site(sim, status, fragment):
    await script(sim, {"kind": "status", "status": status})
    response = await put(sim, body())
    assert response.status_code == status and fragment in response.json()["error"]
    assert (response.headers.get("retry-after") == "30") is (status == 429)


async def test_scripted_status_with_its_own_body(sim):
    await script(sim, {"kind": "status", "status": 422, "body": {"error": "custom", "code": 7}},
                 {"kind": "status", "status": 502, "body": "<html>bad gateway</html>"})
    first = await put(sim, body())
    assert first.status_code == 422 and first.json() == {"error": "custom", "code": 7}
    second = await put(sim, body())
    assert second.status_code == 502 and second.text == "<html>bad gateway</html>"


async def test_raw_lines_as_given(sim):
    await script(sim, {"kind": "raw", "lines": ['a0:"x"', "zz:unknown", 'ad:{"finishReason":"stop"}\n']})
    assert lines(await put(sim, body())) == ['a0:"x"', "zz:unknown", 'ad:{"finishReason":"stop"}']


async def test_slow_stream_waits_before_and_between_lines(sim):
    await script(sim, {"kind": "text", "words": 4, "first_ms": 150, "delay_ms": 100})
    started = time.monotonic()
    response = await put(sim, body())
    assert time.monotonic() - started >= 0.15 + 4 * 0.1 - 0.02  # 4 words + finish: 4 gaps
    assert len(lines(response)) == 5


async def test_outcomes_are_taken_in_order_one_per_valid_call(sim):
    await script(sim, {"kind": "text", "text": "one"})
    response = await sim.post("/__sim/script", json={"outcomes": [{"kind": "text", "text": "two"}]})
    assert response.json() == {"queued": 2}
    assert (await put(sim, body(), content_type="application/json")).status_code == 400  # takes no outcome
    assert text_of(await put(sim, body())) == "one"
    assert text_of(await put(sim, body())) == "two"
    assert text_of(await put(sim, body())) == "hello there  world"  # the queue is empty: echo again


@pytest.mark.parametrize("outcomes, fragment", [
    ([{"kind": "poem"}], "Invalid value 'poem'"),
    ([{"kind": "text", "delay_ms": "slow"}], "Expected `int`, got `str`"),
    ([{"kind": "text", "colour": 1}], "unknown field `colour`"),
    ([{"kind": "challenge", "status": 200}], "Invalid enum value 200"),
    ([{"kind": "status"}], "missing required field `status`"),
    ({"outcome": []}, "Expected `array`, got `null`"),
])
async def test_a_bad_script_is_refused_clearly(sim, outcomes, fragment):
    response = await sim.post("/__sim/script", json=outcomes)
    assert response.status_code == 400 and fragment in response.json()["error"], response.text


# --- Control API ---------------------------------------------------------------------------------

async def test_requests_are_recorded_with_headers_body_and_verdict(sim):
    await put(sim, body())
    b = body()
    b["messages"][0]["evaluationId"] = "x"
    await put(sim, b)
    ok, refused = (await sim.get("/__sim/requests")).json()
    assert ok["method"] == "PUT" and ok["path"] == stream_path()
    assert ok["headers"]["content-type"] == "text/plain;charset=UTF-8" and AUTH_COOKIE in ok["headers"]["cookie"]
    assert json.loads(ok["body"]) == ok["json"] and ok["json"]["modelId"] == TEXT_MODEL
    assert (ok["status"], ok["error"], ok["outcome"]) == (200, None, "text")
    assert (ok["stream"], ok["lines_sent"]) == ("complete", 4)
    assert refused["status"] == 400 and refused["error"] == "messages[0].evaluationId must be null"
    assert refused["outcome"] is None and refused["stream"] is None


async def test_sessions_can_be_replaced_and_the_page_follows(sim):
    new, message = str(uuid.uuid4()), str(uuid.uuid4())
    response = await sim.post("/__sim/sessions", json={"sessions": [{"id": new, "mode": "battle"}],
                                                       "page": {"session_id": new, "message_id": message}})
    assert response.status_code == 200
    assert response.json()["sessions"] == [{"id": new, "mode": "battle"}]
    assert (await put(sim, body())).status_code == 401  # SESSION is no longer this account's
    assert (await put(sim, body(None, session=new), stream_path(new))).status_code == 200
    page = (await sim.get("/")).text
    assert f'data-session-id="{new}"' in page and f'data-message-id="{message}"' in page


@pytest.mark.parametrize("payload", [{"sessions": ["nope"]}, {"sessions": [{"id": SESSION, "mode": "duel"}]},
                                     {"page": {"session_id": "x"}}, {"sessions": [3]}, [1]])
async def test_bad_sessions_are_refused(sim, payload):
    response = await sim.post("/__sim/sessions", json=payload)
    assert response.status_code == 400 and response.json()["error"].startswith("bad sessions")


async def test_models_can_be_replaced(sim):
    model = {"id": str(uuid.uuid4()), "publicName": "new-model", "capabilities": {"outputCapabilities": {"text": True}}}
    assert (await sim.post("/__sim/models", json={"models": [model]})).json() == {"models": 1}
    assert (await put(sim, body(model["id"]))).status_code == 200
    assert (await put(sim, body(TEXT_MODEL))).status_code == 400
    assert (await sim.post("/__sim/models", json={"model": []})).status_code == 400


async def test_reset_forgets_script_requests_and_session_changes_but_keeps_the_account(sim):
    before = (await sim.get("/__sim/state")).json()
    await script(sim, {"kind": "status", "status": 429})
    await sim.post("/__sim/sessions", json={"sessions": []})
    await put(sim, body())
    after = (await sim.post("/__sim/reset")).json()
    assert after == before and after["script_pending"] == 0 and after["requests"] == 0
    assert (await put(sim, body())).status_code == 200  # the page's cookie still counts


def test_default_app_owns_the_page_session():
    state = create_app().state.sim
    assert list(state.sessions) == [state.page_session_id]


def test_cli_parses_simulate_lmarena():
    args = build_parser().parse_args(["simulate-lmarena", "--port", "5999"])
    assert (args.port, args.host) == (5999, "127.0.0.1") and callable(args.run)
    assert build_parser().parse_args(["simulate-lmarena"]).port == 5180
    assert lmarena_sim.STREAM_PATH.startswith("/nextjs-api/stream/retry-evaluation-session-message/")
