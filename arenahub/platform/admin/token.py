"""The admin token: generated on first start and shown once, stored only as a hash.

``ARENAHUB_ADMIN_TOKEN`` sets it instead (automated deployments); ``arenahub admin reset-admin-token``
makes a new one (and ends every dashboard session). A consumer key is never an admin token: the hashes
differ.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.accounting import credentials
from arenahub.platform.dashboard.sessions import end_all_sessions
from arenahub.platform.storage.settings_store import get_setting, put_setting
from arenahub.protocol.errors import ApiError

SETTING = "admin_token_sha256"
FRESH_SECONDS = 5.0  # a running platform stops taking a replaced token within this long


class AdminUnauthorized(ApiError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_admin_token"


def new_admin_token() -> str:
    return "adm-" + secrets.token_urlsafe(32)


def announce(token: str) -> None:
    """Shown once, on the terminal, never through logging (logs must not hold secrets)."""
    print(f"\narenahub: the admin token (shown once; keep it; `arenahub admin reset-admin-token` makes a "
          f"new one):\n  {token}\n", file=sys.stderr, flush=True)


class AdminAuth:
    def __init__(self, token_hash: str, engine: AsyncEngine | None = None) -> None:
        self._hash = token_hash
        self._engine = engine  # None: set by ARENAHUB_ADMIN_TOKEN, never re-read
        self._reread_at = 0.0
        self._fresh_until = 0.0

    async def matches(self, token: str) -> bool:
        ok = credentials.matches(token, self._hash)
        # `arenahub admin reset-admin-token` may have replaced it: look again, at most once a second
        # for a token that does not match, and every few seconds for one that does (so the old one stops).
        now = time.monotonic()
        if self._engine is not None and (now >= self._fresh_until if ok else now >= self._reread_at):
            if not ok:
                self._reread_at = now + 1.0
            self._fresh_until = now + FRESH_SECONDS
            stored = await get_setting(self._engine, SETTING)
            if isinstance(stored, str):
                self._hash = stored
                ok = credentials.matches(token, self._hash)
        return ok

    async def check(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AdminUnauthorized("The admin API needs `Authorization: Bearer <admin token>`.")
        if not await self.matches(token):
            raise AdminUnauthorized("Wrong admin token.")


async def load_admin_auth(engine: AsyncEngine, env_token: str = "",
                          show: Callable[[str], None] = announce) -> AdminAuth:
    if env_token:
        return AdminAuth(credentials.hash_secret(env_token))
    stored = await get_setting(engine, SETTING)
    if isinstance(stored, str):
        return AdminAuth(stored, engine)
    token = new_admin_token()
    if await put_setting(engine, SETTING, credentials.hash_secret(token), only_if_absent=True):
        show(token)
        return AdminAuth(credentials.hash_secret(token), engine)
    return AdminAuth(str(await get_setting(engine, SETTING)), engine)  # another process made it first


async def reset_admin_token(engine: AsyncEngine) -> str:
    """A new token; the old one stops working, and every dashboard session ends."""
    token = new_admin_token()
    await put_setting(engine, SETTING, credentials.hash_secret(token))
    await end_all_sessions(engine)
    return token
