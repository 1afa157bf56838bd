"""Follow-ups (post-to-evaluation) and the legacy retry path, with their own rules."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.tools.arena_support import (
    CLAUDE,
    GPT,
    create_body,
    follow_up_path,
    lines,
    open_site,
    retry_body,
    retry_path,
    text_of,
    turn_body,
    uuid7,
)


@pytest.fixture
async def site():
    async with open_site() as s:
        yield s


async def created(site, mode: str = "direct") -> dict[str, Any]:
    body = create_body(mode)
    assert (await site.create(body)).status_code == 200
    return body


def evaluation(state: dict[str, Any], session_id: str) -> dict[str, Any]:
    return next(e for e in state["evaluations"] if e["id"] == session_id)


# --- Follow-ups ---------------------------------------------------------------------------------

async def test_a_follow_up_appends_a_turn_and_echoes(site):
    first = await created(site)
    turn = turn_body("and again")
    response = await site.follow_up(first["id"], turn)
    assert response.status_code == 200
    assert lines(response)[0] == f'af:{{"messageId":"{turn["modelAMessageId"]}"}}'
    assert text_of(response) == "and again"
    messages = evaluation(await site.state(), first["id"])["messages"]
    assert [m["id"] for m in messages] == [first["userMessageId"], first["modelAMessageId"], turn["userMessageId"],
                                           turn["modelAMessageId"]]
    assert (await site.last())["kind"] == "follow_up"


async def test_a_follow_up_may_repeat_what_matches(site):
    first = await created(site, "side-by-side")
    turn = turn_body(battle=True, id=first["id"], mode="side-by-side", modelAId=GPT, modelBId=CLAUDE)
    response = await site.follow_up(first["id"], turn)
    assert response.status_code == 200 and text_of(response, "b") == "B: hello there  world"


async def test_the_page_conversation_takes_follow_ups(site):
    page = (await site.state())["page"]["session_id"]
    assert (await site.follow_up(page)).status_code == 200


@pytest.mark.parametrize("session_id", ["5c1f7a52-2d0e-4b8e-9a51-3f4d2c1b0a99", "not-a-uuid"])
async def test_a_follow_up_to_an_unknown_evaluation_is_no_access(site, session_id):
    response = await site.follow_up(session_id)
    assert response.status_code == 401
    assert response.json() == {"error": f"User {site.sim.user_id} does not have access to evaluation session "
                                        f"{session_id}"}


@pytest.mark.parametrize("field, value, message", [
    ("id", "other", "id does not match the evaluation session in the path"),
    ("mode", "battle", "mode does not match the evaluation session's mode (direct)"),
    ("modelAId", CLAUDE, "modelAId does not match the evaluation session's model"),
])
async def test_a_follow_up_must_match_the_evaluation(site, field, value, message):
    first = await created(site)
    turn = turn_body(**{field: uuid7() if value == "other" else value})
    response = await site.follow_up(first["id"], turn)
    assert response.status_code == 400
    (issue,) = response.json()["issues"]
    assert issue == {"code": "custom", "path": [field], "message": message}


async def test_a_battle_follow_up_needs_model_b_message_id(site):
    first = await created(site, "battle")
    response = await site.follow_up(first["id"], turn_body())
    assert response.status_code == 400 and response.json()["issues"][0]["path"] == ["modelBMessageId"]
    assert (await site.follow_up(first["id"], turn_body(battle=True))).status_code == 200


async def test_follow_up_ids_are_uuid7_fresh_and_recent(site):
    first = await created(site)
    response = await site.follow_up(first["id"], turn_body(modelAMessageId=str(uuid.uuid4())))
    assert response.json() == {"error": "Invalid ID: expected a UUIDv7", "path": ["modelAMessageId"]}
    response = await site.follow_up(first["id"], turn_body(userMessageId=first["userMessageId"]))
    assert response.status_code == 409 and response.json()["path"] == ["userMessageId"]
    response = await site.follow_up(first["id"], turn_body(userMessageId=uuid7(-4000)))
    assert response.json() == {"error": "User message ID seems spoofed, offset too big"}


async def test_a_follow_up_needs_a_chat_submit_token(site):
    first = await created(site)
    response = await site.follow_up(first["id"], action="chat_retry")
    assert response.status_code == 403 and (await site.last())["error"] == "recaptcha: wrong action chat_retry"


async def test_a_follow_up_checks_the_session_first(site):
    first = await created(site)
    site.client.cookies.clear()
    response = await site.follow_up(first["id"])
    assert response.status_code == 401 and response.json() == {"error": "User not found"}


async def test_a_guest_follow_up_is_gated_by_the_evaluations_mode(site):
    first = await created(site)
    await site.client.post("/__sim/auth", json={"auto_sign_in": "guest", "revoke": True})
    await site.client.get("/")
    response = await site.follow_up(first["id"])
    assert response.status_code == 401 and response.json()["code"] == "LOGIN_REQUIRED"


async def test_a_follow_up_checks_the_modality_against_the_models(site):
    first = await created(site)
    response = await site.follow_up(first["id"], turn_body(modality="image"))
    assert response.json() == {"error": "Model gpt-5-high does not support modality image"}


# --- The legacy retry path ----------------------------------------------------------------------

async def page_ids(site) -> tuple[str, str]:
    page = (await site.state())["page"]
    return page["session_id"], page["message_id"]


async def test_retry_of_the_page_conversation_echoes_the_last_user_message(site):
    session_id, message_id = await page_ids(site)
    body = retry_body(session_id, message_id, ("system", "Be brief."), ("user", "first"), ("assistant", "ok"),
                      ("user", "the last one"))
    response = await site.retry(session_id, message_id, body)
    assert response.status_code == 200
    assert lines(response) == [f'af:{{"messageId":"{message_id}"}}', 'a0:"the "', 'a0:"last "', 'a0:"one"',
                               'ae:{"finishReason":"stop","isContinued":false}',
                               'ad:{"finishReason":"stop","usage":{"promptTokens":3,"completionTokens":3}}']
    messages = evaluation(await site.state(), session_id)["messages"]
    assert next(m for m in messages if m["id"] == message_id)["content"] == "the last one"
    assert (await site.last())["kind"] == "retry"


async def test_retry_ignores_model_id(site):
    session_id, message_id = await page_ids(site)
    body = retry_body(session_id, message_id, modelId=str(uuid.uuid4()))
    assert (await site.retry(session_id, message_id, body)).status_code == 200


async def test_retry_of_a_battle_b_message_answers_on_side_b(site):
    first = await created(site, "battle")
    response = await site.retry(first["id"], first["modelBMessageId"],
                                retry_body(first["id"], first["modelBMessageId"]))
    assert lines(response)[0] == f'bf:{{"messageId":"{first["modelBMessageId"]}"}}'
    assert text_of(response, "b") == "B: hello there  world"


async def test_retry_refusals_in_order(site):
    session_id, message_id = await page_ids(site)
    other = str(uuid.uuid4())
    response = await site.retry(other, message_id, retry_body(other, message_id))
    assert response.status_code == 401
    assert response.json() == {"error": f"User {site.sim.user_id} does not have access to evaluation session {other}"}
    user_message = (await site.state())["page"]["user_message_id"]
    for missing in (user_message, other):
        response = await site.retry(session_id, missing, retry_body(session_id, missing))
        assert response.status_code == 404 and response.json() == {"error": "Message not found"}
    feedback = {"session_id": session_id, "message_id": message_id, "has_feedback": True}
    assert (await site.client.post("/__sim/feedback", json=feedback)).status_code == 200
    response = await site.retry(session_id, message_id)
    assert response.status_code == 400 and response.json() == {"error": "Message already has feedback, cannot retry"}
    assert evaluation(await site.state(), session_id)["messages"][1]["has_feedback"] is True
    await site.client.post("/__sim/feedback", json={**feedback, "has_feedback": False})
    assert (await site.retry(session_id, message_id)).status_code == 200


async def test_retry_needs_a_chat_retry_token(site):
    session_id, message_id = await page_ids(site)
    response = await site.retry(session_id, message_id, action="chat_submit")
    assert response.status_code == 403 and response.json() == {"error": "recaptcha validation failed"}
    assert (await site.last())["error"] == "recaptcha: wrong action chat_submit"


async def test_retry_without_a_session(site):
    session_id, message_id = await page_ids(site)
    site.client.cookies.clear()
    assert (await site.retry(session_id, message_id)).json() == {"error": "User not found"}


def _msg(i: int, field: str, value: Any):
    def mutate(body: dict[str, Any]) -> None:
        body["messages"][i][field] = value
    return mutate


RETRY_SCHEMA = [
    ("metadata null", _msg(0, "metadata", None), ["messages", 0, "metadata"], "Expected object, received null"),
    ("bad role", _msg(0, "role", "bot"), ["messages", 0, "role"],
     "Invalid enum value. Expected 'user' | 'assistant' | 'system', received 'bot'"),
    ("evaluationId set", _msg(0, "evaluationId", "x"), ["messages", 0, "evaluationId"],
     "Expected null, received string"),
    ("failureReason set", _msg(1, "failureReason", "x"), ["messages", 1, "failureReason"],
     "Expected null, received string"),
    ("id not a uuid", _msg(0, "id", "m1"), ["messages", 0, "id"], "Invalid uuid"),
    ("bad createdAt", _msg(0, "createdAt", "yesterday"), ["messages", 0, "createdAt"], "Invalid datetime"),
    ("bad position", _msg(1, "participantPosition", "c"), ["messages", 1, "participantPosition"],
     "Invalid enum value. Expected 'a' | 'b', received 'c'"),
    ("attachments not a list", _msg(0, "experimental_attachments", {}), ["messages", 0, "experimental_attachments"],
     "Expected array, received object"),
    ("other session", _msg(0, "evaluationSessionId", str(uuid.uuid4())), ["messages", 0, "evaluationSessionId"],
     "evaluationSessionId must be the session in the path"),
    ("broken chain", _msg(1, "parentMessageIds", []), ["messages", 1, "parentMessageIds"], None),
    ("last not pending", _msg(1, "status", "success"), ["messages", 1, "status"], "status must be 'pending'"),
    ("earlier pending", _msg(0, "status", "pending"), ["messages", 0, "status"], "status must be 'success'"),
    ("no messages", lambda b: b.update(messages=[]), ["messages"], "Array must contain at least 1 element(s)"),
    ("no modelId", lambda b: b.pop("modelId"), ["modelId"], "Required"),
    ("modelId not a uuid", lambda b: b.update(modelId="gpt"), ["modelId"], "Invalid uuid"),
]


@pytest.mark.parametrize("mutate, path, message", [pytest.param(*c[1:], id=c[0]) for c in RETRY_SCHEMA])
async def test_retry_schema(site, mutate, path, message):
    session_id, message_id = await page_ids(site)
    body = retry_body(session_id, message_id)
    mutate(body)
    response = await site.retry(session_id, message_id, body)
    assert response.status_code == 400 and response.json()["error"] == "Invalid request body"
    issue = response.json()["issues"][0]
    assert issue["path"] == path
    if message is not None:
        assert issue["message"] == message


async def test_retry_405_and_options(site):
    session_id, message_id = await page_ids(site)
    response = await site.client.post(retry_path(session_id, message_id), content=b"{}")
    assert response.status_code == 405 and "PUT" in response.headers["allow"]
    assert (await site.client.options(retry_path(session_id, message_id))).status_code == 204
    assert (await site.client.get(follow_up_path(session_id))).status_code == 405
