"""``/api/admin/settings``: the settings an operator changes while the platform runs (live_settings.py).

GET and PATCH answer ``{values, defaults, overridden, choices, descriptions}``: ``values`` in use,
``defaults`` from flags and environment (what null goes back to), the names ``overridden`` from the
dashboard, the ``choices`` of routing_strategy ("" first: what most clients prefer), and a
description of each.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arenahub.platform.admin.inputs import json_body
from arenahub.platform.admin.state import platform_of
from arenahub.platform.live_settings import SettingsPatch
from arenahub.protocol.errors import InvalidRequest


async def show_settings(request: Request) -> Response:
    return JSONResponse(platform_of(request).live.view())


async def change_settings(request: Request) -> Response:
    platform = platform_of(request)
    patch: SettingsPatch = await json_body(request, SettingsPatch)
    changes = patch.changes()
    if changes:
        try:
            await platform.live.change(platform.engine, changes)
        except ValueError as exc:  # PlatformSettings' own checks, across fields
            named = [name for name in changes if name in str(exc) or name.replace("_", " ") in str(exc)]
            raise InvalidRequest(f"Invalid settings: {exc}", param=named[0] if named else None) from None
        platform.apply_settings(platform.live.current)
    return JSONResponse(platform.live.view())
