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
from arenahub.bridge.runtime import Bridge, Capture
from arenahub.bridge.tabs import Tab
from arenahub.client import local_api
from arenahub.client.app import running_link
from arenahub.client.config import ClientConfig
from arenahub.jsonc import ConfigError
from arenahub.protocol.errors import (
    ApiError,
    InvalidApiKey,
    InvalidRequest,
    ModelNotFound,
    NotFound,
)
from arenahub.protocol.openai import error_body, models_body, parse_chat_request

log = logging.getLogger("arenahub.bridge")

MAX_BODY = 32 * 1024 * 1024  # attachments ride in the body (LMArena takes about 5 MB each)
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
    endpoint = bridge.files.endpoint_for(req.model)
    return ChatAnswer(bridge.events(raw, model, endpoint), req)


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
        raise InvalidRequest(f"'{name}' is not an image model (mark it \"<uuid>:image\" in models.json).", param="model")
    if data.get("response_format", "url") != "url":
        raise InvalidRequest("Only response_format 'url' is supported: LMArena returns image URLs.",
                             param="response_format")
    bridge.check_available()
    chat = {"model": name, "messages": [{"role": "user", "content": data["prompt"]}]}
    return ImageAnswer(bridge.events(chat, model, bridge.files.endpoint_for(name)))


async def list_models(request: Request) -> Response:
    _authorize(request)
    return Response(models_body(sorted(_bridge(request).files.models), owned_by="lmarena"),
                    media_type="application/json")


async def bridge_status(request: Request) -> Response:
    bridge = _bridge(request)
    cfg = bridge.config
    return JSONResponse({
        "lmarena": msgspec.to_builtins(bridge.session.to_status(len(bridge.tabs))),
        "tabs": [t.snapshot() for t in bridge.tabs.tabs()],
        "models": len(bridge.files.models),
        "mode": cfg.id_updater_last_mode, "battle_target": cfg.id_updater_battle_target,
        "ids_captured": bridge.files.default_endpoint is not None,
        "capture": {"armed": bridge.capture is not None and not bridge.capture.result.done()},
        "config_file": str(bridge.config_path),
        "ignored_keys": [{"key": key, "why": why} for key, why in cfg.ignored],
        "problems": list(bridge.files.problems),
    })


async def health(request: Request) -> Response:
    """The seed's health fields; ``healthy`` also needs a connected tab and a usable session."""
    bridge = _bridge(request)
    response = await local_api.health(request)
    data = _json.decode(response.body)
    status = bridge.session.to_status(len(bridge.tabs))
    data["healthy"] = bool(data["healthy"] and status.browser_connected and status.session_valid is not False
                           and not status.needs_verification)
    return JSONResponse(data)


# -- internals used by the CLI --------------------------------------------------------------------
async def start_id_capture(request: Request) -> Response:
    bridge = _bridge(request)
    try:
        data = _json.decode(await request.body() or b"{}")
    except msgspec.DecodeError:
        raise InvalidRequest("The body must be JSON.") from None
    mode = data.get("mode") or bridge.config.id_updater_last_mode
    target = str(data.get("target") or bridge.config.id_updater_battle_target).upper()
    if mode not in ("direct_chat", "battle") or target not in ("A", "B"):
        raise InvalidRequest("mode must be direct_chat or battle, and target A or B.")
    if not len(bridge.tabs):
        raise ApiError("No LMArena tab is connected: open lmarena.ai with the userscript first.",
                       status=503, code="browser_not_connected")
    bridge.capture = Capture(mode=mode, target=target)
    sent = bridge.tabs.broadcast("activate_id_capture")
    return JSONResponse({"armed": True, "tabs": sent, "mode": mode, "target": target})


async def id_capture_result(request: Request) -> Response:
    """Long-poll: waits up to ``?wait=`` seconds (max 60) for the ids."""
    bridge = _bridge(request)
    capture = bridge.capture
    if capture is None:
        raise NotFound("No capture is armed: POST /internal/start_id_capture first.", code="capture_not_armed")
    wait = min(float(request.query_params.get("wait", "25") or 25), 60.0)
    try:
        ids = await asyncio.wait_for(asyncio.shield(capture.result), wait)
    except TimeoutError:
        return JSONResponse({"captured": False})
    return JSONResponse({"captured": True, **ids, "mode": capture.mode, "target": capture.target})


async def request_model_update(request: Request) -> Response:
    bridge = _bridge(request)
    tab = bridge.tabs.pick()
    if tab is None:
        raise ApiError("No LMArena tab is connected: open lmarena.ai with the userscript first.",
                       status=503, code="browser_not_connected")
    bridge.page_source = asyncio.get_running_loop().create_future()
    tab.send_nowait({"command": "send_page_source"})
    try:
        html = await asyncio.wait_for(asyncio.shield(bridge.page_source), 30)
    except TimeoutError:
        raise ApiError("The tab did not send its page within 30 s.", status=504, code="page_source_timeout") from None
    models = lmarena.extract_page_models(html)
    if not models:
        raise ApiError("Found no model list in the page (has LMArena changed its page?).", status=502,
                       code="no_models_in_page")
    return JSONResponse({"models": models})


async def reload_config(request: Request) -> Response:
    bridge = _bridge(request)
    try:
        bridge.reload()
    except ConfigError as exc:
        raise InvalidRequest(f"Kept the previous config: {exc}") from None
    return JSONResponse({"reloaded": True, "models": len(bridge.files.models)})


# -- the tabs' socket -----------------------------------------------------------------------------
def _tab_origin_allowed(origin: str | None) -> bool:
    """Tabs on LMArena (or a local page, such as the simulator) may connect; any other web page the
    user happens to open must not be able to read the prompts this socket carries."""
    if origin is None:
        return True  # not a browser page (tools, tests)
    host = urlsplit(origin).hostname or ""
    return host == "lmarena.ai" or host.endswith(".lmarena.ai") or host in ("127.0.0.1", "localhost", "::1")


async def tab_socket(ws: WebSocket) -> None:
    bridge = _bridge(ws)
    origin = ws.headers.get("origin")
    if not _tab_origin_allowed(origin):
        log.warning("refused a tab socket from origin %s", origin)
        await ws.close(code=4403, reason="origin not allowed")
        return
    await ws.accept()
    tab = Tab(ws, secrets.token_hex(4))
    bridge.tabs.add(tab)
    log.info("tab %s connected (%d open)", tab.id, len(bridge.tabs))
    reason = "the tab closed its connection"
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text") or message.get("bytes") or b""
            try:
                data = _json.decode(raw)
            except msgspec.DecodeError:
                log.warning("tab %s sent something that is not JSON: %.120r", tab.id, raw)
                continue
            if isinstance(data, dict):
                _on_tab_message(bridge, tab, data)
    except WebSocketDisconnect:
        pass
    finally:
        bridge.tabs.remove(tab, reason)
        log.info("tab %s disconnected (%d open)", tab.id, len(bridge.tabs))


def _on_tab_message(bridge: Bridge, tab: Tab, data: dict[str, Any]) -> None:
    request_id = data.get("request_id")
    if isinstance(request_id, str) and "data" in data:
        bridge.tabs.deliver(request_id, data["data"])
        return
    kind = data.get("type")
    if kind == "hello":
        tab.origin, tab.title, tab.script_version = (str(data.get(k) or "") or None for k in ("origin", "title", "version"))
        bridge.session.tab_connected()
    elif kind == "ids_captured":
        session_id, message_id = data.get("session_id"), data.get("message_id")
        capture = bridge.capture
        if capture is None or capture.result.done():
            log.info("tab %s reported ids while no capture was armed; ignored", tab.id)
        elif isinstance(session_id, str) and isinstance(message_id, str):
            bridge.files.use_default_ids(session_id, message_id, capture.mode, capture.target)
            bridge.session.ids_captured()
            capture.result.set_result({"session_id": session_id, "message_id": message_id})
    elif kind == "page_source":
        if bridge.page_source is not None and not bridge.page_source.done() and isinstance(data.get("html"), str):
            bridge.page_source.set_result(data["html"])
    else:
        log.debug("tab %s: unhandled message %.120r", tab.id, data)


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
    client_config = dataclasses.replace(client_config, lmarena_bridge_url=f"http://127.0.0.1:{port}",
                                        bridge_api_key=bridge.config.api_key or None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.bridge = bridge
        async with running_link(client_config) as link:
            app.state.link = link
            yield

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
    ]
    # CORS is fixed at start: a changed platform_features.allowed_origins needs a restart, not /internal/reload.
    return Starlette(routes=routes, lifespan=lifespan, middleware=local_api.cors(bridge.config.allowed_origins),
                     exception_handlers={ApiError: _on_api_error, HTTPException: _on_http_error})
