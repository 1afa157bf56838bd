"""Plain HTTP register and heartbeat, for clients that cannot hold the tunnel open.

Routes match the seed's integration module: ``PUT /api/clients/{id}/status`` (register) and
``POST /api/clients/{id}/heartbeat``, authenticated with ``Authorization: Bearer <api_key>``
(``X-Client-ID``, when sent, must name the same client). Such a client is monitored; requests
reach clients over the tunnel (``/api/ws``), which works behind NAT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arenahub.asgi import read_body
from arenahub.platform.dashboard.auth import client_address
from arenahub.platform.storage import accounts
from arenahub.platform.storage.accounts import ClientAccount
from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError, InvalidApiKey, InvalidRequest

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

MAX_BODY = 256 * 1024


class Registration(msgspec.Struct, forbid_unknown_fields=False):
    # The tunnel's bounds (frames.py) hold here too: a client is a stranger.
    models: frames.Models = []
    capabilities: frames.Capabilities = []
    client_version: frames.Short = ""
    max_concurrent_requests: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None


class HttpHeartbeat(msgspec.Struct, forbid_unknown_fields=False):
    stats: frames.ClientStats = msgspec.field(default_factory=frames.ClientStats)
    session: frames.SessionStatus | None = None
    models: frames.Models | None = None
    client_version: frames.Short | None = None


async def _authenticate(request: Request, platform: Platform) -> ClientAccount:
    client_id = request.path_params["client_id"]
    header_id = request.headers.get("x-client-id")
    if header_id is not None and header_id != client_id:
        raise InvalidRequest("X-Client-ID does not match the client id in the path.", param="X-Client-ID")
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidApiKey("Missing client api_key: send `Authorization: Bearer <api_key>`.")
    address = client_address(request)
    await platform.credential_throttle.check(address, "client_key")
    account = await accounts.authenticate_client(platform.engine, client_id, token.strip())
    if account is None:
        await platform.credential_throttle.failed(address, "client_key")
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
                         "connected": any(s.client_id == account.id for s in platform.routable.sessions())})


async def health(request: Request) -> Response:
    """Whether the platform is up and can serve now; to the admin (its bearer token), also how many
    clients are connected and available, the requests in flight and the models offered. Anybody
    may ask, so the answer without the token names no client, model or figure."""
    platform: Platform = request.app.state.platform
    sessions = list(platform.registry.sessions())
    available = sum(1 for s in sessions if s.available)
    # Serving: some client of the cluster can take a request through this instance (its own, or one another
    # instance holds), so a load balancer's check of any instance says the same.
    serving = any(s.available for s in platform.routable.sessions())
    # A draining instance answers 503, so that a load balancer's health check takes it out of rotation
    # (deploy/); its requests in flight still finish.
    status = 503 if platform.shutting_down else 200
    body: dict[str, object] = {"status": "shutting_down" if platform.shutting_down else "ok",
                               "serving": serving and not platform.shutting_down}
    if request.headers.get("authorization"):
        try:
            await platform.credential_throttle.guard(client_address(request), "admin_token",
                                                     lambda: platform.admin.check(request.headers.get("authorization")))
        except ApiError as err:
            if err.status not in (401, 429):
                raise
            # Another credential (a consumer key, say), or throttled: the answer anybody gets. A wrong
            # token still counts against the address, and while it is throttled no token tells more.
            return JSONResponse(body, status_code=status)
        body.update(instance=platform.instance_id, clients_connected=len(sessions), clients_available=available,
                    requests_in_flight=platform.inflight, models=sorted(platform.models_offered()),
                    cluster=await platform.cluster_health())
    return JSONResponse(body, status_code=status)


routes = [
    Route("/api/health", health, methods=["GET"]),
    Route("/api/clients/{client_id}/register", register, methods=["POST"]),
    Route("/api/clients/{client_id}/status", register, methods=["PUT"]),
    Route("/api/clients/{client_id}/heartbeat", heartbeat, methods=["POST"]),
]
