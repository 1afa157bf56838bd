"""The legacy (2025) retry path, still alive in 2026:
``PUT /nextjs-api/stream/retry-evaluation-session-message/{sessionId}/messages/{messageId}``.

It answers one assistant message again, always "by" the evaluation's own model for that side (the
body's ``modelId`` is ignored, as on the real path), echoing the last user message of the body that has words.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from arenahub.tools.arena_sim.admission import (
    answer,
    check_token,
    method_guard,
    no_access,
    read_json,
    refuse,
    require_session,
)
from arenahub.tools.arena_sim.answers import Question, Side
from arenahub.tools.arena_sim.checks import Refused, check_retry, is_uuid
from arenahub.tools.arena_sim.log import open_record
from arenahub.tools.arena_sim.state import sim_of


async def retry_message(request: Request) -> Response:
    sim = sim_of(request)
    record = sim.record(open_record(request, "retry", sim.now()))
    if (guarded := method_guard(request, record, "PUT")) is not None:
        return guarded
    session_id, message_id = request.path_params["session"].lower(), request.path_params["message"].lower()
    try:
        body = await read_json(request, record)
        require_session(request, sim)
        evaluation = sim.evaluations.get(session_id) if is_uuid(session_id) else None
        if evaluation is None:
            raise no_access(sim, request.path_params["session"])
        message = evaluation.messages.get(message_id)
        if message is None or message.role != "assistant":
            raise Refused(404, {"error": "Message not found"},
                          f"message: {message_id} is not an assistant message of {session_id}")
        if message.has_feedback:
            raise Refused(400, {"error": "Message already has feedback, cannot retry"},
                          f"feedback: {message_id} already has feedback")
        body = check_retry(body, session_id)
        check_token(sim, body, "chat_retry")
    except Refused as refused:
        return refuse(record, refused)
    position = message.position or "a"
    model_id = evaluation.model_b if position == "b" else evaluation.model_a
    model = next((m for m in sim.models if m.id == model_id), None)
    # The last user message with words (LMArenaBridge's bypass appends an empty one after it).
    prompt = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user" and m["content"].strip()),
                  "")
    question = Question((Side(position, message.id, model),), evaluation.modality, prompt,
                        f"{request.url.scheme}://{request.url.netloc}", tuple(sim.models))

    def store(texts: dict[str, str]) -> None:
        message.content = texts.get(position, message.content)

    return answer(sim, record, question, store)
