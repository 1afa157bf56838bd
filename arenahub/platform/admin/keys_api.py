"""``/api/admin/keys``: consumer keys (their limits, models, expiry and secrets) and their credit
(top-ups and adjustments, booked in the live ledger at once). Routes are declared in ``api.ROUTES``."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arenahub.platform.admin.fields import (
    Email,
    Models,
    Name,
    Note,
    PositiveInt,
    PositiveUsd,
    SignedUsd,
    Usd,
    When,
    utc,
)
from arenahub.platform.admin.inputs import json_body as _body
from arenahub.platform.admin.state import platform_of as _platform
from arenahub.platform.billing import Entry, format_usd, parse_usd
from arenahub.platform.storage import accounts
from arenahub.protocol.errors import NotFound

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

Metadata = Annotated[dict[str, Any], msgspec.Meta(description="any JSON object, nested at most 32 deep; kept with "
                                                  "the key")]
Expiry = Annotated[When, msgspec.Meta(description="when the key stops working: an RFC 3339 date-time with a zone")]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_concurrent: PositiveInt | None = None
    models: Models | None = None
    expires_at: Expiry | None = None
    metadata: Metadata | None = None
    credit: Annotated[Usd, msgspec.Meta(description='starting credit: the key spends from its balance ("0": none '
                                        'yet); USD as a decimal string, e.g. "12.50"')] | None = None
    unlimited: Annotated[bool, msgspec.Meta(description="no credit limit (default: true without credit)")] | None = None


class KeyUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change; send null to clear a limit."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Email | None | msgspec.UnsetType = msgspec.UNSET
    rpm: PositiveInt | None | msgspec.UnsetType = msgspec.UNSET
    tpm: PositiveInt | None | msgspec.UnsetType = msgspec.UNSET
    max_concurrent: PositiveInt | None | msgspec.UnsetType = msgspec.UNSET
    models: Models | None | msgspec.UnsetType = msgspec.UNSET
    expires_at: Expiry | None | msgspec.UnsetType = msgspec.UNSET
    metadata: Metadata | None | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET
    unlimited: bool | msgspec.UnsetType = msgspec.UNSET


class TopUp(msgspec.Struct, forbid_unknown_fields=True):
    """Credit added to a key: more than 0 USD."""

    amount: PositiveUsd
    note: Note | None = None


class Adjustment(msgspec.Struct, forbid_unknown_fields=True):
    """A correction to a key's balance: a signed amount ("-1.25" takes credit away); not 0."""

    amount: SignedUsd
    note: Note | None = None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return utc(value) if value is not None else None


async def _key_or_404(platform: Platform, key_id: str) -> accounts.ConsumerKey:
    key = await accounts.get_key(platform.engine, key_id)
    if key is None:
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return key


async def _key_json(platform: Platform, key: accounts.ConsumerKey) -> dict[str, Any]:
    """The key as the admin sees it, with its live credit."""
    return {**key.public(), "credit": await _credit(platform, key)}


async def _credit(platform: Platform, key: accounts.ConsumerKey) -> dict[str, Any]:
    return (await platform.accounting.store.account(key.id, unlimited=key.unlimited)).public()


async def list_keys(request: Request) -> Response:
    platform = _platform(request)
    keys = await accounts.list_keys(platform.engine)
    credit = await platform.accounting.store.accounts([(k.id, k.unlimited) for k in keys])
    return JSONResponse({"data": [{**k.public(), "credit": c.public()} for k, c in zip(keys, credit, strict=True)]})


async def create_key(request: Request) -> Response:
    platform = _platform(request)
    body: KeyCreate = await _body(request, KeyCreate)
    credit = parse_usd(body.credit, field="credit") if body.credit is not None else None
    unlimited = body.unlimited if body.unlimited is not None else credit is None
    expires_at = _utc(body.expires_at)
    key_id, secret = await accounts.create_key(platform.engine, name=body.name, rpm=body.rpm)
    await accounts.update_key(platform.engine, key_id, email=body.email, tpm=body.tpm,
                              max_concurrent=body.max_concurrent, allowed_models=body.models,
                              expires_at=expires_at, meta=body.metadata, unlimited=unlimited)
    if credit:
        await platform.accounting.top_up(key_id, credit, note="starting credit")
    key = await _key_or_404(platform, key_id)
    return JSONResponse({"key": secret, **await _key_json(platform, key)}, status_code=201)


async def show_key(request: Request) -> Response:
    platform = _platform(request)
    return JSONResponse(await _key_json(platform, await _key_or_404(platform, request.path_params["key_id"])))


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
        changes["expires_at"] = _utc(changes["expires_at"])
    if changes and not await accounts.update_key(platform.engine, key_id, **changes):
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return JSONResponse(await _key_json(platform, await _key_or_404(platform, key_id)))


async def rotate_key(request: Request) -> Response:
    platform = _platform(request)
    key_id = request.path_params["key_id"]
    secret = await accounts.rotate_key(platform.engine, key_id)
    if secret is None:
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return JSONResponse({"key": secret, **await _key_json(platform, await _key_or_404(platform, key_id))})


async def delete_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    if not await accounts.delete_key(_platform(request).engine, key_id):
        raise NotFound(f"No key with id {key_id!r}.", code="key_not_found")
    return JSONResponse({"deleted": True, "id": key_id})


async def _money(request: Request, kind: type[TopUp | Adjustment]) -> Response:
    """A top-up or an adjustment: written to the book, then spendable at once."""
    platform = _platform(request)
    key = await _key_or_404(platform, request.path_params["key_id"])
    body = await _body(request, kind)
    adjustment = kind is Adjustment
    amount = parse_usd(body.amount, field="amount", signed=adjustment)  # not 0: its type's pattern
    book = platform.accounting.adjust if adjustment else platform.accounting.top_up
    entry: Entry = await book(key.id, amount, note=body.note)
    return JSONResponse({"entry_id": entry.entry_id, "key_id": key.id, "kind": entry.kind.value,
                         "amount_usd": format_usd(entry.amount), "amount_micros": entry.amount, "note": entry.note,
                         "created_at": entry.created_at.isoformat(),
                         "credit": await _credit(platform, key)}, status_code=201)


async def top_up_key(request: Request) -> Response:
    return await _money(request, TopUp)


async def adjust_key(request: Request) -> Response:
    return await _money(request, Adjustment)
