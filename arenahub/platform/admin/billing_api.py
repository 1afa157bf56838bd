"""``/api/admin/prices`` and ``/api/admin/usage``: model prices (applied from the next request) and
what keys spent and clients earned, from the stored book. Routes are declared in ``api.ROUTES``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arenahub.platform.admin.fields import Name, Usd, When, period_problem, utc
from arenahub.platform.admin.inputs import json_body as _body
from arenahub.platform.admin.inputs import query as _query
from arenahub.platform.admin.state import platform_of as _platform
from arenahub.platform.billing import Price, format_usd, parse_usd
from arenahub.platform.storage import billing_store, ledger_days
from arenahub.protocol.errors import InvalidRequest


class PriceSet(msgspec.Struct, forbid_unknown_fields=True):
    """A model's price: USD per 1M prompt tokens, per 1M completion tokens, and per image (default 0)."""

    prompt: Usd
    completion: Usd
    image: Usd | None = None


class UsageQuery(msgspec.Struct, forbid_unknown_fields=True):
    key: Annotated[Name, msgspec.Meta(description="only this key's requests (key id)")] | None = None
    client: Annotated[Name, msgspec.Meta(description="only requests this client served (client id)")] | None = None
    since: Annotated[When, msgspec.Meta(description="from this time, inclusive; RFC 3339 with a zone")] | None = None
    until: Annotated[When, msgspec.Meta(description="up to this time, exclusive; RFC 3339 with a zone; not before "
                                        "since")] | None = None


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
    model = request.path_params["model"]  # checked by the router (api.PATH_PARAMS)
    body: PriceSet = await _body(request, PriceSet)
    price = Price(parse_usd(body.prompt, field="prompt"), parse_usd(body.completion, field="completion"),
                  parse_usd(body.image or "0", field="image"))
    await billing_store.set_price(platform.engine, model, price)
    platform.accounting.prices.set(model, price)
    return JSONResponse({"model": model, **_price_json(price), "default": False})


def _usage_period(query: UsageQuery) -> tuple[dt.datetime | None, dt.datetime | None]:
    wrong = period_problem(query.since, query.until)  # the CLI's check of the period too
    if wrong is not None:
        raise InvalidRequest(f"{wrong}.", param="since")
    # In UTC: SQLite keeps times as UTC text without a zone, so another offset would compare wrongly.
    since, until = (utc(t) if t else None for t in (query.since, query.until))
    return since, until


async def usage(request: Request) -> Response:
    query: UsageQuery = _query(request, UsageQuery)
    since, until = _usage_period(query)
    return JSONResponse(await billing_store.usage_report(_platform(request).engine, key_id=query.key,
                                                         client_id=query.client, since=since, until=until))


class UsageSummaryQuery(UsageQuery):
    lines: Annotated[int, msgspec.Meta(ge=0, le=5000, description="at most this many lines of the statement by "
                                       "key, newest day first (default 1000)")] = 1000


async def usage_summary(request: Request) -> Response:
    """What the usage page shows: totals per key, client, model and day, and the newest statement lines.
    Its size does not grow with the period, unlike GET /usage's lines."""
    query: UsageSummaryQuery = _query(request, UsageSummaryQuery)
    since, until = _usage_period(query)
    return JSONResponse(await ledger_days.summary(_platform(request).engine, key_id=query.key, client_id=query.client,
                                                  since=since, until=until, lines=query.lines))
