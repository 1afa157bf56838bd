"""Plain HTTP register and heartbeat, for clients that cannot hold the tunnel open.

Routes match the seed's integration module: ``PUT /api/clients/{id}/status`` (register) and
``POST /api/clients/{id}/heartbeat``, authenticated with ``Authorization: Bearer <api_key>``
(``X-Client-ID``, when sent, must name the same client). Such a client is monitored; requests
reach clients over the tunnel (``/api/ws``), which works behind NAT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arenahub.asgi import read_body
from arenahub.platform.storage import accounts
from arenahub.platform.storage.accounts import ClientAccount
from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError, InvalidApiKey, InvalidRequest

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

MAX_BODY = 256 * 1024


class Registration(msgspec.Struct, forbid_unknown_fields=False):
    models: list[str] = []
    capabilities: list[str] = []
    client_version: str = ""
    max_concurrent_requests: int | None = None


class HttpHeartbeat(msgspec.Struct, forbid_unknown_fields=False):
    stats: frames.ClientStats = msgspec.field(default_factory=frames.ClientStats)
    session: frames.SessionStatus | None = None
    models: list[str] | None = None
    client_version: str | None = None


async def _authenticate(request: Request, platform: Platform) -> ClientAccount:
    client_id = request.path_params["client_id"]
    header_id = request.headers.get("x-client-id")
    if header_id is not None and header_id != client_id:
        raise InvalidRequest("X-Client-ID does not match the client id in the path.", param="X-Client-ID")
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidApiKey("Missing client api_key: send `Authorization: Bearer <api_key>`.")
    account = await accounts.authenticate_client(platform.engine, client_id, token.strip())
    if account is None:
        raise InvalidApiKey("Client not found or invalid api_key.", code="invalid_credentials")
    if account.disabled:
        raise ApiError("This client is disabled by an administrator.", code="client_disabled", status=403)
    return account


T = TypeVar("T")


def _decode(body: bytes, kind: type[T]) -> T:
    if not body.strip():
        return kind()
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The body is not valid JSON ({exc}).", code="invalid_json") from None


def tunnel_url(request: Request) -> str:
    scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
    return f"{scheme}://{request.url.netloc}/api/ws"


async def register(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    account = await _authenticate(request, platform)
    reg = _decode(await read_body(request, MAX_BODY), Registration)
    await accounts.record_client_hello(platform.engine, account.id, sorted(set(reg.models)), reg.client_version)
    platform.catalog |= set(reg.models)
    return JSONResponse({"registered": True, "client_id": account.id, "name": account.name,
                         "tunnel_url": tunnel_url(request), "protocol_version": frames.PROTOCOL_VERSION,
                         "connected": platform.registry.get(account.id) is not None})


async def heartbeat(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    account = await _authenticate(request, platform)
    hb = _decode(await read_body(request, MAX_BODY), HttpHeartbeat)
    platform.record_heartbeat(account.id, frames.Heartbeat(stats=hb.stats, session=hb.session, models=hb.models,
                                                           client_version=hb.client_version))
    if hb.models:
        platform.catalog |= set(hb.models)
    return JSONResponse({"ok": True, "client_id": account.id,
                         "connected": platform.registry.get(account.id) is not None})


async def health(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    sessions = list(platform.registry.sessions())
    return JSONResponse({"status": "shutting_down" if platform.shutting_down else "ok",
                         "clients_connected": len(sessions),
                         "clients_available": sum(1 for s in sessions if s.available),
                         "requests_in_flight": platform.inflight,
                         "models": sorted(platform.registry.models())})


routes = [
    Route("/api/health", health, methods=["GET"]),
    Route("/api/clients/{client_id}/register", register, methods=["POST"]),
    Route("/api/clients/{client_id}/status", register, methods=["PUT"]),
    Route("/api/clients/{client_id}/heartbeat", heartbeat, methods=["POST"]),
]
