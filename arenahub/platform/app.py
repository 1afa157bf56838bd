"""The platform's ASGI application: routes, error mapping and lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute

from arenahub.platform import client_api, consumer_api, metrics
from arenahub.platform.admin import api as admin_api
from arenahub.platform.dashboard import pages as dashboard_pages
from arenahub.platform.runtime import Platform
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.tunnel import tunnel_endpoint
from arenahub.protocol.errors import ApiError, NotFound
from arenahub.protocol.openai import error_body

log = logging.getLogger("arenahub.platform")


def api_error_response(err: ApiError) -> Response:
    return Response(error_body(err), status_code=err.status, headers=err.headers, media_type="application/json")


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err: ApiError = NotFound(f"Unknown path: {request.method} {request.url.path}", code="unknown_path")
    else:
        err = ApiError(exc.detail or "HTTP error", status=exc.status_code, code="http_error")
        err.type = "invalid_request_error"
    err.headers = dict(exc.headers or {})
    return api_error_response(err)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return api_error_response(ApiError("The platform hit an internal error; it has been logged."))


def create_app(settings: PlatformSettings | None = None, platform: Platform | None = None) -> Starlette:
    settings = settings or PlatformSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = platform or Platform(settings)
        await state.start()
        app.state.platform = state
        try:
            yield
        finally:
            await state.stop()

    routes = [*consumer_api.routes, *client_api.routes, *admin_api.routes(), *metrics.routes,
              WebSocketRoute("/api/ws", tunnel_endpoint), *dashboard_pages.routes()]
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(dashboard_pages.DashboardHeaders)],
                     exception_handlers={ApiError: _on_api_error, HTTPException: _on_http_error,
                                         Exception: _on_unexpected})
