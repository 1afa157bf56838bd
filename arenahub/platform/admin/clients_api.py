"""``/api/admin/clients``: registering clients, changing their settings (applied to a live session
at once), drain, maintenance, the client package download and earnings. The read-only views and
delete are in ``client_views.py``; routes are declared in ``api.ROUTES``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arenahub.platform import client_package
from arenahub.platform.admin import client_views, package_keys
from arenahub.platform.admin.fields import (
    DEFAULT_MAX_CONCURRENT,
    BridgeUrl,
    ClientRpm,
    Email,
    HttpUrl,
    MaxConcurrent,
    Name,
    Priority,
    Weight,
    with_api_path,
)
from arenahub.platform.admin.inputs import json_body as _body
from arenahub.platform.admin.inputs import query as _query
from arenahub.platform.admin.state import platform_of as _platform
from arenahub.platform.billing import format_usd
from arenahub.platform.storage import accounts
from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError, NotFound

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

log = logging.getLogger("arenahub.platform.admin")


class ClientCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A client's registration; each field has the rules it has in ClientUpdate and in the CLI's flags."""

    name: Name
    email: Email | None = None
    bridge_url: BridgeUrl = client_package.DEFAULT_BRIDGE_URL
    rpm: ClientRpm | None = None
    max_concurrent: MaxConcurrent = DEFAULT_MAX_CONCURRENT


class ClientUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change; send null to clear rpm or email. A connected client gets it at once."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Email | None | msgspec.UnsetType = msgspec.UNSET
    bridge_url: BridgeUrl | msgspec.UnsetType = msgspec.UNSET
    rpm: ClientRpm | None | msgspec.UnsetType = msgspec.UNSET
    max_concurrent: MaxConcurrent | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    weight: Weight | msgspec.UnsetType = msgspec.UNSET
    disabled: Annotated[bool, msgspec.Meta(description="true also closes its connection")] | msgspec.UnsetType = (
        msgspec.UNSET)


class DrainRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=200, description="why; written to the platform log")] | None = None


class PackageQuery(msgspec.Struct, forbid_unknown_fields=True):
    platform_url: Annotated[HttpUrl, msgspec.Meta(description="the platform as the client reaches it, written into "
                                                  "the package's config.jsonc (a URL without a path gets /api); "
                                                  "default: the address of this request, with /api")] | None = None


class PackageConflict(ApiError):
    """The package cannot be delivered now; nothing changed and the client's key is the one it had."""

    status = 409
    type = "invalid_request_error"


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
    """The client package with a NEW api key (keys are stored hashed), which is stored only once the
    package is made: the old key stops working then, and a connected client is disconnected with the
    reason. A package that cannot be made changes nothing."""
    platform = _platform(request)
    client_id = request.path_params["client_id"]
    asked: PackageQuery = _query(request, PackageQuery)
    platform_url = (with_api_path(asked.platform_url) if asked.platform_url else
                    str(request.base_url).rstrip("/") + "/api")

    def make(account: accounts.ClientAccount, api_key: str) -> bytes:  # in a thread
        return client_package.build_client_package(
            platform_url=platform_url, client_id=account.id, api_key=api_key, client_name=account.name,
            bridge_url=account.bridge_url, max_concurrent_requests=account.max_concurrent, wheel=_WHEELS.get())

    try:
        package = await package_keys.build(platform.engine, client_id, make)
    except client_package.ClientPackageError as exc:
        raise PackageConflict(f"No package can be made for this client: {exc}. Its key is unchanged; correct "
                              "its registration (PATCH) and download again.", code="package_not_buildable") from None
    if package is None:
        raise _no_client(client_id)
    if not await package_keys.commit(platform.engine, package):
        if await accounts.get_client(platform.engine, client_id) is None:
            raise _no_client(client_id)
        raise PackageConflict("Another package was made for this client meanwhile, with another key; download "
                              "again.", code="client_key_changed")
    fresh = await accounts.get_client(platform.engine, client_id)
    if fresh is not None:
        platform.client_settings_changed(fresh)  # ends a connection made with the old key, with the reason
    return Response(package.data, media_type="application/zip", headers={
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
    e = await platform.accounting.store.earnings(client_id)
    return JSONResponse({"client_id": client_id, "requests": e.requests, "prompt_tokens": e.prompt_tokens,
                         "completion_tokens": e.completion_tokens,
                         "total_tokens": e.prompt_tokens + e.completion_tokens, "images": e.images,
                         "value_usd": format_usd(e.value), "value_micros": e.value})
