"""The platform's ASGI application: routes, error mapping and lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.types import Message, Receive, Scope, Send

from arenahub.asgi import ClientClosed
from arenahub.platform import client_api, consumer_api, images_api, metrics
from arenahub.platform.admin import api as admin_api
from arenahub.platform.cluster.peer_endpoint import peer_endpoint
from arenahub.platform.dashboard import pages as dashboard_pages
from arenahub.platform.runtime import Platform
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.tunnel import tunnel_endpoint
from arenahub.protocol import peer
from arenahub.protocol.errors import ApiError, InvalidRequest, NotFound
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


async def _on_client_closed(request: Request, exc: Exception) -> Response:
    """A client that leaves while sending its request is an everyday event: one INFO line, no
    traceback; the answer goes nowhere (uvicorn drops it)."""
    err = exc if isinstance(exc, ClientClosed) else ClientClosed("The client closed the connection.")
    log.info("%s %s: %s (%d client_closed)", request.method, request.url.path, err.message, err.status)
    return api_error_response(err)


async def _on_recursion(request: Request, exc: Exception) -> Response:
    """The JSON parsers (msgspec) raise RecursionError on a body nested deeper than the stack
    allows: the request's fault, a 400. Any other RecursionError is a bug of ours."""
    if not any(marker in str(exc) for marker in ("while deserializing", "while decoding a JSON")):
        return await _on_unexpected(request, exc)
    return api_error_response(InvalidRequest("The request body is JSON nested too deeply.", code="invalid_json"))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return api_error_response(ApiError("The platform hit an internal error; it has been logged."))


class PlatformApp(Starlette):
    """The platform's application. A chat completion, the one request on the hot path, goes straight to
    its endpoint, with the same error mapping but without the layers of middleware and routing the
    other paths take (they add a frame to every resumption of the request's coroutine: measured in
    bench/, about 5% of the platform's CPU a request)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions" and scope["method"] == "POST":
            scope["app"] = self
            await self._chat_completion(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _chat_completion(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await consumer_api.chat_completions(request)
            await response(scope, receive, sending)
        except Exception as exc:
            handler = next((self.exception_handlers[kind] for kind in type(exc).__mro__
                            if kind in self.exception_handlers), None)
            if started or handler is None:
                raise  # a bug after the answer began: uvicorn logs it and closes the connection
            response = await handler(request, exc)
            await response(scope, receive, send)


def create_app(settings: PlatformSettings | None = None, platform: Platform | None = None) -> Starlette:
    settings = settings or PlatformSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = platform or Platform(settings)
        await state.start()
        app.state.platform = state
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        base = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
        log.info("serving: the OpenAI API at %s/v1, the dashboard at %s/dashboard, clients connect to %s/api",
                 base, base, base)
        try:
            yield
        finally:
            await state.stop()

    routes = [*consumer_api.routes, *images_api.routes, *client_api.routes, *admin_api.routes(), *metrics.routes,
              WebSocketRoute("/api/ws", tunnel_endpoint), WebSocketRoute(peer.PATH, peer_endpoint),
              *dashboard_pages.routes()]
    return PlatformApp(routes=routes, lifespan=lifespan, middleware=[Middleware(dashboard_pages.DashboardHeaders)],
                       exception_handlers={ApiError: _on_api_error, HTTPException: _on_http_error,
                                           ClientClosed: _on_client_closed, ClientDisconnect: _on_client_closed,
                                           RecursionError: _on_recursion, Exception: _on_unexpected})
