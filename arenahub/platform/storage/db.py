"""Opening the database and bringing its schema up to date."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import asyncpg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS = Path(__file__).with_name("migrations")
# What a statement raises when the database is away or refuses it: SQLAlchemy's errors (the drivers'
# errors wrapped), and OSError (TimeoutError, ConnectionRefusedError, ...) from connecting, which
# SQLAlchemy passes on as it is. Loops that keep going while the database is away catch these.
DATABASE_ERRORS = (SQLAlchemyError, OSError)


def default_data_dir() -> Path:
    return Path(os.environ.get("ARENAHUB_DATA_DIR", ".arenahub"))


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{default_data_dir() / 'arenahub.db'}"


def normalize_url(url: str | None) -> str:
    """Accept plain ``sqlite:///`` and ``postgresql://`` URLs and pick the async driver."""
    url = url or os.environ.get("ARENAHUB_DATABASE_URL") or default_database_url()
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # not echoed: it may hold a password
        raise ValueError("the database URL cannot be read: use sqlite:///path or "
                         "postgresql+asyncpg://user:password@host:port/db") from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}: "
                         "use sqlite:///path or postgresql+asyncpg://user@host/db")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def database_key(url: str) -> str:
    """A short name for the database ``url`` points at (password left out, a SQLite path made absolute):
    what is kept on local disk for one database (the journal) is filed under it."""
    parsed = make_url(normalize_url(url))
    if is_sqlite(url) and parsed.database and parsed.database != ":memory:":
        parsed = parsed.set(database=str(Path(parsed.database).resolve()))
    return hashlib.sha256(parsed.render_as_string(hide_password=True).encode()).hexdigest()[:16]


def create_engine(url: str | None = None, *, connect_timeout: float | None = None) -> AsyncEngine:
    """``connect_timeout``: how long a PostgreSQL connection may take to open (default: asyncpg's 60 s)."""
    url = normalize_url(url)
    if is_sqlite(url):
        db_path = make_url(url).database
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "do_connect")
        def _folder(*_: object) -> None:
            # At the first connection, not here: a platform that cannot start (its port taken, say) leaves no
            # empty data folder behind.
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # Each commit reaches the disk (NORMAL may lose the last ones in a power cut): the platform
            # deletes its journal (journal.py) once a batch is committed, so the commit must last.
            # Batches are off the request path; answers wait only for the journal.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    connect_args = {"timeout": connect_timeout} if connect_timeout is not None else {}
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, connect_args=connect_args)


async def execute_on_server(url: str | URL, statement: str, *, timeout: float = 10) -> None:
    """Run one statement on the PostgreSQL server ``url`` points at, on a connection of its own and outside
    any transaction: ``CREATE DATABASE`` and ``DROP DATABASE`` cannot run in one. The tests and the
    benchmarks make (and drop) databases of their own with it, next to the one ``url`` names."""
    parsed = make_url(url)
    conn = await asyncpg.connect(user=parsed.username, password=parsed.password, host=parsed.host or "127.0.0.1",
                                 port=parsed.port or 5432, database=parsed.database, timeout=timeout)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


# The PostgreSQL advisory lock that several platform instances starting at once take in turn to migrate.
MIGRATION_LOCK = 0x61726E61  # "arna"


async def migrate(engine: AsyncEngine) -> None:
    """Apply every pending migration (idempotent; safe to run on each start, and on PostgreSQL by several
    instances at once: they take turns, and the later ones find nothing left to do)."""
    cfg = alembic_config()

    def _upgrade(sync_conn: Connection) -> None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # released with the transaction
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(_upgrade)
