"""The platform an admin request is served by: the one application state, built in the lifespan (``app.py``).

Kept out of ``inputs``: runtime.py imports that module (through ``dashboard.auth``), and a module the
platform imports must not import the platform back (tests/test_layout.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform


def platform_of(request: Request) -> Platform:
    return request.app.state.platform
