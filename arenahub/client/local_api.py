"""The client's local endpoints, as in the seed's API reference: /health, /platform/status, /platform/register.

The routes are a plain list so that the bridge can serve them on its own port (5102); so is the
CORS policy (``platform_features.allowed_origins``), which the bridge applies to all of its endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from arenahub.client.link import PlatformLink


def _link(request: Request) -> PlatformLink:
    return request.app.state.link


async def health(request: Request) -> JSONResponse:
    link = _link(request)
    healthy = (not link.config.enabled or link.connected) and link.session_status.bridge_reachable
    return JSONResponse({
        "enabled": link.config.enabled,
        "connected": link.connected,
        "healthy": healthy,
        "platform_url": link.config.platform_url,
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
    link = _link(request)
    if not link.config.enabled:
        return JSONResponse({"registered": False, "state": link.state,
                             "error": "platform_integration.enabled is false in the config"}, status_code=409)
    await link.register_now()
    return JSONResponse({"registered": link.connected, "state": link.state, "error": link.last_error},
                        status_code=200 if link.connected else 502)


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/platform/status", platform_status, methods=["GET"]),
    Route("/platform/register", platform_register, methods=["POST"]),
]


def cors(allowed_origins: Sequence[str]) -> list[Middleware]:
    """Cross-origin access for the listed origins only; none at all (no CORS headers) when the list is empty.

    Browsers send no cookies here (credentials are off): a page reaches the bridge's OpenAI endpoints with
    ``Authorization: Bearer``, which is why any request header may be allowed.
    """
    if not allowed_origins:
        return []
    return [Middleware(CORSMiddleware, allow_origins=list(allowed_origins), allow_methods=["GET", "POST"],
                       allow_headers=["*"], allow_credentials=False)]
