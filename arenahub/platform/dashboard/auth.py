"""Who may use the dashboard and the admin API: sign-in, the session cookie, CSRF and Origin checks.

The admin API takes ``Authorization: Bearer <admin token>`` as before, or the dashboard's session
cookie. With the cookie, a request whose ``Origin`` is another site is refused, and unsafe methods
must carry the session's CSRF token in ``X-CSRF-Token`` (or, for a form-urlencoded body, in the field
``csrf_token``): SameSite=Strict already keeps other sites' requests from carrying the cookie, and
these checks hold even where it does not (older browsers, same-site subdomains).
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from arenahub.asgi import read_body
from arenahub.platform.admin.inputs import json_body
from arenahub.platform.admin.token import AdminAuth, AdminUnauthorized
from arenahub.platform.dashboard import password as passwords
from arenahub.platform.dashboard.sessions import ABSOLUTE, Session, SessionStore
from arenahub.platform.throttle import SIGN_INS, CredentialThrottle, LocalThrottleStore, ThrottleStore
from arenahub.protocol.errors import ApiError, InvalidRequest

COOKIE = "arenahub_session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_LIMIT = 64 * 1024  # a form POST to the admin API carries little more than its csrf_token
FORM_TYPE = "application/x-www-form-urlencoded"


class CsrfFailed(ApiError):
    status = 403
    type = "invalid_request_error"
    code = "csrf_failed"


class TooManySignIns(ApiError):
    status = 429
    type = "rate_limit_exceeded"
    code = "too_many_sign_in_attempts"


class WrongPassword(ApiError):
    status = 403  # not 401: the caller is signed in, only the password it typed is wrong
    type = "invalid_request_error"
    code = "wrong_password"


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    """Set the dashboard password; ends every dashboard session."""

    new_password: Annotated[str, msgspec.Meta(description=f"at least {passwords.MIN_LENGTH} characters")]
    current_password: Annotated[str, msgspec.Meta(
        description="required when a password is set, unless the caller used the admin token")] | None = None


def client_address(request: Request) -> str:
    # Behind a trusted proxy, uvicorn's proxy headers put the original address here.
    return request.client.host if request.client else "unknown"


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if port == {"http": 80, "https": 443}.get(scheme):
        port = None
    return scheme, (parts.hostname or "").lower(), port


def same_origin(request: Request) -> bool:
    """No ``Origin`` header (same-origin GETs, non-browser callers) or the request's own origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = _origin(f"{request.url.scheme}://{request.url.netloc}")
    return own is not None and _origin(origin) == own


def tokens_equal(sent: str | None, expected: str) -> bool:
    return bool(sent) and hmac.compare_digest((sent or "").encode(), expected.encode())


def form_field(raw: bytes, name: str) -> str | None:
    """The first value of ``name`` in a form-urlencoded body; None when absent or the body is malformed."""
    try:
        fields = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return None
    return next((value for key, value in fields if key == name), None)


class DashboardAuth:
    def __init__(self, engine: AsyncEngine, admin: AdminAuth, *, throttle: ThrottleStore | None = None,
                 credentials: CredentialThrottle | None = None) -> None:
        self.engine = engine
        self.admin = admin
        self.credentials = credentials or CredentialThrottle()
        self.sessions = SessionStore(engine)
        self.throttle = throttle if throttle is not None else LocalThrottleStore(SIGN_INS)  # failed sign-ins

    async def start(self) -> None:
        await self.sessions.remove_expired()

    # -- signing in and out ----------------------------------------------------------------------
    async def _check_throttle(self, address: str) -> None:
        wait = await self.throttle.retry_after(address)
        if wait:
            raise TooManySignIns(f"Too many failed sign-ins; try again in {wait} seconds.",
                                 headers={"Retry-After": str(wait)})

    async def sign_in(self, secret: str, address: str) -> tuple[str, Session] | None:
        """A new session for the admin token or the dashboard password; None when the secret is wrong.
        Raises ``TooManySignIns`` when this address (or everybody) failed too often lately."""
        await self._check_throttle(address)
        if await self.admin.matches(secret):
            method = "token"
        elif await passwords.password_matches(self.engine, secret):
            method = "password"
        else:
            await self.throttle.failed(address)
            return None
        await self.sessions.remove_expired()
        return await self.sessions.create(method)

    async def session_of(self, request: Request) -> Session | None:
        return await self.sessions.get(request.cookies.get(COOKIE))

    async def sign_out(self, session: Session) -> None:
        await self.sessions.end(session)

    @staticmethod
    def set_cookie(response: Response, request: Request, session_id: str) -> None:
        response.set_cookie(COOKIE, session_id, max_age=int(ABSOLUTE.total_seconds()), path="/",
                            secure=is_https(request), httponly=True, samesite="strict")

    @staticmethod
    def clear_cookie(response: Response, request: Request) -> None:
        response.delete_cookie(COOKIE, path="/", secure=is_https(request), httponly=True, samesite="strict")

    # -- the admin API gate ------------------------------------------------------------------------
    async def check_admin(self, request: Request) -> None:
        """Let the request through or raise 401 ``invalid_admin_token`` / 403 ``csrf_failed``.
        Sets ``request.state.admin_via`` to "token" or "session"."""
        authorization = request.headers.get("authorization")
        session_id = request.cookies.get(COOKIE)
        if authorization or not session_id:
            await self.credentials.guard(client_address(request), "admin_token",
                                         lambda: self.admin.check(authorization))
            request.state.admin_via = "token"
            return
        session = await self.sessions.get(session_id)
        if session is None:
            raise AdminUnauthorized("The dashboard session has ended (signed out or expired); sign in again.")
        if not same_origin(request):
            raise CsrfFailed("The request came from another site (its Origin is not this platform's).")
        if request.method in UNSAFE_METHODS:
            sent = request.headers.get("x-csrf-token")
            if sent is None and request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM_TYPE:
                raw = await read_body(request, FORM_LIMIT)
                request._body = raw  # keep it for the handler: the stream can be read only once
                sent = form_field(raw, "csrf_token")
            if not tokens_equal(sent, session.csrf_token):
                raise CsrfFailed("Missing or wrong CSRF token: send the session's token in X-CSRF-Token "
                                 "(or the form field csrf_token).")
        request.state.admin_via = "session"
        request.state.dashboard_session = session

    # -- the password ------------------------------------------------------------------------------
    async def change_password(self, change: PasswordChange, *, via: str, address: str) -> None:
        if via != "token" and await passwords.stored_password(self.engine) is not None:
            if not change.current_password:
                raise InvalidRequest("A password is set: send it as current_password (or use the admin token).",
                                     param="current_password", code="current_password_required")
            await self._check_throttle(address)
            if not await passwords.password_matches(self.engine, change.current_password):
                await self.throttle.failed(address)
                raise WrongPassword("current_password is wrong.", param="current_password")
        try:
            await passwords.set_password(self.engine, change.new_password)
        except passwords.WeakPassword as exc:
            raise InvalidRequest(str(exc), param="new_password", code="weak_password") from None
        self.sessions.forget_cached()


async def change_password_endpoint(request: Request) -> Response:
    """``PUT /api/admin/dashboard-password`` (behind the admin gate)."""
    change: PasswordChange = await json_body(request, PasswordChange)
    dashboard: DashboardAuth = request.app.state.platform.dashboard
    await dashboard.change_password(change, via=getattr(request.state, "admin_via", ""),
                                    address=client_address(request))
    return Response(status_code=204)
