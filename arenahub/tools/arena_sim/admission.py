"""The checks the three stream endpoints share, each raising ``Refused`` with the site's answer, and
the one place where a refusal or an outcome becomes the response.

The endpoints (``evaluations``, ``retry``) call these in the site's order; the first that fails
answers, and its reason goes into the request log.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arenahub.tools.arena_sim.answers import LineStream, Question, default_outcome, immediate, plan
from arenahub.tools.arena_sim.auth import AuthSession, valid_session
from arenahub.tools.arena_sim.catalog import Model, find
from arenahub.tools.arena_sim.checks import Refused
from arenahub.tools.arena_sim.log import RequestRecord
from arenahub.tools.arena_sim.outcomes import Block, Challenge, Html, Schema, Status
from arenahub.tools.arena_sim.state import SimState

MAX_ATTACHMENTS = 10


def method_guard(request: Request, record: RequestRecord, allowed: str) -> Response | None:
    """OPTIONS: 204; any method but ``allowed``: 405. Both name the methods in ``Allow``."""
    if request.method == allowed:
        return None
    headers = {"allow": f"OPTIONS, {allowed}"}
    if request.method == "OPTIONS":
        record.status = 204
        return Response(status_code=204, headers=headers)
    record.status, record.error = 405, f"method: {request.method} not allowed"
    return JSONResponse({"error": "Method Not Allowed"}, status_code=405, headers=headers)


async def read_json(request: Request, record: RequestRecord) -> Any:
    """Any content type: the page itself sends ``text/plain;charset=UTF-8``."""
    try:
        body = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        raise Refused(400, {"error": "Invalid JSON body"}, "json: the body is not JSON") from None
    record.set_body(body)
    return body


def require_session(request: Request, sim: SimState) -> AuthSession:
    session = valid_session(request, sim.session)
    if session is None:
        raise Refused(401, {"error": "User not found"}, "session: no valid auth session cookie")
    return session


def no_access(sim: SimState, session_id: str) -> Refused:
    return Refused(401, {"error": f"User {sim.user_id} does not have access to evaluation session {session_id}"},
                   f"access: {session_id} is not an evaluation session of this account")


def require_fresh_messages(sim: SimState, body: Mapping[str, Any], names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        message_id = body[name].lower()
        if message_id in seen or sim.message_id_used(message_id):
            raise Refused(409, {"error": "Message already exists", "path": [name]}, f"ids: {name} is already used")
        seen.add(message_id)


def guest_gate(session: AuthSession, mode: str) -> None:
    if session.is_anonymous and mode not in ("battle", "direct-battle"):
        raise Refused(401, {"error": "Sign in to chat with a specific model", "code": "LOGIN_REQUIRED"},
                      f"guest: mode {mode} needs a signed-in user")


def check_token(sim: SimState, body: Mapping[str, Any], action: str) -> None:
    """The token is used up here whatever follows; ``fail_next`` counts every call that gets this far."""
    reason = sim.tokens.redeem(body.get("recaptchaV3Token"), site_key=sim.site_key, action=action, now=sim.now(),
                               ttl=sim.token_ttl_seconds)
    if sim.take_fail_next() and reason is None:
        reason = "recaptcha: low score (fail_next)"
    if reason is not None:
        raise Refused(403, {"error": "recaptcha validation failed"}, reason)


def check_model(sim: SimState, field: str, model_id: str | None, modality: str) -> Model:
    model = find(sim.models, model_id)
    if model is None:
        raise Refused(400, {"error": "Model not found", "path": [field]}, f"models: {field} {model_id} is not known")
    if not model.userSelectable:
        raise Refused(400, {"error": "Model not available"}, f"models: {model.publicName} is not user-selectable")
    if not model.supports(modality):
        raise Refused(400, {"error": f"Model {model.publicName} does not support modality {modality}"},
                      f"models: {model.publicName} does not support modality {modality}")
    return model


def pick_hidden(sim: SimState, modality: str, other_than: Model | None) -> Model:
    """A model the arena picks for a battle side: selectable, fit for the modality, unlike the other side."""
    fit = [m for m in sim.models if m.userSelectable and m.supports(modality)]
    if not fit:
        raise Refused(400, {"error": f"No model supports modality {modality}"}, f"models: none fits {modality}")
    others = [m for m in fit if m is not other_than] or fit
    return secrets.choice(others)


def check_attachments(sim: SimState, attachments: Sequence[Mapping[str, Any]]) -> None:
    where = ["userMessage", "experimental_attachments"]
    if len(attachments) > MAX_ATTACHMENTS:
        raise Refused(400, {"error": f"Too many attachments (at most {MAX_ATTACHMENTS})", "path": where},
                      f"attachments: {len(attachments)} > {MAX_ATTACHMENTS}")
    for i, attachment in enumerate(attachments):
        if not sim.storage.is_attachment_url(attachment["url"], sim.now()):
            raise Refused(400, {"error": "Invalid attachment", "path": [*where, i, "url"]},
                          f"attachments: {i}: not a live signed storage URL issued here")


def refuse(record: RequestRecord, refused: Refused) -> Response:
    record.status, record.error = refused.status, refused.reason
    return JSONResponse(refused.body, status_code=refused.status, headers=refused.headers)


def answer(sim: SimState, record: RequestRecord, question: Question,
           on_complete: Callable[[dict[str, str]], None]) -> Response:
    """The next scripted outcome (or the default for the modality) answers a call that passed every check."""
    outcome = sim.next_outcome(default_outcome(question.modality))
    record.outcome = outcome.kind
    if isinstance(outcome, Challenge | Block | Status | Schema | Html):
        response = immediate(outcome)
        record.status = response.status_code
        return response
    record.status = 200
    lines = plan(outcome, question)
    return LineStream(lines, record, lambda: on_complete(lines.texts))
