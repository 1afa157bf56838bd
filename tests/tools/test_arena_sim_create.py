"""create-evaluation: every check in the site's order, the reCAPTCHA token lifecycle, the default answers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
import pytest

from tests.tools.arena_support import (
    CLAUDE,
    CREATE,
    GPT,
    GROUNDING,
    IMAGEN,
    INTERNAL,
    PROMPT,
    VEO,
    create_body,
    lines,
    open_site,
    text_of,
    uuid7,
)


@pytest.fixture
async def site():
    async with open_site() as s:
        yield s


def finish(p: str, prompt_words: int, completion_words: int) -> list[str]:
    usage = {"promptTokens": prompt_words, "completionTokens": completion_words}
    return [f'{p}e:{{"finishReason":"stop","isContinued":false}}',
            f"{p}d:" + json.dumps({"finishReason": "stop", "usage": usage}, separators=(",", ":"))]


# --- A valid call --------------------------------------------------------------------------------

async def test_direct_answers_with_an_echo_in_data_stream_lines(site):
    body = create_body()
    response = await site.create(body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-vercel-ai-data-stream"] == "v1"
    assert lines(response) == [f'af:{{"messageId":"{body["modelAMessageId"]}"}}', 'a0:"hello "', 'a0:"there  "',
                               'a0:"world"', *finish("a", 3, 3)]
    evaluation = next(e for e in (await site.state())["evaluations"] if e["id"] == body["id"])
    assert evaluation["mode"] == "direct" and evaluation["model_a_id"] == GPT
    assert [(m["role"], m["content"]) for m in evaluation["messages"]] == [("user", PROMPT), ("assistant", PROMPT)]


@pytest.mark.parametrize("mode", ["direct-battle", "side-by-side", "battle"])
async def test_battle_modes_answer_on_both_sides_interleaved(site, mode):
    body = create_body(mode, content="one two")
    response = await site.create(body)
    assert response.status_code == 200, response.text
    assert lines(response) == [
        f'af:{{"messageId":"{body["modelAMessageId"]}"}}', f'bf:{{"messageId":"{body["modelBMessageId"]}"}}',
        'a0:"one "', 'b0:"B: "', 'a0:"two"', 'b0:"one "', 'ae:{"finishReason":"stop","isContinued":false}',
        'b0:"two"', finish("a", 2, 2)[1], *finish("b", 2, 3)]
    evaluation = next(e for e in (await site.state())["evaluations"] if e["id"] == body["id"])
    assert evaluation["model_a_id"] and evaluation["model_b_id"]
    if mode == "side-by-side":
        assert (evaluation["model_a_id"], evaluation["model_b_id"]) == (GPT, CLAUDE)


async def test_any_content_type_is_accepted_and_unknown_keys_ignored(site):
    body = {**create_body(), "somethingNew": [1, 2], "recaptchaV2Token": None,
            "recaptchaV3Token": await site.token()}
    response = await site.client.post(CREATE, json=body)
    assert response.status_code == 200 and text_of(response) == PROMPT


async def test_image_modality_answers_with_an_image_by_default(site):
    response = await site.create(create_body(modelAId=IMAGEN, modality="image"))
    head, image, end, done = lines(response)
    assert head.startswith("af:") and end.startswith("ae:") and done.startswith("ad:")
    (item,) = json.loads(image[3:])
    assert image.startswith("a2:") and item["type"] == "image" and item["mimeType"] == "image/png"
    assert item["image"].startswith("https://arena.ai/__sim/images/")
    png = await site.client.get(item["image"])
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG\r\n\x1a\n")


async def test_search_modality_adds_two_citations_split_over_lines(site):
    response = await site.create(create_body(modelAId=GROUNDING, modality="search"))
    cited = [json.loads(line[3:]) for line in lines(response) if line.startswith("ac:")]
    assert len(cited) == 2 and len({c["toolCallId"] for c in cited}) == 1
    sources = json.loads("".join(c["argsTextDelta"] for c in cited))["source"]
    assert len(sources) == 2 and all(set(s) == {"url", "title"} for s in sources)
    assert text_of(response) == PROMPT


# --- Refusals before the schema ---------------------------------------------------------------------

async def test_a_body_that_is_not_json(site):
    response = await site.send(CREATE, "{nope", action=None)
    assert response.status_code == 400 and response.json() == {"error": "Invalid JSON body"}


async def test_no_session_is_user_not_found(site):
    site.client.cookies.clear()
    response = await site.create()
    assert response.status_code == 401 and response.json() == {"error": "User not found"}
    assert (await site.last())["error"] == "session: no valid auth session cookie"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_are_405_and_options_204(site, method):
    response = await site.client.request(method, CREATE)
    assert response.status_code == 405 and "POST" in response.headers["allow"]
    options = await site.client.options(CREATE)
    assert options.status_code == 204 and "POST" in options.headers["allow"]


# --- The schema ------------------------------------------------------------------------------------

def _without(*path: str | int):
    def mutate(b: dict[str, Any]) -> None:
        target: Any = b
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def _with(value: Any, *path: str | int):
    def mutate(b: dict[str, Any]) -> None:
        target: Any = b
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


SCHEMA = [
    ("no id", "direct", _without("id"), ["id"], "invalid_type", "Required"),
    ("id not a uuid", "direct", _with("e-1", "id"), ["id"], "invalid_string", "Invalid uuid"),
    ("unknown mode", "direct", _with("duel", "mode"), ["mode"], "invalid_enum_value",
     "Invalid enum value. Expected 'direct' | 'direct-battle' | 'side-by-side' | 'battle', received 'duel'"),
    ("mode a number", "direct", _with(1, "mode"), ["mode"], "invalid_type",
     "Expected 'direct' | 'direct-battle' | 'side-by-side' | 'battle', received number"),
    ("direct without modelAId", "direct", _without("modelAId"), ["modelAId"], "custom",
     "modelAId is required for mode direct"),
    ("direct-battle modelAId null", "direct-battle", _with(None, "modelAId"), ["modelAId"], "custom",
     "modelAId is required for mode direct-battle"),
    ("battle with modelAId", "battle", _with(GPT, "modelAId"), ["modelAId"], "custom",
     "modelAId must be empty for mode battle"),
    ("side-by-side without modelBId", "side-by-side", _without("modelBId"), ["modelBId"], "custom",
     "modelBId is required for mode side-by-side"),
    ("direct with modelBId", "direct", _with(CLAUDE, "modelBId"), ["modelBId"], "custom",
     "modelBId must be empty for mode direct"),
    ("modelAId not a uuid", "direct", _with("gpt-5", "modelAId"), ["modelAId"], "invalid_string", "Invalid uuid"),
    ("no userMessageId", "direct", _without("userMessageId"), ["userMessageId"], "invalid_type", "Required"),
    ("no modelAMessageId", "direct", _without("modelAMessageId"), ["modelAMessageId"], "invalid_type", "Required"),
    ("battle without modelBMessageId", "battle", _without("modelBMessageId"), ["modelBMessageId"], "custom",
     "modelBMessageId is required for mode battle"),
    ("modelBMessageId null", "direct", _with(None, "modelBMessageId"), ["modelBMessageId"], "invalid_type",
     "Expected string, received null"),
    ("no userMessage", "direct", _without("userMessage"), ["userMessage"], "invalid_type", "Required"),
    ("userMessage a string", "direct", _with("hi", "userMessage"), ["userMessage"], "invalid_type",
     "Expected object, received string"),
    ("empty content", "direct", _with("", "userMessage", "content"), ["userMessage", "content"], "too_small",
     "String must contain at least 1 character(s)"),
    ("content parts", "direct", _with([{"type": "text"}], "userMessage", "content"), ["userMessage", "content"],
     "invalid_type", "Expected string, received array"),
    ("metadata null", "direct", _with(None, "userMessage", "metadata"), ["userMessage", "metadata"],
     "invalid_type", "Expected object, received null"),
    ("no metadata", "direct", _without("userMessage", "metadata"), ["userMessage", "metadata"], "invalid_type",
     "Required"),
    ("attachments null", "direct", _with(None, "userMessage", "experimental_attachments"),
     ["userMessage", "experimental_attachments"], "invalid_type", "Expected array, received null"),
    ("attachment without url", "direct", _with([{"name": "a.png", "contentType": "image/png"}], "userMessage",
                                               "experimental_attachments"),
     ["userMessage", "experimental_attachments", 0, "url"], "invalid_type", "Required"),
    ("unknown modality", "direct", _with("audio", "modality"), ["modality"], "invalid_enum_value",
     "Invalid enum value. Expected 'chat' | 'image' | 'search' | 'webdev' | 'video', received 'audio'"),
    ("no modality", "direct", _without("modality"), ["modality"], "invalid_type", "Required"),
    ("token a number", "direct", _with(7, "recaptchaV3Token"), ["recaptchaV3Token"], "invalid_type",
     "Expected string, received number"),
    ("v2 token a number", "direct", _with(7, "recaptchaV2Token"), ["recaptchaV2Token"], "invalid_type",
     "Expected string, received number"),
]


@pytest.mark.parametrize("mode, mutate, path, code, message", [pytest.param(*case[1:], id=case[0]) for case in SCHEMA])
async def test_schema_refusals_name_the_path(site, mode, mutate, path, code, message):
    body = create_body(mode)
    mutate(body)
    response = await site.create(body, action=None if "recaptchaV3Token" in body else "chat_submit")
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["error"] == "Invalid request body"
    (issue,) = payload["issues"]
    assert (issue["path"], issue["code"], issue["message"]) == (path, code, message)
    record = await site.last()
    assert record["error"] == f"schema: {'.'.join(map(str, path))}: {message}"
    assert record["outcome"] is None and record["json"]["mode"] == body.get("mode")


async def test_every_issue_is_listed_with_zod_fields(site):
    body = create_body(mode="duel", modality=None)
    body["userMessage"]["metadata"] = None
    del body["id"]
    response = await site.create(body)
    issues = response.json()["issues"]
    assert [i["path"] for i in issues] == [["id"], ["mode"], ["userMessage", "metadata"], ["modality"]]
    assert issues[0] == {"code": "invalid_type", "expected": "string", "received": "undefined", "path": ["id"],
                         "message": "Required"}
    assert issues[1]["options"] == ["direct", "direct-battle", "side-by-side", "battle"]
    assert issues[1]["received"] == "duel"
    assert issues[2] == {"code": "invalid_type", "expected": "object", "received": "null",
                         "path": ["userMessage", "metadata"], "message": "Expected object, received null"}


async def test_a_body_that_is_not_an_object(site):
    response = await site.send(CREATE, [1], action=None)
    assert response.status_code == 400 and response.json()["issues"][0]["path"] == []


# --- ids --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["id", "userMessageId", "modelAMessageId", "modelBMessageId"])
async def test_uuid4_ids_are_refused(site, name):
    body = create_body("direct-battle", **{name: str(uuid.uuid4())})
    response = await site.create(body)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid ID: expected a UUIDv7", "path": [name]}


async def test_a_uuid7_with_the_wrong_variant_is_refused(site):
    bad = uuid7()
    bad = bad[:19] + "c" + bad[20:]
    response = await site.create(create_body(id=bad))
    assert response.json() == {"error": "Invalid ID: expected a UUIDv7", "path": ["id"]}


@pytest.mark.parametrize("offset, status", [(-7200, 400), (3700, 400), (-1800, 200), (1800, 200)])
async def test_the_id_timestamp_must_be_within_an_hour(site, offset, status):
    response = await site.create(create_body(id=uuid7(offset)))
    assert response.status_code == status
    if status == 400:
        assert response.json() == {"error": "Evaluation session ID seems spoofed, offset too big"}


async def test_an_existing_evaluation_id_is_a_conflict(site):
    body = create_body()
    assert (await site.create(body)).status_code == 200
    again = await site.create({**body, "userMessageId": uuid7(), "modelAMessageId": uuid7()})
    assert again.status_code == 409 and again.json() == {"error": "Evaluation session already exists"}
    page = (await site.state())["page"]["session_id"]
    assert (await site.create(create_body(id=page))).status_code == 409


async def test_a_used_message_id_is_a_conflict(site):
    first = create_body()
    await site.create(first)
    response = await site.create(create_body(userMessageId=first["modelAMessageId"]))
    assert response.status_code == 409 and response.json()["path"] == ["userMessageId"]
    same = uuid7()
    response = await site.create(create_body(userMessageId=same, modelAMessageId=same))
    assert response.status_code == 409 and response.json()["path"] == ["modelAMessageId"]


# --- Guests --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, status", [("direct", 401), ("side-by-side", 401), ("battle", 200),
                                          ("direct-battle", 200)])
async def test_guests_may_only_battle(mode, status):
    async with open_site(auto_sign_in="guest") as site:
        response = await site.create(create_body(mode))
        assert response.status_code == status
        if status == 401:
            assert response.json() == {"error": "Sign in to chat with a specific model", "code": "LOGIN_REQUIRED"}


# --- reCAPTCHA ---------------------------------------------------------------------------------------

async def refused_for(site, body: dict[str, Any]) -> str:
    response = await site.create(body, action=None)
    assert response.status_code == 403 and response.json() == {"error": "recaptcha validation failed"}
    record = await site.last()
    assert record["json"].get("recaptchaV3Token") in (None, "<token>")
    return str(record["error"])


async def test_a_missing_token(site):
    assert await refused_for(site, create_body()) == "recaptcha: missing token"


async def test_an_unknown_token(site):
    assert await refused_for(site, create_body(recaptchaV3Token="03AFcWeA" + "x" * 392)) == "recaptcha: unknown token"


async def test_a_reused_token(site):
    token = await site.token()
    assert (await site.create(create_body(recaptchaV3Token=token))).status_code == 200
    assert await refused_for(site, create_body(recaptchaV3Token=token)) == "recaptcha: reused token"


async def test_an_expired_token(site):
    await site.client.post("/__sim/recaptcha", json={"token_ttl_seconds": 0.05})
    token = await site.token()
    await anyio.sleep(0.1)
    assert (await refused_for(site, create_body(recaptchaV3Token=token))).startswith("recaptcha: expired token")


async def test_a_token_for_another_action(site):
    token = await site.token("chat_retry")
    assert await refused_for(site, create_body(recaptchaV3Token=token)) == "recaptcha: wrong action chat_retry"


async def test_a_token_for_an_old_site_key(site):
    token = await site.token()
    await site.client.post("/__sim/recaptcha", json={"rotate_site_key": True})
    assert await refused_for(site, create_body(recaptchaV3Token=token)) == "recaptcha: token for an old site key"


async def test_a_v2_token_never_stands_in_for_v3(site):
    assert await refused_for(site, create_body(recaptchaV2Token="solved-by-a-person")) == "recaptcha: missing token"


async def test_the_token_is_used_up_even_when_a_later_check_fails(site):
    token = await site.token()
    response = await site.create(create_body(modelAId=str(uuid.uuid4()), recaptchaV3Token=token))
    assert response.status_code == 400 and response.json()["error"] == "Model not found"
    assert await refused_for(site, create_body(recaptchaV3Token=token)) == "recaptcha: reused token"


async def test_a_token_is_not_used_by_a_call_refused_before_the_check(site):
    token = await site.token()
    assert (await site.create(create_body(mode="duel", recaptchaV3Token=token))).status_code == 400
    assert (await site.create(create_body(recaptchaV3Token=token))).status_code == 200


async def test_fail_next_refuses_good_tokens(site):
    await site.client.post("/__sim/recaptcha", json={"fail_next": 2})
    assert (await site.create()).status_code == 403
    assert (await site.last())["error"] == "recaptcha: low score (fail_next)"
    assert (await site.create()).status_code == 403
    assert (await site.create()).status_code == 200


# --- Models -----------------------------------------------------------------------------------------

MODEL_REFUSALS = [
    ("unknown model A", create_body(modelAId="00000000-0000-4000-8000-000000000000"),
     {"error": "Model not found", "path": ["modelAId"]}),
    ("unknown model B", create_body("side-by-side", modelBId="00000000-0000-4000-8000-000000000000"),
     {"error": "Model not found", "path": ["modelBId"]}),
    ("not selectable", create_body(modelAId=INTERNAL), {"error": "Model not available"}),
    ("text model, image modality", create_body(modality="image"),
     {"error": "Model gpt-5-high does not support modality image"}),
    ("image model, chat", create_body(modelAId=IMAGEN),
     {"error": "Model imagen-4.0-generate does not support modality chat"}),
    ("no search", create_body(modality="search"), {"error": "Model gpt-5-high does not support modality search"}),
    ("video only", create_body(modelAId=VEO, modality="video"),
     {"error": "Model veo-3 does not support modality video"}),
    ("video only, chat", create_body(modelAId=VEO), {"error": "Model veo-3 does not support modality chat"}),
    ("side-by-side B unfit", create_body("side-by-side", modelBId=IMAGEN),
     {"error": "Model imagen-4.0-generate does not support modality chat"}),
    ("battle video", create_body("battle", modality="video"), {"error": "No model supports modality video"}),
]


@pytest.mark.parametrize("body, expected", [pytest.param(b, e, id=n) for n, b, e in MODEL_REFUSALS])
async def test_model_checks(site, body, expected):
    body = {**body, "id": uuid7(), "userMessageId": uuid7(), "modelAMessageId": uuid7()}
    response = await site.create(body)
    assert response.status_code == 400 and response.json() == expected


async def test_webdev_uses_a_text_model(site):
    assert (await site.create(create_body(modality="webdev"))).status_code == 200


# --- Attachments -------------------------------------------------------------------------------------

def _attachment(url: str) -> dict[str, str]:
    return {"name": "cat.png", "contentType": "image/png", "url": url}


async def test_attachment_urls_must_be_signed_here(site):
    body = create_body()
    body["userMessage"]["experimental_attachments"] = [_attachment("https://example.com/cat.png")]
    response = await site.create(body)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid attachment", "path": ["userMessage", "experimental_attachments", 0,
                                                                      "url"]}
    assert (await site.last())["error"].startswith("attachments: 0:")


async def test_at_most_ten_attachments(site):
    body = create_body()
    body["userMessage"]["experimental_attachments"] = [_attachment(f"https://x.test/{i}.png") for i in range(11)]
    response = await site.create(body)
    assert response.status_code == 400 and response.json()["error"] == "Too many attachments (at most 10)"


# --- The log ----------------------------------------------------------------------------------------

async def test_every_call_is_logged_without_tokens_or_cookie_values(site):
    await site.create()
    await site.send(CREATE, "{nope", action=None)
    ok, bad = (await site.log())[-2:]
    assert (ok["kind"], ok["status"], ok["error"], ok["outcome"], ok["stream"]) == ("create", 200, None, "text",
                                                                                   "complete")
    assert ok["json"]["recaptchaV3Token"] == "<token>" and ok["lines_sent"] == 6
    assert ok["headers"]["cookie"] == "arena-auth-prod-v1.0; arena-auth-prod-v1.1"
    assert ok["headers"]["content-type"] == "text/plain;charset=UTF-8" and isinstance(ok["at"], float)
    assert (bad["status"], bad["error"], bad["json"]) == (400, "json: the body is not JSON", None)
    assert site.sim.session.access_token not in json.dumps(await site.log())
