"""A strict local stand-in for arena.ai (formerly lmarena.ai) as of late 2026: ``arenahub simulate-lmarena``.

It speaks the site's private web protocol and refuses what the real site refuses; tests script it
through ``/__sim/``. ``create_app(**options)`` builds it (state in ``app.state.sim``); ``run(args)``
serves it for the CLI (``--protocol 2025`` serves the older ``arenahub.tools.lmarena_sim`` instead).

Hosts and TLS
    Any Host is served, except ``lmarena.ai`` / ``www.lmarena.ai`` (any port): 301 to
    ``https://arena.ai<path>?<query>``. Start Chromium with ``--host-resolver-rules="MAP arena.ai
    127.0.0.1:PORT, MAP lmarena.ai 127.0.0.1:PORT"`` and ignore HTTPS errors; ``--tls`` serves HTTPS
    with a self-signed certificate for arena.ai, lmarena.ai, www.lmarena.ai, localhost, 127.0.0.1
    (``tls.self_signed``). Cookies are ``Path=/; SameSite=Lax``, ``Secure`` over https.

The page: GET ``/``, ``/text/...``, ``/c/...``, ``/image/...`` (title "Arena AI (simulated)")
    - ``<script src="/recaptcha/enterprise.js?render=SITEKEY" async defer>``: the only place the
      site key (``6L`` + 38 chars) appears. The script defines ``grecaptcha.enterprise.{ready,
      execute(key, {action}), render}`` 50-150 ms after loading; ``execute`` POSTs ``{siteKey,
      action}`` to ``/__sim/recaptcha/execute`` (XMLHttpRequest) and resolves with the token.
    - Flight data: ``self.__next_f.push([0])`` then TWO ``self.__next_f.push([1,"..."])`` JS strings
      (``<`` as ``\\u003c``), cut in the middle of the model list; joined, the text has the line
      ``8:["$","$L9",null,{"initialModels":[...],"initialModelAId":...,"initialModelBId":null,
      "userState":{"id","isAnonymous"}|null}]``. A model: ``{id (UUIDv7), name, publicName,
      displayName, organization, provider, userSelectable, capabilities: {inputCapabilities,
      outputCapabilities}, rankByModality}``. Defaults (fixed ids): gpt-5-high, claude-opus-4-1,
      gemini-2.5-pro, gemini-2.5-pro-grounding (text+search), imagen-4.0-generate (image),
      veo-3 (video only), internal-test-model (userSelectable false).
    - Three ``/_next/static/chunks/BUILDID/...`` chunks; exactly one holds the server actions as
      ``(0,n.createServerReference)("<42 hex>",n.callServer,void 0,n.findSourceMapURL,"<name>")``
      for generateUploadUrl, getSignedUrl, updateTouConsent, dismissAnnouncement.
    - A chat UI: ``#prompt``, ``#send`` (create-evaluation, mode direct, token action chat_submit),
      ``#retry`` (the legacy retry of the page's conversation, action chat_retry), ``#sign-in``,
      and ``#answer`` with ``data-state`` idle/streaming/done/failed. ``<main id="chat">`` has
      ``data-session-id``, ``data-message-id``, ``data-user-message-id``, ``data-model-a-id``.
    - A visit without a valid session signs in per ``auto_sign_in``: "user" (default) or "guest"
      hand out the current session of that kind (a new one if there is none), "none" sets nothing.

Account: one user id. The session cookie is split: ``arena-auth-prod-v1.0`` + ``.1`` are the halves
    of ``base64-<base64url of {access_token, refresh_token, expires_at, user: {id, is_anonymous}}>``
    (one ``arena-auth-prod-v1`` is accepted too). Valid while its access token is the current one.
    ``POST /nextjs-api/sign-in/email`` (any JSON) signs in as user; ``GET /api/me``: 200 ``{id,
    isAnonymous}`` or 401 ``{"error": "User not found"}``.

Cloudflare (``POST /__sim/cloudflare {"mode", "clears_after_ms"?}``): "challenge" answers requests
    without a valid ``cf_clearance`` with 403 "Just a moment..." (``cf-mitigated: challenge``) whose
    script calls ``/cdn-cgi/challenge-platform/clear`` after ``clears_after_ms`` (300) and reloads;
    "block" answers everything with 403 "Attention Required! | Cloudflare" until turned off. ``/__sim/`` is exempt;
    ``/cdn-cgi/`` is exempt from the challenge. Setting any mode forgets the clearances.

Stream API (any request content type; 200 answers are ``text/plain; charset=utf-8`` with
``x-vercel-ai-data-stream: v1``; refusals are JSON; GET etc. 405 and OPTIONS 204, with ``Allow``)
    ``POST /nextjs-api/stream/create-evaluation``, checked in this order:
    Cloudflare; 400 "Invalid JSON body"; 401 "User not found"; 400 "Invalid request body" with
    Zod-like ``issues`` (every one; ``metadata: null`` is refused, ``{}`` passes); 400 "Invalid ID:
    expected a UUIDv7" + ``path``; 400 "Evaluation session ID seems spoofed, offset too big" (id time
    over 1 h off); 409 "Evaluation session already exists"; 409 "Message already exists" + ``path``
    (a reused message id); 401 "Sign in to chat with a specific model" (``code: LOGIN_REQUIRED``,
    guests may use battle and direct-battle only); 403 "recaptcha validation failed" (token issued
    here, current site key, action chat_submit, unused, younger than ``token_ttl_seconds``; a token
    is used up by the first call that reaches this check); 400 "Model not found" + ``path``, "Model
    not available", "Model <publicName> does not support modality <m>" (chat/webdev: text; search:
    text+search; image: image; video: never); 400 "Invalid attachment" + ``path`` (only URLs from
    ``getSignedUrl``, unexpired) or "Too many attachments (at most 10)". Then the evaluation is
    stored and the next scripted outcome (default: an echo) answers.
    ``POST /nextjs-api/stream/post-to-evaluation/{id}``: the same, plus 401 "User <uid> does not have
    access to evaluation session <id>" after the session check; ``id``/``mode``/``modelAId``/
    ``modelBId`` optional but must match the evaluation (custom issues); the offset check is on
    ``userMessageId`` ("User message ID seems spoofed, offset too big").
    ``PUT /nextjs-api/stream/retry-evaluation-session-message/{sessionId}/messages/{messageId}``:
    Cloudflare; JSON; session; 401 no access; 404 "Message not found" (not an assistant message);
    400 "Message already has feedback, cannot retry"; schema (``messages`` chain, ``modelId``
    uuid|null and ignored); token with action chat_retry. The answer (the side of that message)
    replaces its content and echoes the body's last user message.

Answer lines, per side P (a; a and b interleaved in the battle modes): ``Pf:{"messageId"}`` first;
    ``Pg:"reasoning"``; ``P0:"word "``; ``P2:[{"type":"image","image":url,"mimeType":"image/png"}]``;
    ``Pc:{"toolCallId","argsTextDelta"}`` (joined: ``{"source":[{url,title}]}``);
    ``P2:[{"type":"routed_model",...}]``; ``P2:[{"type":"heartbeat"}]`` each second of a wait over 1 s;
    ``Pe:{"finishReason","isContinued":false}``, ``Pd:{"finishReason","usage":{promptTokens,
    completionTokens}}`` (finish "error": only ``Pd:{"finishReason":"error"}``); errors ``P3:"msg"``.
    Defaults: a echoes the user message, b says "B: " + it; image modality one image; search adds
    two citations.

Control API (JSON)
    ``GET /__sim/state``: user_id, auth {state, auto_sign_in, cookies}, site_key, build {id,
    actions, action_ids, chunks}, models, evaluations (ids, modes, messages, has_feedback), page
    {session_id, message_id, user_message_id}, script_pending, cloudflare, token_ttl_seconds,
    fail_next, requests.
    ``POST /__sim/script``: outcomes (a list or ``{"outcomes": [...]}``), one per call that passes
    the checks, by ``kind``: ``text`` {text|words, reasoning, finish stop|length|content-filter|
    error, usage, routed_model, citations, side_b_text, first_ms, delay_ms}; ``image`` {urls|count,
    text, finish, timing}; ``error`` {message, after_words, text, timing}; ``challenge``; ``block``;
    ``status`` {status, body, retry_after (429: 30 by default)}; ``schema`` {path, message}; ``html``
    {body}; ``raw`` {lines, no_newline, content_type, timing}; ``hang``. 400 names the bad one.
    ``POST /__sim/models`` {models}; ``POST /__sim/auth`` {auto_sign_in, revoke};
    ``POST /__sim/cloudflare`` {mode}; ``POST /__sim/recaptcha`` {token_ttl_seconds,
    rotate_site_key, fail_next (the next N calls reaching the token check get the 403)};
    ``POST /__sim/recaptcha/execute`` {siteKey, action} -> {token} or 400 "Invalid site key";
    ``POST /__sim/build`` {rotate, actions: present|missing} (old ids and chunks 404; "missing" drops
    the upload actions from the chunks and the server); ``POST /__sim/feedback`` {session_id,
    message_id, has_feedback}; ``GET /__sim/requests``: every stream, action and storage call {method,
    path, kind create|follow_up|retry|action|storage, headers (cookie: names only), json (token as
    "<token>"), status, error (the specific reason), outcome, stream streaming|complete|aborted,
    lines_sent, at, action}; ``POST /__sim/reset``: script, log, evaluations (the page's restored),
    uploads, models, settings, Cloudflare and fail_next back to the start, keeping the account and
    its session, the site key and the build id; ``GET /__sim/images/<name>.png``: a real PNG.

Uploads: ``POST <page path>`` with ``next-action: <id>`` and a JSON array of arguments answers RSC
    ``0:{"a":"$@1","f":"","b":BUILDID}\\n1:<result>\\n`` (``text/x-component``); unknown id: 404
    "Server action not found."; no session: ``{"success":false,"error":"Unauthorized"}``.
    ``generateUploadUrl [fileName, contentType]`` -> ``{uploadUrl, key}`` (png, jpeg, webp, gif, pdf);
    ``PUT`` it with the same content type (else 403 SignatureDoesNotMatch; over
    ``max_attachment_bytes`` 413 EntityTooLarge); ``getSignedUrl [key]`` -> ``{url}`` (1 h) that serves
    the bytes and is what an attachment ``url`` must be.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from arenahub.tools.arena_sim import account, cloudflare, control, evaluations, page, retry, uploads
from arenahub.tools.arena_sim.catalog import Model, decode_models, default_models
from arenahub.tools.arena_sim.checks import is_uuid
from arenahub.tools.arena_sim.recaptcha import SITE_KEY
from arenahub.tools.arena_sim.state import Settings, SimState, new_uuid7

__all__ = ["create_app", "run"]

_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_PAGE_PATHS = ("/", "/text", "/text/{rest:path}", "/c/{rest:path}", "/image", "/image/{rest:path}")


def create_app(*, models: Sequence[Mapping[str, Any] | Model] | None = None, site_key: str | None = None,
               token_ttl_seconds: float = 120, max_attachment_bytes: int = 5 * 1024 * 1024,
               auto_sign_in: str = "user", page_session_id: str | None = None,
               page_message_id: str | None = None) -> Starlette:
    """The simulated site; raises ValueError for an option the site could not have."""
    if auto_sign_in not in ("user", "guest", "none"):
        raise ValueError(f"auto_sign_in must be user, guest or none, got {auto_sign_in!r}")
    if site_key is not None and not SITE_KEY.match(site_key):
        raise ValueError("site_key must be 6L followed by 38 of [A-Za-z0-9_-]")
    for name, value in (("page_session_id", page_session_id), ("page_message_id", page_message_id)):
        if value is not None and not is_uuid(value):
            raise ValueError(f"{name} must be a uuid, got {value!r}")
    if token_ttl_seconds <= 0 or max_attachment_bytes <= 0:
        raise ValueError("token_ttl_seconds and max_attachment_bytes must be positive")
    initial = default_models() if models is None else decode_models(msgspec.to_builtins(list(models)))
    now = time.time()
    sim = SimState.create(Settings(
        models=tuple(initial), token_ttl_seconds=token_ttl_seconds, max_attachment_bytes=max_attachment_bytes,
        auto_sign_in=auto_sign_in,  # type: ignore[arg-type]  # checked above
        page_session_id=(page_session_id or new_uuid7(now)).lower(), page_user_message_id=new_uuid7(now),
        page_message_id=(page_message_id or new_uuid7(now)).lower()), site_key)
    routes = [
        *(Route(path, page.page, methods=["GET", "HEAD", "POST"]) for path in _PAGE_PATHS),
        Route("/_next/static/chunks/{path:path}", page.chunk),
        Route("/recaptcha/enterprise.js", page.recaptcha_script),
        Route("/nextjs-api/sign-in/email", account.sign_in, methods=["POST"]),
        Route("/api/me", account.me),
        Route("/nextjs-api/stream/create-evaluation", evaluations.create_evaluation, methods=_ANY_METHOD),
        Route("/nextjs-api/stream/post-to-evaluation/{id:str}", evaluations.post_to_evaluation, methods=_ANY_METHOD),
        Route("/nextjs-api/stream/retry-evaluation-session-message/{session:str}/messages/{message:str}",
              retry.retry_message, methods=_ANY_METHOD),
        Route("/__storage/upload/{key:path}", uploads.storage_put, methods=["PUT"]),
        Route("/__storage/{key:path}", uploads.storage_get, methods=["GET", "HEAD"]),
        Route("/cdn-cgi/challenge-platform/clear", cloudflare.clear_challenge),
        *control.ROUTES,
        Route("/__sim", _describe),
        Route("/__sim/", _describe),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(cloudflare.Edge, sim=sim)])
    app.state.sim = sim
    return app


async def _describe(request: Request) -> Response:
    """``GET /__sim/``: this docstring, the simulated site and its control API, for a person to read."""
    return PlainTextResponse(__doc__ or "")


def _load_models(path: str) -> list[Any]:
    data = json.loads(Path(path).read_text())
    return list(data["models"] if isinstance(data, dict) and "models" in data else data)


def run(args: argparse.Namespace) -> int:
    """``arenahub simulate-lmarena``: serve the simulator (2026, or ``--protocol 2025``) until stopped."""
    import uvicorn

    from arenahub import logs, serving
    from arenahub.tools.arena_sim.tls import TLSUnavailable, self_signed

    with contextlib.ExitStack() as stack:
        try:
            models = _load_models(args.models) if args.models else None
            if args.protocol == "2025":
                from arenahub.tools import lmarena_sim

                app = lmarena_sim.create_app(models=models)
            else:
                app = create_app(models=models)
            cert, key = args.tls_cert, args.tls_key
            if (cert is None) != (key is None):
                raise ValueError("--tls-cert and --tls-key go together")
            if cert is None and args.tls:
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="arena-sim-tls-"))
                cert, key = (str(p) for p in self_signed(folder))
        except (OSError, TypeError, ValueError, TLSUnavailable) as exc:
            print(f"arenahub simulate-lmarena: {exc}", file=sys.stderr)
            return 2
        try:
            sock = serving.listen(args.host, args.port)
        except OSError as exc:
            print(f"arenahub simulate-lmarena: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        scheme = "https" if cert else "http"
        logs.configure_logging("info")
        print(f"arena.ai simulator (protocol {args.protocol}) on {scheme}://{args.host}:{args.port}/ ; the control "
              f"API is described at {scheme}://{args.host}:{args.port}/__sim/", flush=True)
        if cert:
            print(f"TLS certificate {cert}; open https://arena.ai/ in a browser started with "
                  f'--host-resolver-rules="MAP arena.ai {args.host}:{args.port}, MAP lmarena.ai '
                  f'{args.host}:{args.port}" --ignore-certificate-errors', flush=True)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                                ssl_certfile=cert, ssl_keyfile=key)
        server = uvicorn.Server(config)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl-C: uvicorn stopped gracefully, then raised it again for us
            pass
        return 0 if server.started else 1
