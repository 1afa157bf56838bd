"""The admin API, JSON under ``/api/admin``, authenticated with the admin token.

Every route is declared once in ``ROUTES`` (method, path, summary, body and query types): the router
and the OpenAPI document (``/api/admin/openapi.json``) are both built from it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arenahub.platform.billing import (
    Entry,
    InvalidAmount,
    Price,
    format_usd,
    parse_usd,
)
from arenahub.platform import client_package
from arenahub.platform.admin import analytics_api, client_views, settings_api
from arenahub.platform.dashboard import auth as dashboard_auth
from arenahub.platform.admin.inputs import json_body as _body
from arenahub.platform.admin.inputs import platform_of as _platform
from arenahub.platform.admin.inputs import query as _query
from arenahub.platform.storage import accounts, billing_store
from arenahub.protocol import frames
from arenahub.protocol.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

log = logging.getLogger("arenahub.platform.admin")

PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Email = Annotated[str, msgspec.Meta(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Url = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^https?://\S+$")]
# Money travels as decimal strings ("12.50"): floats never touch it. parse_usd says what is wrong.
Usd = Annotated[str, msgspec.Meta(max_length=40, description='USD as a decimal string, e.g. "12.50"')]
Note = Annotated[str, msgspec.Meta(max_length=500, description="why; kept with the entry")]
When = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_concurrent: PositiveInt | None = None
    models: list[Name] | None = None
    expires_at: dt.datetime | None = None
    metadata: dict[str, Any] | None = None
    credit: Annotated[Usd, msgspec.Meta(description="starting credit: the key spends from its balance")] | None = None
    unlimited: Annotated[bool, msgspec.Meta(description="no credit limit (default: true without credit)")] | None = None


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
    unlimited: bool | msgspec.UnsetType = msgspec.UNSET


class TopUp(msgspec.Struct, forbid_unknown_fields=True):
    """Credit added to a key: more than 0 USD."""

    amount: Usd
    note: Note | None = None


class Adjustment(msgspec.Struct, forbid_unknown_fields=True):
    """A correction to a key's balance: a signed amount ("-1.25" takes credit away); not 0."""

    amount: Usd
    note: Note | None = None


class PriceSet(msgspec.Struct, forbid_unknown_fields=True):
    """A model's price: USD per 1M prompt tokens, per 1M completion tokens, and per image (default 0)."""

    prompt: Usd
    completion: Usd
    image: Usd | None = None


class ClientCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email | None = None
    bridge_url: Url = "http://127.0.0.1:5102"
    rpm: PositiveInt | None = None
    max_concurrent: PositiveInt = 4


class ClientUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change; send null to clear rpm or email. A connected client gets it at once."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Email | None | msgspec.UnsetType = msgspec.UNSET
    bridge_url: Url | msgspec.UnsetType = msgspec.UNSET
    rpm: PositiveInt | None | msgspec.UnsetType = msgspec.UNSET
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | msgspec.UnsetType = msgspec.UNSET
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000, description="higher is chosen first by the "
                                          "priority strategy (default 0)")] | msgspec.UnsetType = msgspec.UNSET
    weight: Annotated[int, msgspec.Meta(ge=1, le=1000, description="share of requests among equals in the random "
                                        "and priority strategies (default 1)")] | msgspec.UnsetType = msgspec.UNSET
    disabled: Annotated[bool, msgspec.Meta(description="true also closes its connection")] | msgspec.UnsetType = (
        msgspec.UNSET)


class DrainRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=200, description="why; written to the platform log")] | None = None


class UsageQuery(msgspec.Struct, forbid_unknown_fields=True):
    key: Annotated[Name, msgspec.Meta(description="only this key's requests (key id)")] | None = None
    client: Annotated[Name, msgspec.Meta(description="only requests this client served (client id)")] | None = None
    since: Annotated[When, msgspec.Meta(description="from this time, inclusive; ISO 8601 with a zone")] | None = None
    until: Annotated[When, msgspec.Meta(description="up to this time, exclusive; ISO 8601 with a zone")] | None = None


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidRequest("expires_at needs a time zone, e.g. 2026-12-31T00:00:00Z.", param="expires_at")
    return value


async def _key_or_404(platform: Platform, key_id: str) -> accounts.ConsumerKey:
    key = await accounts.get_key(platform.engine, key_id)
    if key is None:
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return key


def _key_json(platform: Platform, key: accounts.ConsumerKey) -> dict[str, Any]:
    """The key as the admin sees it, with its credit from the live ledger."""
    return {**key.public(), "credit": replace(platform.accounting.ledger.account(key.id), unlimited=key.unlimited).public()}


async def list_keys(request: Request) -> Response:
    platform = _platform(request)
    return JSONResponse({"data": [_key_json(platform, k) for k in await accounts.list_keys(platform.engine)]})


async def create_key(request: Request) -> Response:
    platform = _platform(request)
    body: KeyCreate = await _body(request, KeyCreate)
    credit = parse_usd(body.credit, field="credit") if body.credit is not None else None
    unlimited = body.unlimited if body.unlimited is not None else credit is None
    expires_at = _aware(body.expires_at)  # checked before anything is made
    key_id, secret = await accounts.create_key(platform.engine, name=body.name, rpm=body.rpm)
    await accounts.update_key(platform.engine, key_id, email=body.email, tpm=body.tpm,
                              max_concurrent=body.max_concurrent, allowed_models=body.models,
                              expires_at=expires_at, meta=body.metadata, unlimited=unlimited)
    if credit:
        platform.accounting.top_up(key_id, credit, note="starting credit")
    key = await _key_or_404(platform, key_id)
    return JSONResponse({"key": secret, **_key_json(platform, key)}, status_code=201)


async def show_key(request: Request) -> Response:
    platform = _platform(request)
    return JSONResponse(_key_json(platform, await _key_or_404(platform, request.path_params["key_id"])))


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
    return JSONResponse(_key_json(platform, await _key_or_404(platform, key_id)))


async def rotate_key(request: Request) -> Response:
    platform = _platform(request)
    key_id = request.path_params["key_id"]
    secret = await accounts.rotate_key(platform.engine, key_id)
    if secret is None:
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return JSONResponse({"key": secret, **_key_json(platform, await _key_or_404(platform, key_id))})


async def delete_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    if not await accounts.delete_key(_platform(request).engine, key_id):
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return JSONResponse({"deleted": True, "id": key_id})


async def _money(request: Request, kind: type[TopUp | Adjustment]) -> Response:
    """A top-up or an adjustment, in the live ledger at once; persisted with the writer's next batch."""
    platform = _platform(request)
    key = await _key_or_404(platform, request.path_params["key_id"])
    body = await _body(request, kind)
    adjustment = kind is Adjustment
    amount = parse_usd(body.amount, field="amount", signed=adjustment)
    if amount == 0:
        raise InvalidAmount(f"amount must be {'non-zero' if adjustment else 'more than 0 USD'}, got {body.amount!r}",
                            param="amount")
    book = platform.accounting.adjust if adjustment else platform.accounting.top_up
    entry: Entry = book(key.id, amount, note=body.note)
    return JSONResponse({"entry_id": entry.entry_id, "key_id": key.id, "kind": entry.kind.value,
                         "amount_usd": format_usd(entry.amount), "amount_micros": entry.amount, "note": entry.note,
                         "created_at": entry.created_at.isoformat(),
                         "credit": replace(platform.accounting.ledger.account(key.id), unlimited=key.unlimited).public()}, status_code=201)


async def top_up_key(request: Request) -> Response:
    return await _money(request, TopUp)


async def adjust_key(request: Request) -> Response:
    return await _money(request, Adjustment)


async def list_clients(request: Request) -> Response:
    return client_views.json_response({"data": await client_views.client_views(_platform(request))})


def _no_client(client_id: str) -> NotFound:
    return NotFound(f"No client with id {client_id!r}.", code="client_not_found")


async def _show(platform: Platform, client_id: str) -> Response:
    client = await client_views.client_view(platform, client_id)
    if client is None:
        raise _no_client(client_id)
    return JSONResponse(client)


async def show_client(request: Request) -> Response:
    return await _show(_platform(request), request.path_params["client_id"])


async def _change_client(request: Request, **values: Any) -> Response:
    """Store the change, then apply it to the live session now rather than at the next poll."""
    platform = _platform(request)
    client_id = request.path_params["client_id"]
    account: accounts.ClientAccount | None = None
    if not values or await accounts.update_client(platform.engine, client_id, **values):
        account = await accounts.get_client(platform.engine, client_id)
    if account is None:
        raise _no_client(client_id)
    platform.client_settings_changed(account)
    session = platform.registry.get(client_id)
    if account.disabled and session is not None and not session.closed:
        log.info("client %s disabled by an administrator; closing its connection", client_id)
        # What the tunnel answers a disabled client on connect: the client stops reconnecting.
        await session.close(frames.CLOSE_FORBIDDEN, "this client is disabled by an administrator")
    return await _show(platform, client_id)


async def update_client(request: Request) -> Response:
    body: ClientUpdate = await _body(request, ClientUpdate)
    return await _change_client(request, **{f: v for f in body.__struct_fields__
                                            if (v := getattr(body, f)) is not msgspec.UNSET})


async def drain_client(request: Request) -> Response:
    body: DrainRequest = await _body(request, DrainRequest)
    response = await _change_client(request, draining=True)
    log.info("client %s drained by an administrator: %s", request.path_params["client_id"],
             body.reason or "no reason given")
    return response


async def undrain_client(request: Request) -> Response:
    response = await _change_client(request, draining=False)
    log.info("client %s undrained by an administrator", request.path_params["client_id"])
    return response


async def clear_maintenance(request: Request) -> Response:
    return await _change_client(request, maintenance_reason=None, maintenance_since=None)


_WHEELS = client_package.WheelCache()


async def download_package(request: Request) -> Response:
    """The client package with a NEW api key (keys are stored hashed): the old key stops working and a
    connected client is disconnected with the reason."""
    platform = _platform(request)
    client_id = request.path_params["client_id"]
    account = await accounts.get_client(platform.engine, client_id)
    if account is None:
        raise _no_client(client_id)
    platform_url = str(request.base_url).rstrip("/") + "/api"
    wheel = await asyncio.to_thread(_WHEELS.get)
    api_key = await accounts.regenerate_client_key(platform.engine, client_id)
    if api_key is None:
        raise _no_client(client_id)
    data = await asyncio.to_thread(
        client_package.build_client_package, platform_url=platform_url, client_id=client_id, api_key=api_key,
        client_name=account.name, bridge_url=account.bridge_url, max_concurrent_requests=account.max_concurrent,
        wheel=wheel)
    fresh = await accounts.get_client(platform.engine, client_id)
    if fresh is not None:
        platform.client_settings_changed(fresh)  # ends a connection made with the old key, with the reason
    return Response(data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{client_package.package_filename(client_id)}"',
        "Cache-Control": "no-store"})


async def create_client(request: Request) -> Response:
    body: ClientCreate = await _body(request, ClientCreate)
    client_id, api_key = await accounts.create_client(
        _platform(request).engine, name=body.name, email=body.email, bridge_url=body.bridge_url, rpm=body.rpm,
        max_concurrent=body.max_concurrent)
    return JSONResponse({"client_id": client_id, "api_key": api_key}, status_code=201)


async def client_earnings(request: Request) -> Response:
    platform = _platform(request)
    client_id = request.path_params["client_id"]
    if await accounts.get_client(platform.engine, client_id) is None:
        raise _no_client(client_id)
    e = platform.accounting.ledger.earnings(client_id)
    return JSONResponse({"client_id": client_id, "requests": e.requests, "prompt_tokens": e.prompt_tokens,
                         "completion_tokens": e.completion_tokens,
                         "total_tokens": e.prompt_tokens + e.completion_tokens, "images": e.images,
                         "value_usd": format_usd(e.value), "value_micros": e.value})


def _price_json(price: Price) -> dict[str, str]:
    return {"prompt_per_1m_usd": format_usd(price.prompt_per_1m),
            "completion_per_1m_usd": format_usd(price.completion_per_1m), "per_image_usd": format_usd(price.per_image)}


async def list_prices(request: Request) -> Response:
    platform = _platform(request)
    # "default": no admin price stored for the model (an admin price equal to the default is still the admin's).
    admin_prices, _ = await billing_store.prices_since(platform.engine, None)
    table = platform.accounting.prices
    return JSONResponse({"data": [{"model": model, **_price_json(price), "default": model not in admin_prices}
                                  for model, price in table.items()],
                         "fallback": _price_json(table.fallback)})


async def set_price(request: Request) -> Response:
    platform = _platform(request)
    model = request.path_params["model"]
    if not model.strip() or len(model) > 200:
        raise InvalidRequest(f"The model name must be 1 to 200 characters, not blank; got {len(model)}.",
                             param="model")
    body: PriceSet = await _body(request, PriceSet)
    price = Price(parse_usd(body.prompt, field="prompt"), parse_usd(body.completion, field="completion"),
                  parse_usd(body.image or "0", field="image"))
    await billing_store.set_price(platform.engine, model, price)
    platform.accounting.prices.set(model, price)
    return JSONResponse({"model": model, **_price_json(price), "default": False})


async def usage(request: Request) -> Response:
    query: UsageQuery = _query(request, UsageQuery)
    if query.since is not None and query.until is not None and query.since > query.until:
        raise InvalidRequest(f"since ({query.since.isoformat()}) is later than until ({query.until.isoformat()}).",
                             param="since")
    # In UTC: SQLite keeps times as UTC text without a zone, so another offset would compare wrongly.
    since, until = (t.astimezone(dt.UTC) if t else None for t in (query.since, query.until))
    return JSONResponse(await billing_store.usage_report(_platform(request).engine, key_id=query.key,
                                                         client_id=query.client, since=since, until=until))


@dataclass(frozen=True)
class Spec:
    method: str
    path: str  # Starlette syntax: "{model:path}" takes a value with "/" in it
    handler: Callable[[Request], Awaitable[Response]]
    summary: str
    body: type[Any] | None = None
    query: type[Any] | None = None  # a Struct: one query parameter per field
    status: int = 200
    body_optional: bool = False


ROUTES = [
    Spec("GET", "/keys", list_keys, "List consumer keys (never their secrets), each with its credit"),
    Spec("POST", "/keys", create_key, "Create a consumer key; its secret is in this answer only. With credit, "
         "the key is limited and starts with that balance", KeyCreate, status=201),
    Spec("GET", "/keys/{key_id}", show_key, "Show a key and its credit"),
    Spec("PATCH", "/keys/{key_id}", update_key, "Change a key's limits, models, expiry, metadata or unlimited "
         "setting, or disable it", KeyUpdate),
    Spec("POST", "/keys/{key_id}/rotate", rotate_key, "New secret for the key; the old one stops working"),
    Spec("DELETE", "/keys/{key_id}", delete_key, "Delete a key (its records stay)"),
    Spec("POST", "/keys/{key_id}/top-ups", top_up_key, "Add credit to a key; it can spend it at once", TopUp,
         status=201),
    Spec("POST", "/keys/{key_id}/adjustments", adjust_key, "Correct a key's balance by a signed amount",
         Adjustment, status=201),
    Spec("GET", "/status", client_views.platform_status, "The platform at a glance: its version and the current "
         "client version, uptime, clients connected and healthy, requests in flight, queue depth, routing strategy"),
    Spec("GET", "/clients", list_clients, "List clients with their live session, health, version (outdated or "
         "not), last refusal and the last hour's requests"),
    Spec("POST", "/clients", create_client, "Register a client; its api_key is in this answer only", ClientCreate,
         status=201),
    Spec("GET", "/clients/{client_id}", show_client, "Show a client (never its key hash) with its live session "
         "(null when not connected) and its health: circuit breaker, maintenance, drops, speed"),
    Spec("DELETE", "/clients/{client_id}", client_views.delete_client, "Delete a client: a connected one is told "
         "why (refused, code client_deleted) and disconnected; its request records and ledger stay", status=204),
    Spec("PATCH", "/clients/{client_id}", update_client, "Change a client's registration, limits, priority or "
         "weight, or disable it (which also closes its connection); applied at once", ClientUpdate),
    Spec("POST", "/clients/{client_id}/drain", drain_client, "Drain a client: it finishes the requests in flight "
         "and gets no new ones, until undrained (kept across restarts)", DrainRequest, body_optional=True),
    Spec("POST", "/clients/{client_id}/undrain", undrain_client, "Let a drained client take work again (a drain "
         "the client asked for itself stays)"),
    Spec("POST", "/clients/{client_id}/package", download_package, "Download the client package "
         "lmarena-client-<CLIENT_ID>.zip; it carries a new api_key: the old key stops working at once"),
    Spec("POST", "/clients/{client_id}/clear-maintenance", clear_maintenance, "Take a client out of maintenance "
         "(after too many dropped requests) and back into rotation"),
    Spec("GET", "/clients/{client_id}/earnings", client_earnings, "What a client has earned: requests served, "
         "tokens, and the value charged to consumers for them (live)"),
    Spec("GET", "/prices", list_prices, "Every model's price (default or set by the admin) and the fallback "
         "price for models with none"),
    Spec("PUT", "/prices/{model:path}", set_price, "Set a model's price (the name may contain '/'); applies to "
         "the next request", PriceSet),
    Spec("GET", "/usage", usage, "What keys spent and clients earned, by UTC day and model. From the stored "
         "book, which trails the live ledger by up to the record writer's flush interval (0.5 s by default)",
         query=UsageQuery),
    Spec("GET", "/analytics/overview", analytics_api.overview, "Charts of the last hour, day or week (requests, "
         "success rate, p50/p95 latency, time to first token, tokens and errors per bucket, and totals), for "
         "everything or one client, key or model, with the live state: clients connected and healthy, requests "
         "in flight, queue depth", query=analytics_api.OverviewQuery),
    Spec("GET", "/analytics/summaries", analytics_api.summaries, "One summary per client, key or model (with its "
         "name) over a period, busiest first; read from the aggregates", query=analytics_api.SummariesQuery),
    Spec("GET", "/requests", analytics_api.request_log, "The request log, newest first, filtered, a page at a time "
         "(next_cursor fetches the next)", query=analytics_api.LogQuery),
    Spec("GET", "/requests/{request_id}", analytics_api.request_detail, "One request: its record with key and "
         "client names, its routing attempts and error, and its prompt and answer when they are stored"),
    Spec("GET", "/exports/requests", analytics_api.export_requests, "Download the request log (filtered like GET "
         "/requests) as CSV or JSON, oldest first, streamed", query=analytics_api.RequestsExport),
    Spec("GET", "/exports/aggregates", analytics_api.export_aggregates, "Download the per-minute aggregates of a "
         "period (per client, key and model) as CSV or JSON, streamed", query=analytics_api.AggregatesExport),
    Spec("GET", "/settings", settings_api.show_settings, "The settings that can change while the platform runs: "
         "values in use, flag/environment defaults, which are overridden, choices and descriptions"),
    Spec("PATCH", "/settings", settings_api.change_settings, "Change live settings ({name: value}; null goes back "
         "to the flag/environment value): applied at once, kept across restarts, followed by every platform "
         "process on the database within a second", settings_api.SettingsPatch),
    Spec("PUT", "/dashboard-password", dashboard_auth.change_password_endpoint, "Set the dashboard password (at "
         "least 12 characters); ends every dashboard session. current_password is needed when one is set, "
         "unless the caller used the admin token", dashboard_auth.PasswordChange, status=204),
]

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def openapi() -> dict[str, Any]:
    types = list(dict.fromkeys(t for s in ROUTES for t in (s.body, s.query) if t is not None))
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(types, schemas))
    paths: dict[str, Any] = {}
    for spec in ROUTES:
        op: dict[str, Any] = {"summary": spec.summary, "security": [{"adminToken": []}], "responses": {
            str(spec.status): {"description": "OK"}, "400": {"description": "Invalid input (OpenAI error envelope)"},
            "401": {"description": "Missing or wrong admin token"}, "404": {"description": "Not found"}}}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"},
                   **({"description": "may contain '/'"} if converter == "path" else {})}
                  for name, converter in _PARAM.findall(spec.path)]
        if spec.query is not None:
            params += _query_parameters(components[spec.query.__name__])
        if params:
            op["parameters"] = params
        if spec.body is not None:
            op["requestBody"] = {"required": not spec.body_optional,
                                 "content": {"application/json": {"schema": by_type[spec.body]}}}
        paths.setdefault("/api/admin" + _PARAM.sub(r"{\1}", spec.path), {})[spec.method.lower()] = op
    for spec in ROUTES:  # query types are inlined as parameters, not schemas of their own
        if spec.query is not None:
            components.pop(spec.query.__name__, None)
    return {"openapi": "3.1.0", "info": {"title": "arenahub admin API", "version": "1"}, "paths": paths,
            "components": {"schemas": components, "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "the admin token"}}}}


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, prop in schema["properties"].items():
        # An optional field is "X or null" in JSON Schema; in a query it is simply left out.
        options = [s for s in prop.get("anyOf", [prop]) if s.get("type") != "null"]
        value = dict(options[0]) if len(options) == 1 else {"anyOf": options}
        description = value.pop("description", None)
        value.pop("default", None)
        out.append({"name": name, "in": "query", "required": name in schema.get("required", []), "schema": value,
                    **({"description": description} if description else {})})
    return out


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        await _platform(request).dashboard.check_admin(request)  # the admin token, or a dashboard session
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

    async def endpoint(request: Request) -> Response:  # Starlette lets HEAD through wherever GET is
        return await guarded["GET" if request.method == "HEAD" else request.method](request)
    return endpoint
