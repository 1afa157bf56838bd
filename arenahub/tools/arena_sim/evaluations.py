"""The 2026 stream API: ``create-evaluation`` (a new conversation) and ``post-to-evaluation/{id}``
(a follow-up), each checked in the site's order (see the package docstring) and then answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from arenahub.tools.arena_sim.admission import (
    answer,
    check_attachments,
    check_model,
    check_token,
    guest_gate,
    method_guard,
    no_access,
    pick_hidden,
    read_json,
    refuse,
    require_fresh_messages,
    require_session,
)
from arenahub.tools.arena_sim.answers import Question, Side
from arenahub.tools.arena_sim.catalog import Model
from arenahub.tools.arena_sim.checks import (
    BATTLE_MODES,
    Refused,
    check_create,
    check_follow_up,
    is_uuid,
    require_recent,
    require_uuid7,
)
from arenahub.tools.arena_sim.log import open_record
from arenahub.tools.arena_sim.state import Evaluation, Message, SimState, sim_of

_IDS = ("userMessageId", "modelAMessageId", "modelBMessageId")


def _turn_ids(mode: str) -> list[str]:
    """The message ids a turn creates: the user's, model A's, and model B's in the battle modes."""
    return list(_IDS if mode in BATTLE_MODES else _IDS[:2])


def _add_turn(sim: SimState, evaluation: Evaluation, body: dict[str, Any], request: Request) -> Question:
    """Store the user message and the answering side(s)' messages; the question they answer."""
    evaluation.modality = body["modality"]
    content = body["userMessage"]["content"]
    evaluation.add(Message(body["userMessageId"].lower(), "user", content))
    sides = [Side("a", body["modelAMessageId"].lower(), _model(sim, evaluation.model_a))]
    if evaluation.mode in BATTLE_MODES:
        sides.append(Side("b", body["modelBMessageId"].lower(), _model(sim, evaluation.model_b)))
    evaluation.add(*(Message(s.message_id, "assistant", "", s.position) for s in sides))
    return Question(tuple(sides), evaluation.modality, content, f"{request.url.scheme}://{request.url.netloc}",
                    tuple(sim.models))


def _model(sim: SimState, model_id: str | None) -> Model | None:
    return next((m for m in sim.models if m.id == model_id), None)


def _store_answer(evaluation: Evaluation, question: Question) -> Callable[[dict[str, str]], None]:
    """What a stream that ran to the end said becomes the content of its messages."""
    def store(texts: dict[str, str]) -> None:
        for side in question.sides:
            message = evaluation.messages.get(side.message_id)
            if message is not None and side.position in texts:
                message.content = texts[side.position]
    return store


async def create_evaluation(request: Request) -> Response:
    sim = sim_of(request)
    record = sim.record(open_record(request, "create", sim.now()))
    if (guarded := method_guard(request, record, "POST")) is not None:
        return guarded
    try:
        body = await read_json(request, record)
        session = require_session(request, sim)
        body = check_create(body)
        mode, modality = body["mode"], body["modality"]
        require_uuid7(body, ("id", *_IDS))
        require_recent(body["id"], sim.now(), "id", "Evaluation session ID seems spoofed, offset too big")
        if body["id"].lower() in sim.evaluations:
            raise Refused(409, {"error": "Evaluation session already exists"}, "ids: the evaluation id is taken")
        require_fresh_messages(sim, body, _turn_ids(mode))
        guest_gate(session, mode)
        check_token(sim, body, "chat_submit")
        model_a = check_model(sim, "modelAId", body["modelAId"], modality) if mode != "battle" else None
        model_b = check_model(sim, "modelBId", body["modelBId"], modality) if mode == "side-by-side" else None
        if mode == "battle":
            model_a = pick_hidden(sim, modality, None)
        if mode in ("battle", "direct-battle"):
            model_b = pick_hidden(sim, modality, model_a)
        check_attachments(sim, body["userMessage"]["experimental_attachments"])
    except Refused as refused:
        return refuse(record, refused)
    evaluation = Evaluation(body["id"].lower(), mode, modality, _lower(body.get("modelAId")),
                            _lower(body.get("modelBId")), model_a.id if model_a else None,
                            model_b.id if model_b else None)
    sim.evaluations[evaluation.id] = evaluation
    question = _add_turn(sim, evaluation, body, request)
    return answer(sim, record, question, _store_answer(evaluation, question))


async def post_to_evaluation(request: Request) -> Response:
    sim = sim_of(request)
    record = sim.record(open_record(request, "follow_up", sim.now()))
    if (guarded := method_guard(request, record, "POST")) is not None:
        return guarded
    session_id = request.path_params["id"].lower()
    try:
        body = await read_json(request, record)
        session = require_session(request, sim)
        evaluation = sim.evaluations.get(session_id) if is_uuid(session_id) else None
        if evaluation is None:
            raise no_access(sim, request.path_params["id"])
        body = check_follow_up(body, evaluation.id, evaluation.mode, evaluation.requested_a, evaluation.requested_b)
        modality = body["modality"]
        require_uuid7(body, _IDS)
        require_recent(body["userMessageId"], sim.now(), "userMessageId",
                       "User message ID seems spoofed, offset too big")
        require_fresh_messages(sim, body, _turn_ids(evaluation.mode))
        guest_gate(session, evaluation.mode)
        check_token(sim, body, "chat_submit")
        check_model(sim, "modelAId", evaluation.model_a, modality)
        if evaluation.model_b is not None:
            check_model(sim, "modelBId", evaluation.model_b, modality)
        check_attachments(sim, body["userMessage"]["experimental_attachments"])
    except Refused as refused:
        return refuse(record, refused)
    question = _add_turn(sim, evaluation, body, request)
    return answer(sim, record, question, _store_answer(evaluation, question))


def _lower(value: object) -> str | None:
    return value.lower() if isinstance(value, str) else None
