"""A local LMArena simulator: the arena page and the upstream endpoint, at its own origin.

``arenahub simulate-lmarena [--port 5180]`` runs it; tests build it with ``create_app()``. The
userscript calls the upstream relative to ``location.origin``, so it runs unchanged on this page.

The page, ``GET /``
    A minimal arena page titled "LMArena": a fake conversation and a Retry button. A click makes
    the page's own ``window.fetch`` (looked up at click time, so a wrapper sees it) to
    ``PUT /nextjs-api/stream/retry-evaluation-session-message/<session>/messages/<message>`` with
    the page's ids, which ``<main id="chat" data-session-id=... data-message-id=...>`` also shows;
    ``#answer`` gets ``data-state="done"`` (or ``"failed"``) when the answer is in. The page sets
    the account's auth cookie ``arena-auth-prod-v1``; upstream calls without it get a 401.

    The model list is embedded as on the real Next.js page: in React Server Components flight
    data, a JS string pushed to ``self.__next_f`` whose JSON therefore shows escaped quotes (one
    line in the page, wrapped here)::

        <script>self.__next_f.push([1,"7:[\\"$\\",\\"$L8\\",null,{\\"initialModels\\":[{\\"id\\":\\"<uuid>\\",
        \\"publicName\\":\\"gpt-5-high\\",\\"organization\\":\\"openai\\",\\"provider\\":\\"openai\\",
        \\"capabilities\\":{\\"inputCapabilities\\":{\\"text\\":true},\\"outputCapabilities\\":{\\"text\\":true}}},
        ...]}]\\n"])</script>

    That is: every model is one object starting ``{\\"id\\":\\"<uuid>\\"``; undo one level of JS
    string escaping (``\\"`` -> ``"``, ``\\\\`` -> ``\\``) and it parses as JSON. Image models have
    ``capabilities.outputCapabilities.image``; text models ``outputCapabilities.text``.

The upstream endpoint (every call is recorded for ``GET /__sim/requests``), checked in order
    405 a method other than PUT; 400 a session or message id in the path that is not a uuid;
    401 ``{"error": "Unauthorized: ..."}`` without the page's auth cookie; 401 ``{"error": "User
    <user id> does not have access to evaluation session <session>"}`` for a session that is not
    this account's; 400 a Content-Type other than ``text/plain;charset=UTF-8``; 400 a body that is
    not ``{"messages": [...], "modelId": uuid-or-null}`` with every message field as the site wants
    it (the error names the field, e.g. ``messages[1].parentMessageIds``); 400 an unknown modelId,
    or in a battle session a modelId or mixed participant positions; 413 attachments over the
    limit (5 MB). Then the next scripted outcome answers, or by default an echo of the last user
    message word by word (an image for an image model), as ``text/plain`` lines: ``a0:"<json
    string>"`` text (``b0:`` when the messages are in position b), ``a2:[{"type":"image",
    "image":URL}]``, ``ad:{"finishReason":"stop"}``, and error objects ``{"error":"..."}``.

The control API, for tests (all JSON)
    ``GET /__sim/state``: user id, auth cookie, page ids, sessions, models, script length.
    ``POST /__sim/script``: append outcomes (a list, or ``{"outcomes": [...]}``) to the queue;
    each upstream call that passes the checks takes the next one. Outcomes, by ``kind``:
    ``text`` (``text`` or ``words``: N, ``finish``: stop/length/content-filter/null),
    ``image`` (``urls`` or ``count``, optional ``text``, ``finish``), ``error`` (``message``
    after ``after_words`` words, as a bare ``{"error": ...}`` line or with ``line``: "a3" as
    ``a3:"message"``), ``challenge`` (the Cloudflare page, ``status`` 403 or 503),
    ``status`` (``status`` 401/413/422/429/..., optional ``body``), ``raw`` (``lines`` as
    given). Text, image, error and raw take ``first_ms`` and ``delay_ms`` (slow streams).
    ``POST /__sim/sessions``: ``{"sessions": [id or {"id", "mode": "direct_chat"|"battle"}],
    "page": {"session_id", "message_id"}}`` replaces this account's sessions (and the page ids).
    ``POST /__sim/models``: ``{"models": [...]}`` replaces the embedded model list.
    ``GET /__sim/requests``: the upstream calls received, each ``{method, path, headers (lower-case
    names), body (text), json, status, error (why it was refused), outcome (the kind that answered),
    stream ("complete", or "aborted" when the caller went away), lines_sent}``.
    ``POST /__sim/reset``: back to the start (the same account and cookie).
    ``GET /__sim/images/<name>.png``: the (1x1) image behind every generated image URL.

The checks and answers themselves live in ``lmarena_sim_upstream``.
"""

from __future__ import annotations

import argparse
import base64
import html
import secrets
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from arenahub.tools import lmarena_sim_upstream as upstream
from arenahub.tools.lmarena_sim_upstream import (
    MAX_ATTACHMENT_BYTES,
    STREAM_PATH,
    Session,
)

AUTH_COOKIE = "arena-auth-prod-v1"
_encode = msgspec.json.Encoder().encode
# A 1x1 transparent PNG, served for every generated image.
_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


def _model(name: str, org: str, image: bool = False) -> dict[str, Any]:
    output: dict[str, Any] = {"image": {"aspectRatios": ["1:1"]}} if image else {"text": True}
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "arenahub-sim/" + name)), "publicName": name,
            "organization": org, "provider": org,
            "capabilities": {"inputCapabilities": {"text": True, "image": True}, "outputCapabilities": output}}


DEFAULT_MODELS: tuple[dict[str, Any], ...] = (
    _model("gpt-5-high", "openai"), _model("claude-opus-4-1", "anthropic"),
    _model("gemini-2.5-pro", "google"), _model("imagen-4.0-generate", "google", image=True),
)


@dataclass
class SimState:
    """Everything the simulator knows; built once per app."""

    user_id: str
    auth_token: str
    page_session_id: str
    page_message_id: str
    sessions: dict[str, Session]
    models: list[dict[str, Any]]
    max_attachment_bytes: int
    script: deque[upstream.Outcome] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "auth_cookie": {"name": AUTH_COOKIE, "value": self.auth_token},
                "page": {"session_id": self.page_session_id, "message_id": self.page_message_id},
                "sessions": [{"id": s.id, "mode": s.mode} for s in self.sessions.values()],
                "models": self.models, "script_pending": len(self.script), "requests": len(self.requests)}


# --- The app -------------------------------------------------------------------------------------

def _sessions(items: list[Any]) -> dict[str, Session]:
    sessions: dict[str, Session] = {}
    for item in items:
        session = Session(item) if isinstance(item, str) else Session(item.get("id"), item.get("mode", "direct_chat"))
        if not upstream.is_uuid(session.id) or session.mode not in ("direct_chat", "battle"):
            raise ValueError(f"a session is a uuid or {{'id': uuid, 'mode': 'direct_chat'|'battle'}}, got {item!r}")
        sessions[session.id] = session
    return sessions


def create_app(*, sessions: list[str | dict[str, str]] | None = None, models: list[dict[str, Any]] | None = None,
               page_session_id: str | None = None, page_message_id: str | None = None,
               max_attachment_bytes: int = MAX_ATTACHMENT_BYTES) -> Starlette:
    """The simulator. ``sessions`` are this account's (default: just the page's session)."""
    page_session = page_session_id or str(uuid.uuid4())
    page_message = page_message_id or str(uuid.uuid4())
    initial_sessions = _sessions(sessions if sessions is not None else [page_session])
    initial_models = [dict(m) for m in (models if models is not None else DEFAULT_MODELS)]
    # The account stays the same across resets, so pages opened before one keep a valid cookie.
    user_id, auth_token = str(uuid.uuid4()), secrets.token_urlsafe(24)

    def fresh_state() -> SimState:
        return SimState(user_id=user_id, auth_token=auth_token, page_session_id=page_session,
                        page_message_id=page_message, sessions=dict(initial_sessions), models=list(initial_models),
                        max_attachment_bytes=max_attachment_bytes)

    app = Starlette()
    app.state.sim = fresh_state()

    def sim() -> SimState:
        return app.state.sim

    async def page(request: Request) -> Response:
        state = sim()
        response = HTMLResponse(render_page(state))
        response.set_cookie(AUTH_COOKIE, state.auth_token, path="/", samesite="lax")
        return response

    async def stream_endpoint(request: Request) -> Response:
        state = sim()
        raw = await request.body()
        record: dict[str, Any] = {"method": request.method, "path": request.url.path,
                                  "headers": {k.lower(): v for k, v in request.headers.items()},
                                  "body": raw.decode("utf-8", "replace"), "json": None, "status": None,
                                  "error": None, "outcome": None, "stream": None, "lines_sent": 0}
        state.requests.append(record)
        try:
            messages, session = _admit(request, raw, record, state)
        except upstream.Rejected as exc:
            record.update(status=exc.status, error=exc.message)
            headers = {"allow": "PUT"} if exc.status == 405 else None
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
        model = next((m for m in state.models if m.get("id") == record["json"]["modelId"]), None)
        is_image_model = bool(model and "image" in model.get("capabilities", {}).get("outputCapabilities", {}))
        default = upstream.Image() if is_image_model else upstream.Text()
        outcome: upstream.Outcome = state.script.popleft() if state.script else default
        record["outcome"] = outcome.__struct_config__.tag
        if isinstance(outcome, upstream.Status | upstream.Challenge):
            response = upstream.error_response(outcome, state.user_id, session.id)
            record["status"] = response.status_code
            return response
        position = messages[-1]["participantPosition"]
        lines = upstream.lines_for(outcome, position, upstream.last_user_text(messages), str(request.base_url))
        record["status"] = 200
        return StreamingResponse(upstream.stream(lines, outcome.first_ms, outcome.delay_ms, record),
                                 media_type="text/plain",
                                 headers={"x-vercel-ai-data-stream": "v1", "cache-control": "no-cache"})

    async def image(request: Request) -> Response:
        return Response(_PNG, media_type="image/png")

    async def control_state(request: Request) -> Response:
        return JSONResponse(sim().describe())

    async def control_script(request: Request) -> Response:
        try:
            raw = msgspec.json.decode(await request.body())
            items = raw.get("outcomes") if isinstance(raw, dict) else raw
            outcomes = upstream.decode_outcomes(_encode(items))
        except msgspec.MsgspecError as exc:
            return JSONResponse({"error": f"bad script: {exc}"}, status_code=400)
        sim().script.extend(outcomes)
        return JSONResponse({"queued": len(sim().script)})

    async def control_sessions(request: Request) -> Response:
        state = sim()
        try:
            raw = msgspec.json.decode(await request.body())
            sessions = _sessions(raw["sessions"]) if "sessions" in raw else state.sessions
            page_ids = raw.get("page") or {}
            page_session = page_ids.get("session_id", state.page_session_id)
            page_message = page_ids.get("message_id", state.page_message_id)
            if not (upstream.is_uuid(page_session) and upstream.is_uuid(page_message)):
                raise ValueError("page.session_id and page.message_id must be uuids")
        except (msgspec.MsgspecError, ValueError, TypeError, AttributeError, KeyError) as exc:
            return JSONResponse({"error": f"bad sessions: {exc}"}, status_code=400)
        state.sessions, state.page_session_id, state.page_message_id = sessions, page_session, page_message
        return JSONResponse(state.describe())

    async def control_models(request: Request) -> Response:
        try:
            models = msgspec.json.decode(await request.body(), type=dict[str, list[dict[str, Any]]])["models"]
        except (msgspec.MsgspecError, KeyError) as exc:
            return JSONResponse({"error": f"bad models: {exc}"}, status_code=400)
        sim().models = models
        return JSONResponse({"models": len(models)})

    async def control_requests(request: Request) -> Response:
        return JSONResponse(sim().requests)

    async def control_reset(request: Request) -> Response:
        app.state.sim = fresh_state()
        return JSONResponse(sim().describe())

    stream_route = STREAM_PATH.replace("{session}", "{session:str}").replace("{message}", "{message:str}")
    app.router.routes.extend([
        Route("/", page),
        Route(stream_route, stream_endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/__sim/images/{name:str}", image),
        Route("/__sim/state", control_state),
        Route("/__sim/script", control_script, methods=["POST"]),
        Route("/__sim/sessions", control_sessions, methods=["POST"]),
        Route("/__sim/models", control_models, methods=["POST"]),
        Route("/__sim/requests", control_requests),
        Route("/__sim/reset", control_reset, methods=["POST"]),
    ])
    return app


def _admit(request: Request, raw: bytes, record: dict[str, Any], state: SimState) -> tuple[list[dict], Session]:
    """The checks the site makes before it answers, in its order."""
    if request.method != "PUT":
        raise upstream.Rejected(405, f"Method {request.method} not allowed: use PUT")
    session_id, message_id = request.path_params["session"], request.path_params["message"]
    if not (upstream.is_uuid(session_id) and upstream.is_uuid(message_id)):
        raise upstream.Rejected(400, "the session and message ids in the path must be uuids")
    if request.cookies.get(AUTH_COOKIE) != state.auth_token:
        raise upstream.Rejected(401, f"Unauthorized: no valid {AUTH_COOKIE} cookie (send credentials with the call)")
    session = state.sessions.get(session_id)
    if session is None:
        raise upstream.Rejected(401, f"User {state.user_id} does not have access to evaluation session {session_id}")
    content_type = request.headers.get("content-type", "")
    if content_type.replace(" ", "").lower() != upstream.CONTENT_TYPE.lower():
        raise upstream.Rejected(400, f"Content-Type must be {upstream.CONTENT_TYPE}, got {content_type or 'none'!r}")
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise upstream.Rejected(400, f"body is not JSON: {exc}") from None
    record["json"] = body
    return upstream.check_body(body, session, state.models, state.max_attachment_bytes), session


# --- The page ------------------------------------------------------------------------------------

PAGE_SCRIPT = """
document.getElementById("retry").addEventListener("click", async () => {
  const chat = document.getElementById("chat"), answer = document.getElementById("answer");
  const session = chat.dataset.sessionId, now = new Date().toISOString();
  const body = {modelId: chat.dataset.modelId || null, messages: [{
    role: "user", content: document.getElementById("question").textContent, id: crypto.randomUUID(),
    evaluationId: null, evaluationSessionId: session, parentMessageIds: [], experimental_attachments: [],
    failureReason: null, metadata: null, participantPosition: "a", createdAt: now, updatedAt: now,
    status: "pending"}]};
  answer.textContent = ""; answer.dataset.state = "streaming";
  try {
    const response = await window.fetch(
      `/nextjs-api/stream/retry-evaluation-session-message/${session}/messages/${chat.dataset.messageId}`,
      {method: "PUT", headers: {"Content-Type": "text/plain;charset=UTF-8"}, body: JSON.stringify(body),
       credentials: "include"});
    const text = await response.text();
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${text}`);
    for (const line of text.split("\\n")) {
      if (/^[ab]0:/.test(line)) answer.textContent += JSON.parse(line.slice(3));
    }
    answer.dataset.state = "done";
  } catch (error) {
    answer.textContent = String(error); answer.dataset.state = "failed";
  }
});
"""


def render_page(state: SimState) -> str:
    text_model = next((m["id"] for m in state.models if "text" in m.get("capabilities", {})
                       .get("outputCapabilities", {})), "")
    flight = '7:["$","$L8",null,{"initialModels":' + _encode(state.models).decode() + "}]\n"
    # A JS string literal holding the flight data; "<" escaped so no "</script>" can end the tag.
    literal = _encode(flight).decode().replace("<", "\\u003c")
    esc = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>LMArena</title>
<style>body{{font-family:sans-serif;max-width:48rem;margin:2rem auto;color:#222}}
.msg{{padding:.75rem 1rem;margin:.5rem 0;border-radius:.5rem}}.user{{background:#eef}}.assistant{{background:#f4f4f4}}
.badge{{font-size:.7rem;background:#fc0;padding:.1rem .4rem;border-radius:.3rem}}</style></head>
<body><header><h1>LMArena <span class="badge">local simulator</span></h1></header>
<main id="chat" data-session-id="{esc(state.page_session_id)}" data-message-id="{esc(state.page_message_id)}"
 data-model-id="{esc(text_model)}">
<div class="msg user" id="question">Hello! Which model are you?</div>
<div class="msg assistant" id="answer" data-state="idle">I am a model on a simulated arena.
Click Retry to ask again.</div>
<button id="retry" type="button">Retry</button>
</main>
<script>(self.__next_f=self.__next_f||[]).push([0])</script>
<script>self.__next_f.push([1,{literal}])</script>
<script>{PAGE_SCRIPT}</script>
</body></html>
"""


def run(args: argparse.Namespace) -> int:
    """``arenahub simulate-lmarena``: serve the simulator until stopped."""
    from arenahub import logs, serving

    app = create_app()
    state: SimState = app.state.sim
    logs.configure_logging("info")
    print(f"LMArena simulator on http://{args.host}:{args.port}/ (page session {state.page_session_id}, "
          f"message {state.page_message_id}); control API under /__sim/", flush=True)
    return serving.run(app, args.host, args.port, "warning", graceful_seconds=1.0)
