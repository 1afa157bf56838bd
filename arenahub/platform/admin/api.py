"""The admin API, JSON under ``/api/admin``, authenticated with the admin token.

Every route is declared once in ``ROUTES`` (method, path, summary, body and query types), and every
path parameter once in ``PATH_PARAMS``: the router reads and checks a request with those types before
its handler runs, and the OpenAPI document (``/api/admin/openapi.json``) is built from the same types,
so that what it describes is what is accepted. The handlers live by subject: ``keys_api``,
``clients_api`` and ``client_views``, ``instance_views``, ``billing_api`` (prices, usage),
``analytics_api``, ``settings_api``, ``models_api`` (the model catalogue), and the dashboard password
in ``dashboard.auth``. The field types are in ``fields``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arenahub.platform.admin import (
    analytics_api,
    billing_api,
    client_views,
    clients_api,
    fields,
    inputs,
    instance_views,
    keys_api,
    models_api,
    settings_api,
    state,
)
from arenahub.platform.dashboard import auth as dashboard_auth

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Spec:
    method: str
    path: str  # Starlette syntax: "{model:path}" takes a value with "/" in it
    handler: Endpoint
    summary: str
    body: type[Any] | None = None
    query: type[Any] | None = None  # a Struct: one query parameter per field
    status: int = 200
    body_optional: bool = False
    errors: tuple[int, ...] = ()  # what else it may answer, besides 400, 401, 404, 429 (and 413 with a body)


# A path parameter means the same on every route.
PATH_PARAMS: dict[str, Any] = {
    "key_id": fields.Id, "client_id": fields.Id, "request_id": fields.Id,
    "model": Annotated[fields.Name, msgspec.Meta(description="a model name; it may contain '/'")]}
ERRORS = {400: "Invalid input: error.param names the field (OpenAI error envelope)",
          401: "Missing or wrong admin token", 403: "Refused (error.code says why)", 404: "Not found",
          409: "The resource's state does not allow it now (error.code says why)",
          413: f"The body is larger than {inputs.MAX_BODY_BYTES // 1024} KiB",
          429: "Too many wrong credentials from this address: wait for Retry-After"}
SUCCESS = {200: "OK", 201: "Created", 204: "Done, no content"}


ROUTES = [
    Spec("GET", "/keys", keys_api.list_keys, "List consumer keys (never their secrets), each with its credit"),
    Spec("POST", "/keys", keys_api.create_key, "Create a consumer key; its secret is in this answer only. With "
         "credit, the key is limited and starts with that balance", keys_api.KeyCreate, status=201),
    Spec("GET", "/keys/{key_id}", keys_api.show_key, "Show a key and its credit"),
    Spec("PATCH", "/keys/{key_id}", keys_api.update_key, "Change a key's limits, models, expiry, metadata or "
         "unlimited setting, or disable it", keys_api.KeyUpdate),
    Spec("POST", "/keys/{key_id}/rotate", keys_api.rotate_key, "New secret for the key; the old one stops working"),
    Spec("DELETE", "/keys/{key_id}", keys_api.delete_key, "Delete a key (its records stay)"),
    Spec("POST", "/keys/{key_id}/top-ups", keys_api.top_up_key, "Add credit to a key; it can spend it at once",
         keys_api.TopUp, status=201),
    Spec("POST", "/keys/{key_id}/adjustments", keys_api.adjust_key, "Correct a key's balance by a signed amount",
         keys_api.Adjustment, status=201),
    Spec("GET", "/status", client_views.platform_status, "The platform at a glance: its version and the current "
         "client version, uptime, clients connected and healthy, requests in flight, queue depth, routing strategy"),
    Spec("GET", "/instances", instance_views.instances, "The platform's instances (one without a cluster): each "
         "one's id, address, advertised URL, version, start, clients connected, requests in flight and state "
         "(serving, draining, unreachable), and the cluster's shared state"),
    Spec("GET", "/clients", clients_api.list_clients, "List clients with their live session, health, version "
         "(outdated or not), last refusal and the last hour's requests"),
    Spec("POST", "/clients", clients_api.create_client, "Register a client; its api_key is in this answer only",
         clients_api.ClientCreate, status=201),
    Spec("GET", "/clients/{client_id}", clients_api.show_client, "Show a client (never its key hash) with its live "
         "session (null when not connected) and its health: circuit breaker, maintenance, drops, speed"),
    Spec("DELETE", "/clients/{client_id}", client_views.delete_client, "Delete a client: a connected one is told "
         "why (refused, code client_deleted) and disconnected; its request records and ledger stay", status=204),
    Spec("PATCH", "/clients/{client_id}", clients_api.update_client, "Change a client's registration, limits, "
         "priority or weight, or disable it (which also closes its connection); applied at once",
         clients_api.ClientUpdate),
    Spec("POST", "/clients/{client_id}/drain", clients_api.drain_client, "Drain a client: it finishes the requests "
         "in flight and gets no new ones, until undrained (kept across restarts)", clients_api.DrainRequest,
         body_optional=True),
    Spec("POST", "/clients/{client_id}/undrain", clients_api.undrain_client, "Let a drained client take work again "
         "(a drain the client asked for itself stays)"),
    Spec("POST", "/clients/{client_id}/package", clients_api.download_package, "Download the client package "
         "lmarena-client-<CLIENT_ID>.zip; it carries a new api_key, stored only once the package is built: the old "
         "key stops working then. 409 (package_not_buildable, nothing changed) when the registration cannot make "
         "one, or (client_key_changed) when another download changed the key meanwhile",
         query=clients_api.PackageQuery, errors=(409,)),
    Spec("POST", "/clients/{client_id}/clear-maintenance", clients_api.clear_maintenance, "Take a client out of "
         "maintenance (after too many dropped requests) and back into rotation"),
    Spec("GET", "/clients/{client_id}/earnings", clients_api.client_earnings, "What a client has earned: requests "
         "served, tokens, and the value charged to consumers for them (live)"),
    Spec("GET", "/prices", billing_api.list_prices, "Every model's price (default or set by the admin) and the "
         "fallback price for models with none"),
    Spec("PUT", "/prices/{model:path}", billing_api.set_price, "Set a model's price (the name may contain '/'); "
         "applies to the next request", billing_api.PriceSet),
    Spec("GET", "/usage", billing_api.usage, "What keys spent and clients earned, by UTC day and model. From the "
         "stored book, which trails the live ledger by up to the record writer's flush interval (0.5 s by default)",
         query=billing_api.UsageQuery),
    Spec("GET", "/usage/summary", billing_api.usage_summary, "What the usage page shows of a period: the total, "
         "sums per key, per client, per model and per UTC day, and the newest lines of the statement by key (at "
         "most lines; lines_total counts them all)", query=billing_api.UsageSummaryQuery),
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
    Spec("GET", "/catalogue", models_api.show_catalogue, "The model catalogue: whether it is on (the live setting "
         "model_catalogue), each listed model with the clients approved and refused for it and the connected ones "
         "serving it now, the clients' offers that wait for a decision (with the catalogue off: those that would "
         "wait once it is on), and the refused offers of models not listed", query=models_api.CatalogueQuery),
    Spec("PUT", "/catalogue/models", models_api.list_model, "List a model (or change whether any client that offers "
         "it may serve it); applied at once", models_api.ModelListing),
    Spec("DELETE", "/catalogue/models", models_api.unlist_model, "Unlist a model: with the catalogue on, no client "
         "serves it and consumers get 404 model_not_found. Its approvals go with it; its refusals stay",
         query=models_api.ModelQuery, status=204),
    Spec("PUT", "/catalogue/decisions", models_api.decide, "Approve a client for a model (listing the model if it "
         "is not) or refuse it (its offer never waits again); applied at once", models_api.Decision),
    Spec("DELETE", "/catalogue/decisions", models_api.forget, "Forget a decision: the client's offer of the model "
         "waits for approval again", query=models_api.DecisionQuery, status=204),
    Spec("PUT", "/dashboard-password", dashboard_auth.change_password_endpoint, "Set the dashboard password (at "
         "least 12 characters); ends every dashboard session. current_password is needed when one is set, "
         "unless the caller used the admin token", dashboard_auth.PasswordChange, status=204, errors=(403,)),
]

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def openapi() -> dict[str, Any]:
    types = list(dict.fromkeys(t for s in ROUTES for t in (s.body, s.query) if t is not None))
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(types, schemas, strict=True))
    paths: dict[str, Any] = {}
    for spec in ROUTES:
        codes = [spec.status, 400, 401, 404, 429, *([413] if spec.body is not None else []), *spec.errors]
        op: dict[str, Any] = {"summary": spec.summary, "security": [{"adminToken": []}], "responses": {
            str(code): {"description": SUCCESS.get(code) or ERRORS[code]} for code in sorted(codes)}}
        params = [_parameter(name, "path", msgspec.json.schema(PATH_PARAMS[name]), required=True)
                  for name, _ in _PARAM.findall(spec.path)]
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


def _parameter(name: str, where: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    value = dict(schema)
    description = value.pop("description", None)
    value.pop("default", None)
    return {"name": name, "in": where, "required": required, "schema": value,
            **({"description": description} if description else {})}


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, prop in schema["properties"].items():
        # An optional field is "X or null" in JSON Schema; in a query it is simply left out (null is refused).
        options = [s for s in prop.get("anyOf", [prop]) if s.get("type") != "null"]
        value = dict(options[0]) if len(options) == 1 else {"anyOf": options}
        out.append(_parameter(name, "query", value, required=name in schema.get("required", [])))
    return out


def _guarded(spec: Spec) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        await state.platform_of(request).dashboard.check_admin(request)  # the admin token, or a dashboard session
        inputs.check_path(request, PATH_PARAMS)
        await inputs.read_inputs(request, spec.body, spec.query, spec.body_optional)
        return await spec.handler(request)
    return endpoint


async def openapi_document(request: Request) -> Response:
    return JSONResponse(openapi())


def routes() -> list[Route]:
    out = [Route("/api/admin/openapi.json", openapi_document, methods=["GET"])]
    grouped: dict[str, dict[str, Spec]] = {}
    for spec in ROUTES:
        grouped.setdefault(spec.path, {})[spec.method] = spec
    for path, specs in grouped.items():
        out.append(Route("/api/admin" + path, _dispatch(specs), methods=list(specs)))
    return out


def _dispatch(specs: dict[str, Spec]) -> Endpoint:
    guarded = {m: _guarded(s) for m, s in specs.items()}

    async def endpoint(request: Request) -> Response:  # Starlette lets HEAD through wherever GET is
        return await guarded["GET" if request.method == "HEAD" else request.method](request)
    return endpoint
