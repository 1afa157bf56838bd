"""The admin API, JSON under ``/api/admin``, authenticated with the admin token.

Every route is declared once in ``ROUTES`` (method, path, summary, body type): the router and the
OpenAPI document (``/api/admin/openapi.json``) are both built from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arenahub.asgi import read_body
from arenahub.platform.storage import accounts
from arenahub.protocol.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Email = Annotated[str, msgspec.Meta(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Url = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^https?://\S+$")]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_concurrent: PositiveInt | None = None
    models: list[Name] | None = None
    expires_at: dt.datetime | None = None
    metadata: dict[str, Any] | None = None


class KeyUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change; send null to clear a limit."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Email | None | msgspec.UnsetType = msgspec.UNSET
    rpm: PositiveInt | None | msgspec.UnsetType = msgspec.UNSET
    tpm: PositiveInt | None | msgspec.UnsetType = msgspec.UNSET
    max_concurrent: PositiveInt | None | msgspec.UnsetType = msgspec.UNSET
    models: list[Name] | None | msgspec.UnsetType = msgspec.UNSET
    expires_at: dt.datetime | None | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | None | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


class ClientCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email | None = None
    bridge_url: Url = "http://127.0.0.1:5102"
    rpm: PositiveInt | None = None
    max_concurrent: PositiveInt = 4


def _platform(request: Request) -> Platform:
    return request.app.state.platform


async def _body(request: Request, kind: type[Any]) -> Any:
    raw = await read_body(request, 256 * 1024)
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = text.split(" - at `$.", 1)[1].rstrip("`") if " - at `$." in text else None
        raise InvalidRequest(f"Invalid body: {text}", param=param) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The body is not valid JSON ({exc}).", code="invalid_json") from None


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidRequest("expires_at needs a time zone, e.g. 2026-12-31T00:00:00Z.", param="expires_at")
    return value


async def _key_or_404(platform: Platform, key_id: str) -> accounts.ConsumerKey:
    key = await accounts.get_key(platform.engine, key_id)
    if key is None:
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return key


async def list_keys(request: Request) -> Response:
    return JSONResponse({"data": [k.public() for k in await accounts.list_keys(_platform(request).engine)]})


async def create_key(request: Request) -> Response:
    platform = _platform(request)
    body: KeyCreate = await _body(request, KeyCreate)
    key_id, secret = await accounts.create_key(platform.engine, name=body.name, rpm=body.rpm)
    await accounts.update_key(platform.engine, key_id, email=body.email, tpm=body.tpm, max_concurrent=body.max_concurrent,
                              allowed_models=body.models, expires_at=_aware(body.expires_at), meta=body.metadata)
    key = await _key_or_404(platform, key_id)
    return JSONResponse({"key": secret, **key.public()}, status_code=201)


async def show_key(request: Request) -> Response:
    return JSONResponse((await _key_or_404(_platform(request), request.path_params["key_id"])).public())


async def update_key(request: Request) -> Response:
    platform = _platform(request)
    key_id = request.path_params["key_id"]
    body: KeyUpdate = await _body(request, KeyUpdate)
    changes = {f: v for f in body.__struct_fields__ if (v := getattr(body, f)) is not msgspec.UNSET}
    if "models" in changes:
        changes["allowed_models"] = changes.pop("models")
    if "metadata" in changes:
        changes["meta"] = changes.pop("metadata")
    if "expires_at" in changes:
        changes["expires_at"] = _aware(changes["expires_at"])
    if changes and not await accounts.update_key(platform.engine, key_id, **changes):
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return JSONResponse((await _key_or_404(platform, key_id)).public())


async def rotate_key(request: Request) -> Response:
    platform = _platform(request)
    key_id = request.path_params["key_id"]
    secret = await accounts.rotate_key(platform.engine, key_id)
    if secret is None:
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return JSONResponse({"key": secret, **(await _key_or_404(platform, key_id)).public()})


async def delete_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    if not await accounts.delete_key(_platform(request).engine, key_id):
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return JSONResponse({"deleted": True, "id": key_id})


async def list_clients(request: Request) -> Response:
    platform = _platform(request)
    live = {s.client_id: s.snapshot() for s in platform.registry.sessions()}
    data = []
    for client in await accounts.list_clients(platform.engine):
        data.append({**client, "live": live.get(client["id"])})
    return JSONResponse({"data": data})


async def create_client(request: Request) -> Response:
    body: ClientCreate = await _body(request, ClientCreate)
    client_id, api_key = await accounts.create_client(
        _platform(request).engine, name=body.name, email=body.email, bridge_url=body.bridge_url, rpm=body.rpm,
        max_concurrent=body.max_concurrent)
    return JSONResponse({"client_id": client_id, "api_key": api_key}, status_code=201)


@dataclass(frozen=True)
class Spec:
    method: str
    path: str
    handler: Callable[[Request], Awaitable[Response]]
    summary: str
    body: type[Any] | None = None


ROUTES = [
    Spec("GET", "/keys", list_keys, "List consumer keys (never their secrets)"),
    Spec("POST", "/keys", create_key, "Create a consumer key; its secret is in this answer only", KeyCreate),
    Spec("GET", "/keys/{key_id}", show_key, "Show a key"),
    Spec("PATCH", "/keys/{key_id}", update_key, "Change a key's limits, models, expiry, metadata or disable it",
         KeyUpdate),
    Spec("POST", "/keys/{key_id}/rotate", rotate_key, "New secret for the key; the old one stops working"),
    Spec("DELETE", "/keys/{key_id}", delete_key, "Delete a key (its records stay)"),
    Spec("GET", "/clients", list_clients, "List clients with their live state"),
    Spec("POST", "/clients", create_client, "Register a client; its api_key is in this answer only", ClientCreate),
]


def openapi() -> dict[str, Any]:
    bodies = [s.body for s in ROUTES if s.body is not None]
    schemas, components = msgspec.json.schema_components(bodies, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(bodies, schemas))
    paths: dict[str, Any] = {}
    for spec in ROUTES:
        op: dict[str, Any] = {"summary": spec.summary, "security": [{"adminToken": []}], "responses": {
            "200": {"description": "OK"}, "400": {"description": "Invalid input (OpenAI error envelope)"},
            "401": {"description": "Missing or wrong admin token"}, "404": {"description": "Not found"}}}
        params = [p.strip("{}") for p in spec.path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                for p in params]
        if spec.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": by_type[spec.body]}}}
        paths.setdefault("/api/admin" + spec.path, {})[spec.method.lower()] = op
    return {"openapi": "3.1.0", "info": {"title": "arenahub admin API", "version": "1"}, "paths": paths,
            "components": {"schemas": components, "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "the admin token"}}}}


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        await _platform(request).admin.check(request.headers.get("authorization"))
        return await handler(request)
    return endpoint


async def openapi_document(request: Request) -> Response:
    return JSONResponse(openapi())


def routes() -> list[Route]:
    out = [Route("/api/admin/openapi.json", openapi_document, methods=["GET"])]
    grouped: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for spec in ROUTES:
        grouped.setdefault(spec.path, {})[spec.method] = spec.handler
    for path, handlers in grouped.items():
        out.append(Route("/api/admin" + path, _dispatch(handlers), methods=list(handlers)))
    return out


def _dispatch(handlers: dict[str, Callable[[Request], Awaitable[Response]]]) -> Callable[[Request], Awaitable[Response]]:
    guarded = {m: _guarded(h) for m, h in handlers.items()}

    async def endpoint(request: Request) -> Response:
        return await guarded[request.method](request)
    return endpoint
