"""The dashboard password: an alternative to the admin token for signing in.

Stored in ``platform_settings`` as a salted scrypt hash, ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64):
n=2**15, r=8, p=1 (32 MiB of memory, about 0.1 s per check), a 16-byte random salt, a 32-byte key.
Unlike tokens, a password may be guessable, hence the slow hash. Setting or clearing it ends every
dashboard session.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.dashboard.sessions import end_all_sessions
from arenahub.platform.storage.settings_store import get_setting, put_setting

SETTING = "dashboard_password_scrypt"
MIN_LENGTH = 12
MAX_LENGTH = 1024
N, R, P, KEY_BYTES = 2**15, 8, 1, 32
_MAXMEM = 64 * 1024 * 1024


class WeakPassword(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=_MAXMEM, dklen=KEY_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_MAXMEM, dklen=len(expected))
    except ValueError:  # a damaged stored value never matches
        return False
    return hmac.compare_digest(got, expected)


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"The password needs at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"The password may have at most {MAX_LENGTH} characters.")


async def stored_password(engine: AsyncEngine) -> str | None:
    value = await get_setting(engine, SETTING)
    return value if isinstance(value, str) and value else None


async def password_matches(engine: AsyncEngine, password: str) -> bool:
    stored = await stored_password(engine)
    if stored is None or not password or len(password) > MAX_LENGTH:
        return False
    return await asyncio.to_thread(verify_password, password, stored)  # slow on purpose: off the event loop


async def set_password(engine: AsyncEngine, password: str | None) -> None:
    """Set the password (None clears it) and end every dashboard session."""
    if password is not None:
        check_strength(password)
        value = await asyncio.to_thread(hash_password, password)
    else:
        value = ""  # cleared: no password, only the admin token signs in
    await put_setting(engine, SETTING, value)
    await end_all_sessions(engine)
