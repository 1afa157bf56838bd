"""The account's session and its cookie, split in two as the real site's Supabase client does.

The cookie value is ``base64-<base64url of the session JSON>``; the site stores it in two cookies,
``arena-auth-prod-v1.0`` and ``arena-auth-prod-v1.1`` (the halves), because real sessions outgrow
one cookie. The server joins them (a single ``arena-auth-prod-v1`` is accepted too). A session is
valid while its access token is the account's current one, so revoking is forgetting that token.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "arena-auth-prod-v1"
COOKIE_PARTS = (COOKIE + ".0", COOKIE + ".1")
_PREFIX = "base64-"


@dataclass(frozen=True)
class AuthSession:
    user_id: str
    access_token: str
    refresh_token: str
    expires_at: int
    is_anonymous: bool

    @classmethod
    def new(cls, user_id: str, anonymous: bool, now: float) -> AuthSession:
        return cls(user_id, secrets.token_urlsafe(32), secrets.token_urlsafe(24), int(now) + 3600, anonymous)

    @property
    def kind(self) -> str:
        return "guest" if self.is_anonymous else "user"

    def cookie_value(self) -> str:
        session = {"access_token": self.access_token, "refresh_token": self.refresh_token,
                   "expires_at": self.expires_at, "user": {"id": self.user_id, "is_anonymous": self.is_anonymous}}
        return _PREFIX + base64.urlsafe_b64encode(msgspec.json.encode(session)).decode().rstrip("=")

    def cookies(self) -> dict[str, str]:
        """The two cookies the site sets: the halves of the value."""
        value = self.cookie_value()
        half = len(value) // 2
        return {COOKIE_PARTS[0]: value[:half], COOKIE_PARTS[1]: value[half:]}


def presented_token(cookies: Mapping[str, str]) -> str | None:
    """The access token in the request's auth cookie(s), or None when they are missing or malformed."""
    if COOKIE_PARTS[0] in cookies and COOKIE_PARTS[1] in cookies:
        value = cookies[COOKIE_PARTS[0]] + cookies[COOKIE_PARTS[1]]
    elif COOKIE in cookies:
        value = cookies[COOKIE]
    else:
        return None
    if not value.startswith(_PREFIX):
        return None
    data = value[len(_PREFIX):]
    try:
        session: Any = msgspec.json.decode(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return None
    token = session.get("access_token") if isinstance(session, dict) else None
    return token if isinstance(token, str) else None


def valid_session(request: Request, current: AuthSession | None) -> AuthSession | None:
    if current is None:
        return None
    return current if presented_token(request.cookies) == current.access_token else None


def set_cookies(response: Response, request: Request, session: AuthSession) -> None:
    """``Secure`` only over https, as browsers drop Secure cookies set over plain http."""
    secure = request.url.scheme == "https"
    for name, value in session.cookies().items():
        response.set_cookie(name, value, max_age=400 * 24 * 3600, path="/", secure=secure, samesite="lax")
