"""Where an ``arenahub admin`` command acts, and opening it: a running platform's admin API, or the
platform's database, found and never made.

A platform URL (``--platform-url``, else ``ARENAHUB_PLATFORM_URL`` unless ``--database-url`` is given)
with the admin token (``ARENAHUB_ADMIN_TOKEN``, or ``--admin-token``) sends the command through the
admin API. Otherwise it works on the database: ``--database-url``, else ``ARENAHUB_DATABASE_URL``,
else ``arenahub.db`` in the data folder (``ARENAHUB_DATA_DIR``, else ``.arenahub`` here). That
database must exist and hold arenahub's tables (an older schema is brought up to date, as a platform
start does): a missing file or an empty database stops the command with where it looked. Once open,
the command says on standard error, once, what it uses (a password in a URL masked).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from alembic.util.exc import CommandError
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.admin.database_admin import DatabaseAdmin
from arenahub.platform.admin.operations import AdminError, AdminOperations
from arenahub.platform.admin.remote_admin import RemoteAdmin
from arenahub.platform.storage.db import DATABASE_ERRORS, create_engine, is_sqlite, migrate, normalize_url

CONNECT_TIMEOUT_SECONDS = 10.0
NO_TABLES = "alembic_version"  # every arenahub database has it: the platform's first start made it
T = TypeVar("T")


@dataclass(frozen=True)
class DatabaseTarget:
    url: str  # normalized (its async driver)
    source: str  # what named it: "--database-url", "ARENAHUB_DATABASE_URL", "ARENAHUB_DATA_DIR" or "default"

    @property
    def shown(self) -> str:
        return shown_url(self.url)


@dataclass(frozen=True)
class PlatformTarget:
    url: str  # the platform's address, without /api
    token: str = field(repr=False)


def shown_url(url: str) -> str:
    """The URL to print: a password (in the URL or its query) masked, a SQLite path made absolute."""
    parsed = make_url(url)
    if is_sqlite(url):
        path = parsed.database
        return f"sqlite:///{Path(path).resolve() if path and path != ':memory:' else path or ''}"
    query = {k: "***" if any(s in k.lower() for s in ("password", "secret")) else v for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


def platform_base(text: str) -> str:
    """The platform's address from what the operator gave: ``https://gw.example.com``, with or without
    a trailing ``/api``."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AdminError(f"{text.strip()!r} is not an http:// or https:// URL of a platform", 2)
    url = text.strip().rstrip("/")
    return url.removesuffix("/api") if parts.path.rstrip("/").endswith("/api") else url


def choose(database_url: str | None, platform_url: str | None, admin_token: str | None,
           env: Mapping[str, str] = os.environ) -> DatabaseTarget | PlatformTarget:
    """Where the command acts, from its flags and the environment (flags first)."""
    if database_url and platform_url:
        raise AdminError("give --database-url or --platform-url, not both", 2)
    api = platform_url or (None if database_url else env.get("ARENAHUB_PLATFORM_URL") or None)
    if api:
        token = (admin_token or env.get("ARENAHUB_ADMIN_TOKEN") or "").strip()
        if not token:
            raise AdminError("the admin API needs the admin token: set ARENAHUB_ADMIN_TOKEN (or pass --admin-token)", 2)
        if not token.isascii() or not token.isprintable() or " " in token:
            raise AdminError("the admin token holds spaces or characters no admin token has", 2)
        return PlatformTarget(platform_base(api), token)
    if admin_token:
        raise AdminError("--admin-token goes with --platform-url (or ARENAHUB_PLATFORM_URL); without one, admin "
                         "commands work on the database", 2)
    if database_url:
        source, url = "--database-url", database_url
    elif env.get("ARENAHUB_DATABASE_URL"):
        source, url = "ARENAHUB_DATABASE_URL", env["ARENAHUB_DATABASE_URL"]
    else:
        folder = env.get("ARENAHUB_DATA_DIR")
        source = "ARENAHUB_DATA_DIR" if folder else "default"
        url = f"sqlite:///{Path(folder or '.arenahub') / 'arenahub.db'}"
    try:
        return DatabaseTarget(normalize_url(url), source)
    except ValueError as exc:
        raise AdminError(f"{source}: {exc}", 2) from None


def _hint(target: DatabaseTarget) -> str:
    """How to name the right database, after what named this one."""
    if target.source == "default":
        return ("start the platform once here, or pass --database-url or set ARENAHUB_DATA_DIR to the platform's "
                "data folder, or use --platform-url with the admin token")
    if target.source == "ARENAHUB_DATA_DIR":
        return "the folder named by ARENAHUB_DATA_DIR: start the platform once with it, or correct it"
    return f"named by {target.source}: start the platform once with it, or correct it"


def database_failure(target: DatabaseTarget, exc: BaseException) -> AdminError:
    """One line for what the database (or the way to it) said."""
    cause: Any = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    reason = " ".join(str(cause).split()) or type(cause).__name__
    return AdminError(f"cannot use the database {target.shown}: {reason[:300]}")


def _sqlite_is_arenahub(path: Path) -> bool:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (NO_TABLES,)).fetchone() is not None
    finally:
        conn.close()


async def open_database(target: DatabaseTarget) -> AsyncEngine:
    """An engine on the existing arenahub database, its schema up to date; never makes one."""
    if is_sqlite(target.url):
        path = make_url(target.url).database
        if not path or path == ":memory:":
            raise AdminError("an in-memory SQLite database holds nothing to manage: name the platform's database file",
                             2)
        where = Path(path).resolve()
        if not where.exists():
            raise AdminError(f"no database at {where} ({_hint(target)})")
        if not where.is_file():
            raise AdminError(f"{where} is not a database file ({_hint(target)})")
        if not os.access(where, os.R_OK | os.W_OK):
            raise AdminError(f"cannot read and write {where}: permission denied")
        try:  # read-only, before the engine's first connection (which would turn any file into a database)
            if not _sqlite_is_arenahub(where):
                raise AdminError(f"the database {target.shown} has no arenahub tables ({_hint(target)})")
        except sqlite3.Error as exc:
            raise database_failure(target, exc) from None
    engine = create_engine(target.url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        async with engine.connect() as conn:
            arenahubs = await conn.run_sync(lambda sync: inspect(sync).has_table(NO_TABLES))
        if not arenahubs:
            raise AdminError(f"the database {target.shown} has no arenahub tables ({_hint(target)})")
        await migrate(engine)  # an older schema: what the platform's next start would do anyway
    except CommandError as exc:  # alembic: a revision it does not know, from a newer arenahub
        await engine.dispose()
        raise AdminError(f"cannot use the database {target.shown}: {exc} (a newer arenahub made it: upgrade this "
                         "one)") from None
    except DATABASE_ERRORS as exc:
        await engine.dispose()
        raise database_failure(target, exc) from None
    except BaseException:
        await engine.dispose()
        raise
    return engine


class Connection:
    """What a command is given to reach its target: ``await connection()`` opens it (once, when the
    command has checked its own input) and says what it uses."""

    def __init__(self, target: DatabaseTarget | PlatformTarget) -> None:
        self.target = target
        self._admin: AdminOperations | None = None
        self._close: Callable[[], Awaitable[None]] | None = None

    @property
    def remote(self) -> bool:
        return isinstance(self.target, PlatformTarget)

    async def __call__(self) -> AdminOperations:
        if self._admin is not None:
            return self._admin
        if isinstance(self.target, PlatformTarget):
            remote = RemoteAdmin(self.target.url, self.target.token)
            self._close = remote.aclose
            status = await remote.status()
            self._admin = remote
            said = f"the platform at {self.target.url} (its admin API; arenahub {status['version']})"
        else:
            engine = await open_database(self.target)
            self._close = engine.dispose
            self._admin = DatabaseAdmin(engine)
            said = self.target.shown
        print(f"arenahub admin: using {said}", file=sys.stderr)
        return self._admin

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work``, then close; what the database says on the way is one line (``AdminError``)."""
        try:
            return await work()
        except DATABASE_ERRORS as exc:
            if isinstance(self.target, DatabaseTarget):
                raise database_failure(self.target, exc) from None
            raise
        finally:
            if self._close is not None:
                await self._close()
