"""A client's new API key travels only inside its package (keys are stored as hashes), so the key
changes only once the package holding it is made: ``build`` makes the package in memory with a new
key, and ``commit`` then stores that key in place of the one the client had when the build began.
When the build fails, or another package was made meanwhile, nothing changes and the old key keeps
working. Used by ``POST /api/admin/clients/{id}/package`` and ``arenahub admin client-package``
(which writes the package beside its file, ``write_beside``, before the key is stored).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.accounting import credentials
from arenahub.platform.storage import accounts
from arenahub.platform.storage.accounts import ClientAccount

# (the client as stored, its new key) -> the package's bytes; raises ClientPackageError for a bad input
Make = Callable[[ClientAccount, str], bytes]


@dataclass(frozen=True)
class KeyedPackage:
    account: ClientAccount  # as it was when the package was made
    api_key: str
    data: bytes


async def build(engine: AsyncEngine, client_id: str, make: Make) -> KeyedPackage | None:
    """The client's package with a new key, nothing stored yet; None when there is no such client.
    ``make`` runs in a thread (zipping a wheel takes a moment); its ClientPackageError propagates."""
    account = await accounts.get_client(engine, client_id)
    if account is None:
        return None
    api_key = credentials.new_client_api_key()
    return KeyedPackage(account, api_key, await asyncio.to_thread(make, account, api_key))


async def commit(engine: AsyncEngine, package: KeyedPackage) -> bool:
    """Store the package's key (the old one stops working); False, nothing changed, when the client is
    gone or its key changed since the package was made."""
    return await accounts.replace_client_key(engine, package.account.id, package.api_key,
                                             current_hash=package.account.api_key_hash)


def write_beside(path: Path, data: bytes) -> Path:
    """``data`` in a new file beside ``path``, readable by the owner only (a package holds the client's key);
    the caller moves it to ``path`` once the key is stored, or removes it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o600)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)
