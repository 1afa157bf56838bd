"""The dashboard's pages: the sign-in form, the shell (``static/index.html``), sign-out, static files,
and the security headers every ``/dashboard*`` answer carries.

Sign-in forms are protected by a double-submitted token: a pre-session cookie ``arenahub_login_csrf``
(HttpOnly, SameSite=Strict) must equal the form's ``csrf_token`` field. Failed sign-ins are throttled
(see ``throttle``). Cookies are ``Secure`` when the request came over HTTPS, which behind a reverse proxy
means uvicorn trusts its ``X-Forwarded-Proto`` (from 127.0.0.1, or the addresses in ``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

import logging
import secrets
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arenahub.asgi import read_body
from arenahub.platform.dashboard.auth import (
    COOKIE,
    FORM_TYPE,
    DashboardAuth,
    TooManySignIns,
    client_address,
    is_https,
    same_origin,
    tokens_equal,
)
from arenahub.platform.dashboard.login_page import render_login, render_message
from arenahub.protocol.errors import RequestTooLarge

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

log = logging.getLogger("arenahub.platform.dashboard")

STATIC_DIR = Path(__file__).parent / "static"
LOGIN_CSRF_COOKIE = "arenahub_login_csrf"
FORM_LIMIT = 16 * 1024  # a sign-in or sign-out form is a few hundred bytes
MAX_FIELDS = 20
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
NO_STORE = {"Cache-Control": "no-store"}


class BadForm(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _auth(request: Request) -> DashboardAuth:
    platform: Platform = request.app.state.platform
    return platform.dashboard


def _is_dashboard(path: str) -> bool:
    return path in ("/dashboard", "/dashboard.html") or path.startswith("/dashboard/")


class DashboardHeaders:
    """Adds ``SECURITY_HEADERS`` to every answer under ``/dashboard`` (pages, redirects, static files, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_dashboard(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)
        await self.app(scope, receive, send_with_headers)


async def _form(request: Request) -> dict[str, str]:
    """The fields of a small form-urlencoded body (the first value of each), or ``BadForm``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise BadForm(415, f"The form must be sent as {FORM_TYPE}.")
    try:
        raw = await read_body(request, FORM_LIMIT)
    except RequestTooLarge:
        raise BadForm(413, "The form is too large.") from None
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadForm(400, "The form could not be read.") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _login_page(request: Request, message: str = "", *, status: int = 200, notice: str = "",
                headers: dict[str, str] | None = None) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not (40 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum()):
        token = secrets.token_urlsafe(32)
    response = HTMLResponse(render_login(token, message, notice=notice), status_code=status,
                            headers={**NO_STORE, **(headers or {})})
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path="/dashboard", secure=is_https(request), httponly=True,
                        samesite="strict")
    return response


async def old_link(request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=308)


async def shell(request: Request) -> Response:
    auth = _auth(request)
    session = await auth.session_of(request)
    if session is None:
        response = RedirectResponse("/dashboard/login", status_code=303, headers=NO_STORE)
        if COOKIE in request.cookies:
            auth.clear_cookie(response, request)  # ended or expired: the browser may forget it
        return response
    try:
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    except FileNotFoundError:
        return HTMLResponse(render_message("Dashboard missing", "This installation has no dashboard files "
                                           "(static/index.html)."), status_code=503, headers=NO_STORE)
    return HTMLResponse(page.replace("__CSRF_TOKEN__", escape(session.csrf_token)), headers=NO_STORE)


async def login_form(request: Request) -> Response:
    if await _auth(request).session_of(request) is not None:
        return RedirectResponse("/dashboard", status_code=303, headers=NO_STORE)
    notice = "You are signed out." if "signed_out" in request.query_params else ""
    return _login_page(request, notice=notice)


async def login(request: Request) -> Response:
    try:
        fields = await _form(request)
    except BadForm as bad:
        return _login_page(request, bad.message, status=bad.status)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not same_origin(request) or not tokens_equal(fields.get("csrf_token"), cookie):
        return _login_page(request, "The sign-in form had expired. Please try again.", status=403)
    secret = fields.get("secret", "")
    if not secret:
        return _login_page(request, "Enter the admin token or the dashboard password.", status=400)
    address = client_address(request)
    auth = _auth(request)
    try:
        signed_in = await auth.sign_in(secret, address)
    except TooManySignIns as exc:
        log.warning("dashboard: sign-in refused for %s: too many failures", address)
        return _login_page(request, exc.message, status=429, headers=exc.headers)
    if signed_in is None:
        log.warning("dashboard: failed sign-in from %s", address)
        return _login_page(request, "Wrong admin token or password.", status=401)
    session_id, session = signed_in
    log.info("dashboard: signed in with the %s from %s", "admin token" if session.method == "token" else "password",
             address)
    response = RedirectResponse("/dashboard", status_code=303, headers=NO_STORE)
    auth.set_cookie(response, request, session_id)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/dashboard", secure=is_https(request), httponly=True,
                           samesite="strict")
    return response


async def logout(request: Request) -> Response:
    auth = _auth(request)
    session = await auth.session_of(request)
    if session is None:
        response: Response = RedirectResponse("/dashboard/login", status_code=303, headers=NO_STORE)
        auth.clear_cookie(response, request)
        return response
    try:
        fields = await _form(request)
    except BadForm as bad:
        return HTMLResponse(render_message("Not signed out", bad.message), status_code=bad.status, headers=NO_STORE)
    if not same_origin(request) or not tokens_equal(fields.get("csrf_token"), session.csrf_token):
        return HTMLResponse(render_message("Not signed out", "The sign-out form had expired: reload the dashboard "
                                           "and sign out again."), status_code=403, headers=NO_STORE)
    await auth.sign_out(session)
    log.info("dashboard: signed out")
    response = RedirectResponse("/dashboard/login?signed_out=1", status_code=303, headers=NO_STORE)
    auth.clear_cookie(response, request)
    return response


def routes() -> list[BaseRoute]:
    return [
        Route("/dashboard.html", old_link, methods=["GET"]),
        Route("/dashboard", shell, methods=["GET"]),
        Route("/dashboard/", shell, methods=["GET"]),
        Route("/dashboard/login", login_form, methods=["GET"]),
        Route("/dashboard/login", login, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Mount("/dashboard/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False), name="dashboard-static"),
    ]
