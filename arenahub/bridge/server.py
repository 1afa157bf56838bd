"""The bridge's HTTP and WebSocket server: OpenAI-compatible endpoints, the tabs' socket, internals.

Serves, on 127.0.0.1:5102 by default:
- ``POST /v1/chat/completions``, ``GET /v1/models``, ``POST /v1/images/generations`` (OpenAI);
- ``/ws`` where userscript tabs connect (several at once);
- ``/internal/*`` used by ``arenahub bridge capture-ids`` and ``update-models``;
- ``/bridge/status`` (tabs, session status) and, from the platform integration, ``/health``,
  ``/platform/status``, ``/platform/register``, ``/platform/drain`` and ``/platform/undrain``.

Web pages on other origins may call these HTTP endpoints only when ``platform_features.allowed_origins``
lists them; the tabs' socket has its own origin check.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from arenahub.asgi import read_body
from arenahub.bridge import lmarena
from arenahub.bridge.answers import ChatAnswer, ImageAnswer
from arenahub.bridge.diagnosis import fatal
from arenahub.bridge.runtime import Bridge, Capture
from arenahub.bridge.tabs import Tab
from arenahub.client import local_api
from arenahub.client.app import running_link
from arenahub.client.config import ClientConfig
from arenahub.jsonc import ConfigError
from arenahub.protocol import tab
from arenahub.protocol.errors import (
    ApiError,
    InvalidApiKey,
    InvalidRequest,
    ModelNotFound,
    NotFound,
)
from arenahub.protocol.openai import error_body, models_body, parse_chat_request

log = logging.getLogger("arenahub.bridge")

MAX_BODY = 32 * 1024 * 1024  # attachments ride in the body (arena.ai takes about 5 MB each)
MAX_IMAGES = 4  # /v1/images/generations ``n``: one arena.ai conversation each
_json = msgspec.json.Decoder()


def _bridge(request: Request | WebSocket) -> Bridge:
    return request.app.state.bridge


def _authorize(request: Request) -> None:
    key = _bridge(request).config.api_key
    if not key:
        return
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise InvalidApiKey("This bridge needs its api_key: send `Authorization: Bearer <api_key>`.")


def _model(bridge: Bridge, name: str) -> lmarena.Model:
    model = bridge.files.models.get(name)
    if model is None:
        raise ModelNotFound(f"The model '{name}' is not in models.json ({len(bridge.files.models)} models there; "
                            "`arenahub bridge update-models` lists what the page offers).", param="model")
    return model


async def chat_completions(request: Request) -> Response:
    bridge = _bridge(request)
    _authorize(request)
    body = await read_body(request, MAX_BODY)
    req = parse_chat_request(body)
    raw = _json.decode(body)
    model = _model(bridge, req.model)
    bridge.check_available()
    return ChatAnswer(bridge.events(raw, model, req.model), req)


async def image_generations(request: Request) -> Response:
    bridge = _bridge(request)
    _authorize(request)
    try:
        data = _json.decode(await read_body(request, MAX_BODY))
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
        raise InvalidRequest("`prompt` must be a non-empty string.", param="prompt")
    name = data.get("model")
    if not isinstance(name, str):
        image_models = [m for m in bridge.files.models.values() if m.image]
        if not image_models:
            raise InvalidRequest("No image model in models.json: name one with `model`.", param="model")
        name = image_models[0].name
    model = _model(bridge, name)
    if not model.image:
        raise InvalidRequest(f"'{name}' is not an image model (mark it \"<uuid>:image\" in models.json).",
                             param="model")
    fmt = data.get("response_format") or "url"
    if fmt not in ("url", "b64_json"):
        raise InvalidRequest("`response_format` must be 'url' or 'b64_json'.", param="response_format")
    n = data.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
        raise InvalidRequest(f"`n` must be a whole number from 1 to {MAX_IMAGES} (each image is one arena.ai "
                             "conversation).", param="n")
    bridge.check_available()
    chat = {"model": name, "messages": [{"role": "user", "content": data["prompt"]}]}
    # b64_json: the bridge downloads the images arena.ai made, as it downloads image links (images.py).
    return ImageAnswer([bridge.events(chat, model, name) for _ in range(n)],
                       bridge.images.base64_of if fmt == "b64_json" else None)


async def list_models(request: Request) -> Response:
    _authorize(request)
    models = _bridge(request).files.models
    # Each model's type ("chat", "image" or "search"): the client declares the images capability by it.
    return Response(models_body(sorted(models), owned_by="lmarena", types={n: m.modality for n, m in models.items()}),
                    media_type="application/json")


async def bridge_status(request: Request) -> Response:
    bridge = _bridge(request)
    cfg = bridge.config
    status = bridge.session.to_status(len(bridge.tabs.usable()) or len(bridge.tabs))
    return JSONResponse({
        "lmarena": msgspec.to_builtins(status),
        "state": status.state, "action": status.action,
        "checks": [c.public() for c in bridge.session.checks],
        "tabs": [t.snapshot() for t in bridge.tabs.tabs()],
        "models": len(bridge.files.models),
        "upstream_api": cfg.upstream_api, "arena_mode": cfg.arena_mode,
        "battle_target": cfg.id_updater_battle_target.upper(), "follow_up": cfg.follow_up,
        "conversations_known": len(bridge.conversations),
        "legacy": {"mode": cfg.id_updater_last_mode, "ids_captured": bridge.files.default_endpoint is not None,
                   "used": cfg.legacy},
        "capture": {"armed": bridge.capture is not None and not bridge.capture.result.done()},
        "config_file": str(bridge.config_path),
        "ignored_keys": [{"key": key, "why": why} for key, why in cfg.ignored],
        "problems": list(bridge.files.problems),
    })


async def health(request: Request) -> Response:
    """The seed's health fields; ``healthy`` also needs a usable tab and session."""
    bridge = _bridge(request)
    response = await local_api.health(request)
    data = _json.decode(response.body)
    status = bridge.session.to_status(len(bridge.tabs.usable()))
    data["healthy"] = bool(data["healthy"] and status.browser_connected and status.session_valid is not False
                           and not status.needs_verification)
    data["lmarena"] = {"state": status.state, "action": status.action}
    return JSONResponse(data)


# -- internals used by the CLI --------------------------------------------------------------------
def _need_tab(bridge: Bridge) -> Tab:
    best = bridge.tabs.pick() or bridge.tabs.best()
    if best is None:
        raise ApiError("No arena.ai tab is connected: open https://arena.ai with the userscript first.",
                       status=503, code="browser_not_connected")
    return best


async def _json_object(request: Request) -> dict[str, Any]:
    """An internal call's JSON object body (empty: ``{}``); a clear 400 for anything else."""
    try:
        data = _json.decode(await read_body(request, 64 * 1024) or b"{}")
    except msgspec.DecodeError:
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return data


async def start_id_capture(request: Request) -> Response:
    bridge = _bridge(request)
    data = await _json_object(request)
    mode = data.get("mode") or bridge.config.id_updater_last_mode
    target = str(data.get("target") or bridge.config.id_updater_battle_target).upper()
    if mode not in ("direct_chat", "battle") or target not in ("A", "B"):
        raise InvalidRequest("mode must be direct_chat or battle, and target A or B.")
    _need_tab(bridge)
    bridge.capture = Capture(mode=mode, target=target)
    sent = bridge.tabs.broadcast(tab.ArmCapture())
    return JSONResponse({"armed": True, "tabs": sent, "mode": mode, "target": target})


async def id_capture_result(request: Request) -> Response:
    """Long-poll: waits up to ``?wait=`` seconds (max 60) for the ids."""
    bridge = _bridge(request)
    capture = bridge.capture
    if capture is None:
        raise NotFound("No capture is armed: POST /internal/start_id_capture first.", code="capture_not_armed")
    try:
        wait = min(max(float(request.query_params.get("wait", "25") or 25), 0.0), 60.0)
    except ValueError:
        raise InvalidRequest("`wait` must be a number of seconds.", param="wait") from None
    try:
        ids = await asyncio.wait_for(asyncio.shield(capture.result), wait)
    except TimeoutError:
        return JSONResponse({"captured": False})
    return JSONResponse({"captured": True, **ids, "mode": capture.mode, "target": capture.target})


async def request_model_update(request: Request) -> Response:
    """The models the page offers, as ``update-models`` writes them: ``{"models": {name: value}, "all": [...]}``."""
    bridge = _bridge(request)
    on = _need_tab(bridge)
    try:
        flight = await on.ask(lambda i: tab.PageModels(id=i), 30)
    except (TimeoutError, ConnectionError):
        raise ApiError("The tab did not send its page within 30 s.", status=504, code="page_source_timeout") from None
    found = lmarena.page_models(flight.text)
    on.models_in_page = len(found)
    bridge.refresh_checks()
    selectable = lmarena.extract_page_models(flight.text)  # ModelListNotFound (502) when there are none
    return JSONResponse({"models": selectable, "all": [dataclasses.asdict(m) for m in found]})


async def doctor(request: Request) -> Response:
    """Every check of the best tab, looked at again, then (``probe``) one tiny real call."""
    bridge = _bridge(request)
    data = await _json_object(request)
    best = bridge.tabs.pick() or bridge.tabs.best()
    if best is not None:
        await bridge.inspect(best)
    checks = bridge.checks()
    call = None
    if data.get("probe", True) is not False and fatal(checks) is None:
        ok, said = await bridge.probe()
        call = {"name": "call", "ok": ok, "detail": said}
        checks = bridge.checks()
    status = bridge.session.to_status(len(bridge.tabs.usable()) or len(bridge.tabs))
    return JSONResponse({"checks": [c.public() for c in checks], "call": call,
                         "state": status.state, "action": status.action,
                         # Able to work now: the checks pass, no condition holds (one set by an earlier failure
                         # counts, as requests are refused while it lasts), and the call, if made, went through.
                         "ok": fatal(checks) is None and status.state in ("ready", "unknown")
                         and (call is None or call["ok"] is True)})


async def reload_config(request: Request) -> Response:
    bridge = _bridge(request)
    try:
        bridge.reload()
    except ConfigError as exc:
        raise InvalidRequest(f"Kept the previous config: {exc}") from None
    link = getattr(request.app.state, "link", None)
    if link is not None:
        link.bridge_changed()  # the platform hears of new models now, not at the next heartbeat
    return JSONResponse({"reloaded": True, "models": len(bridge.files.models)})


# -- the tabs' socket -----------------------------------------------------------------------------
def _tab_origin_allowed(origin: str | None) -> bool:
    """Tabs on arena.ai (or lmarena.ai, or a local page such as the simulator) may connect; any other web
    page the user happens to open must not be able to read the prompts this socket carries."""
    if origin is None:
        return True  # not a browser page (tools, tests)
    host = urlsplit(origin).hostname or ""
    return any(host == h or host.endswith("." + h) for h in lmarena.site.SITE_HOSTS) \
        or host in ("127.0.0.1", "localhost", "::1")


async def tab_socket(ws: WebSocket) -> None:
    bridge = _bridge(ws)
    origin = ws.headers.get("origin")
    if not _tab_origin_allowed(origin):
        log.warning("refused a tab socket from origin %s", origin)
        await ws.close(code=4403, reason="origin not allowed")
        return
    await ws.accept()
    new = Tab(ws, secrets.token_hex(4))
    bridge.tabs.add(new)
    log.info("tab %s connected (%d open)", new.id, len(bridge.tabs))
    reason = "the tab closed its connection"
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text") or message.get("bytes") or b""
            try:
                data = tab.decode(raw)
            except tab.TabMessageError as exc:
                log.warning("tab %s sent a message the bridge cannot read (%s): %.120r", new.id, exc, raw)
                continue
            _on_tab_message(bridge, new, data)
    except WebSocketDisconnect:
        pass
    finally:
        bridge.tabs.remove(new, reason)
        bridge.refresh_checks()
        log.info("tab %s disconnected (%d open)", new.id, len(bridge.tabs))
        link = getattr(ws.app.state, "link", None)
        if link is not None:
            link.bridge_changed()  # the platform hears at once that this bridge may have no tab left


def _on_tab_message(bridge: Bridge, sender: Tab, data: tab.FromTab) -> None:
    if isinstance(data, tab.Started | tab.Chunk | tab.Done | tab.Failed):
        bridge.tabs.deliver(data.id, data)
    elif isinstance(data, tab.Diagnosis | tab.Flight):
        sender.answer(data.id, data)
    elif isinstance(data, tab.Hello):
        sender.protocol, sender.script_version, sender.facts = data.protocol, data.script_version[:40], data.facts
        if sender.protocol != tab.TAB_PROTOCOL_VERSION:
            log.warning("tab %s runs an old userscript (protocol %d; this bridge speaks %d): install it again "
                        "(`arenahub userscript`)", sender.id, sender.protocol, tab.TAB_PROTOCOL_VERSION)
            bridge.refresh_checks()
        else:
            bridge.spawn(bridge.inspect(sender), f"tab-inspect-{sender.id}")
    elif isinstance(data, tab.PageCall):
        bridge.page_call(data.ok)
    elif isinstance(data, tab.IdsCaptured):
        capture = bridge.capture
        if capture is None or capture.result.done():
            log.info("tab %s reported ids while no capture was armed; ignored", sender.id)
        elif lmarena.is_uuid(data.session_id) and lmarena.is_uuid(data.message_id):
            bridge.files.use_default_ids(data.session_id, data.message_id, capture.mode, capture.target)
            bridge.session.ids_changed()
            capture.result.set_result({"session_id": data.session_id, "message_id": data.message_id})


# -- the app --------------------------------------------------------------------------------------
async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return Response(error_body(exc), status_code=exc.status, headers=exc.headers, media_type="application/json")


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err = ApiError(f"{request.method} {request.url.path}: {exc.detail}", status=exc.status_code, code="http_error")
    err.type = "invalid_request_error"
    return Response(error_body(err), status_code=exc.status_code, media_type="application/json")


def create_app(bridge: Bridge, client_config: ClientConfig, port: int) -> Starlette:
    # The embedded platform client relays to this very bridge.
    fixed: dict[str, Any] = {"lmarena_bridge_url": f"http://127.0.0.1:{port}",
                             "bridge_api_key": bridge.config.api_key or None}
    client_config = dataclasses.replace(client_config, **fixed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.bridge = bridge
        bridge.spawn(bridge.watch_files(), "bridge-file-watch")
        try:
            async with running_link(client_config, fixed) as link:
                app.state.link = link
                yield
        finally:
            await bridge.close()

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/images/generations", image_generations, methods=["POST"]),
        WebSocketRoute("/ws", tab_socket),
        Route("/bridge/status", bridge_status, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        *local_api.platform_routes,
        Route("/internal/start_id_capture", start_id_capture, methods=["POST"]),
        Route("/internal/id_capture", id_capture_result, methods=["GET"]),
        Route("/internal/request_model_update", request_model_update, methods=["POST"]),
        Route("/internal/reload", reload_config, methods=["POST"]),
        Route("/internal/doctor", doctor, methods=["POST"]),
    ]
    # CORS is fixed at start: a changed platform_features.allowed_origins needs a restart, not /internal/reload.
    return Starlette(routes=routes, lifespan=lifespan, middleware=local_api.cors(bridge.config.allowed_origins),
                     exception_handlers={ApiError: _on_api_error, HTTPException: _on_http_error})
