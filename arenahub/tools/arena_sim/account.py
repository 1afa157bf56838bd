"""The account endpoints the page uses: e-mail sign-in (the Sign in button) and ``/api/me``."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arenahub.tools.arena_sim.auth import set_cookies, valid_session
from arenahub.tools.arena_sim.state import sim_of


async def sign_in(request: Request) -> Response:
    """Any JSON body signs in as the account's user (not a guest), with a fresh session."""
    try:
        msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        return JSONResponse({"error": "Invalid JSON body"}, status_code=400)
    sim = sim_of(request)
    response = JSONResponse({"ok": True})
    set_cookies(response, request, sim.sign_in(anonymous=False))
    return response


async def me(request: Request) -> Response:
    session = valid_session(request, sim_of(request).session)
    if session is None:
        return JSONResponse({"error": "User not found"}, status_code=401)
    return JSONResponse({"id": session.user_id, "isAnonymous": session.is_anonymous})
