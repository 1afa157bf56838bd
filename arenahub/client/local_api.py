"""The client's local endpoints: the seed's /health, /platform/status, /platform/register, and
/platform/drain, /platform/undrain.

The routes are plain lists so that the bridge can serve them on its own port (5102); so is the
CORS policy (``platform_features.allowed_origins``), which the bridge applies to all of its endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from arenahub.client.drain import DrainBodyError, parse_drain_body
from arenahub.client.link import PlatformLink
from arenahub.jsonc import ConfigError
from arenahub.protocol.errors import ApiError
from arenahub.protocol.openai import error_body


def _link(request: Request) -> PlatformLink:
    return request.app.state.link


async def health(request: Request) -> JSONResponse:
    link = _link(request)
    healthy = (not link.config.enabled or link.connected) and link.session_status.bridge_reachable
    return JSONResponse({
        "enabled": link.config.enabled,
        "connected": link.connected,
        "healthy": healthy,
        "platform_url": link.platform_url,  # the one it connects to now (/platform/status lists them all)
        "client_id": link.config.client_id,
        "stats": {
            "requests_processed": link.stats.processed,
            "success_rate": link.stats.success_rate,
            "uptime_seconds": link.stats.uptime_seconds,
        },
    })


async def platform_status(request: Request) -> JSONResponse:
    link = _link(request)
    snapshot = link.stats.snapshot()
    return JSONResponse({**link.status(), "stats": {
        "requests_processed": snapshot.requests_processed, "requests_failed": snapshot.requests_failed,
        "requests_rejected": link.stats.rejected,
        "success_rate": snapshot.success_rate, "average_response_ms": snapshot.average_response_ms,
        "uptime_seconds": snapshot.uptime_seconds, "cpu_percent": snapshot.cpu_percent,
        "memory_mb": snapshot.memory_mb}, "config": link.config.public()})


async def platform_register(request: Request) -> JSONResponse:
    """Read config.jsonc again (a new api_key pasted from a package, say), then connect with it now."""
    link = _link(request)
    try:
        changed, restart = link.reload_config()
    except ConfigError as exc:
        return JSONResponse({"registered": False, "state": link.state, "code": "invalid_config",
                             "error": f"config.jsonc was not taken, nothing changed: {exc}"}, status_code=400)
    reread = {"config_file": str(link.config.path), "changed": changed, "needs_restart": restart,
              "warnings": list(link.config.warnings)}
    if not link.config.enabled:
        return JSONResponse({"registered": False, "state": link.state, "config": reread,
                             "error": "platform_integration.enabled is false in the config"}, status_code=409)
    await link.register_now()
    return JSONResponse({"registered": link.connected, "state": link.state, "error": link.last_error,
                         "config": reread}, status_code=200 if link.connected else 502)


async def platform_drain(request: Request) -> JSONResponse:
    """Take no new work (work in flight finishes), until /platform/undrain; kept across reconnects."""
    try:
        reason = parse_drain_body(await request.body())
    except DrainBodyError as exc:
        return JSONResponse({"error": str(exc), "code": "invalid_body"}, status_code=400)
    return await _drain(_link(request), True, reason)


async def platform_undrain(request: Request) -> JSONResponse:
    return await _drain(_link(request), False, "")


async def _drain(link: PlatformLink, draining: bool, reason: str) -> JSONResponse:
    if not link.config.enabled:
        return JSONResponse({"applied": False, "state": link.state,
                             "error": "platform_integration.enabled is false in the config"}, status_code=409)
    sent = await link.set_drain(draining, reason)
    if not sent:
        message = f"not connected to the platform ({link.state}): kept, and sent to the platform on connect"
    elif draining:
        message = "the platform sends this client no new work; requests in flight finish"
    elif link.routing.drained_by == "admin":
        message = "asked for work again, but an administrator drains this client too"
    else:
        message = "the platform sends this client work again"
    # 202: accepted, but the platform is only told once connected.
    return JSONResponse({"applied": sent, "message": message, "state": link.state, "connected": link.connected,
                         "drain": link.routing.public_request(), "routing": link.routing.public()},
                        status_code=200 if sent else 202)


# Everything but /health, which the bridge answers itself (it adds its own tab and session checks).
platform_routes = [
    Route("/platform/status", platform_status, methods=["GET"]),
    Route("/platform/register", platform_register, methods=["POST"]),
    Route("/platform/drain", platform_drain, methods=["POST"]),
    Route("/platform/undrain", platform_undrain, methods=["POST"]),
]
routes = [Route("/health", health, methods=["GET"]), *platform_routes]


class ForeignOriginGuard:
    """Refuses a POST (or any other unsafe method) that a web page on an origin not listed sends.

    A page can send a "simple" cross-origin POST without asking first (no preflight), and CORS only
    stops it from reading the answer: without this, any site the owner visits could make this
    machine spend its arena.ai account, drain the client or re-register it. Programs (the openai
    package, curl, the platform's client) send no ``Origin`` and are not affected.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Sequence[str]) -> None:
        self.app = app
        self.allowed = set(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = Headers(scope=scope).get("origin")
            if origin is not None and origin.rstrip("/").lower() not in self.allowed and "*" not in self.allowed:
                error = ApiError(f"Requests from web pages on {origin} are refused: list the origin in "
                                 "platform_features.allowed_origins to allow it.", status=403,
                                 code="origin_not_allowed")
                error.type = "invalid_request_error"
                await Response(error_body(error), 403, media_type="application/json")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def cors(allowed_origins: Sequence[str]) -> list[Middleware]:
    """Cross-origin access for the listed origins only (none at all, no CORS headers, when the list is
    empty), and unsafe requests from other pages refused (``ForeignOriginGuard``).

    Browsers send no cookies here (credentials are off): a page reaches the bridge's OpenAI endpoints with
    ``Authorization: Bearer``, which is why any request header may be allowed.
    """
    guard = Middleware(ForeignOriginGuard, allowed_origins=list(allowed_origins))
    if not allowed_origins:
        return [guard]
    return [Middleware(CORSMiddleware, allow_origins=list(allowed_origins), allow_methods=["GET", "POST"],
                       allow_headers=["*"], allow_credentials=False), guard]
