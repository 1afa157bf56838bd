"""Shared fixtures: a fresh, empty database for each test, on SQLite and on PostgreSQL.

PostgreSQL tests need ``ARENAHUB_TEST_PG_URL`` (``.ci/run`` sets it up and exports it), a
database whose role may create databases: each test gets a database of its own, made next
to that one and dropped afterwards, so tests share nothing and run in any order. Without the
variable the PostgreSQL tests are skipped locally, and fail under CI, where they must run.

The fixtures are plain (sync) ones returning URL strings, so sync tests that start the
programs as processes can use them as well as async tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

PG_URL_ENV = "ARENAHUB_TEST_PG_URL"
BACKENDS = ("sqlite", "postgres")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_base_url() -> URL:
    """The URL from the environment; skips the test locally when it is missing, fails it in CI."""
    url = os.environ.get(PG_URL_ENV)
    if not url:
        message = f"{PG_URL_ENV} is not set (see .ci/run for how to start PostgreSQL)"
        if in_ci():
            pytest.fail(f"PostgreSQL tests must run in CI: {message}", pytrace=False)
        pytest.skip(message)
    return make_url(url)


def skip_reasons(skipped: list[Any]) -> dict[str, int]:
    """How many tests were skipped for each reason (a report's ``longrepr`` is (file, line, reason))."""
    reasons: dict[str, int] = {}
    for report in skipped:
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say once why tests were skipped, and how to run them (``-q`` shows only a count)."""
    reasons = skip_reasons(terminalreporter.stats.get("skipped", []))
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{count} test(s) skipped: {reason}")
    if any(PG_URL_ENV in reason for reason in reasons):
        terminalreporter.write_line(
            f"to run the PostgreSQL tests: start a server and export {PG_URL_ENV}="
            "postgresql+asyncpg://USER:PASSWORD@127.0.0.1:5432/DATABASE (a role that may create databases); "
            "sudo .ci/run installs, starts and uses one")


def _run(make_coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to the end from sync code, even when the caller's thread has a running loop."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(make_coroutine())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below, which raises it
            errors.append(exc)

    thread = threading.Thread(target=target, name="test-database-admin")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _on_server(base: URL, statement: str) -> None:
    from arenahub.platform.storage.db import execute_on_server

    _run(functools.partial(execute_on_server, base, statement))


class Databases:
    """Makes fresh databases and drops the PostgreSQL ones again in ``drop_all``."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._made: list[tuple[URL, str]] = []

    def new(self, backend: str) -> str:
        """The SQLAlchemy URL of a new, empty database on ``backend`` ("sqlite" or "postgres")."""
        if backend == "sqlite":
            path = self._directory / f"arenahub-{secrets.token_hex(4)}.db"
            return f"sqlite+aiosqlite:///{path}"
        if backend != "postgres":
            raise ValueError(f"unknown database backend {backend!r}")
        base = postgres_base_url()
        name = f"t_{secrets.token_hex(8)}"
        _on_server(base, f'CREATE DATABASE "{name}"')
        self._made.append((base, name))
        return base.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        while self._made:
            base, name = self._made.pop()
            # FORCE ends connections a test left open (a process it started, say). It cannot end a backend of
            # another role, such as an autovacuum worker that happens to be in the new database: try again.
            for attempt in range(10):
                try:
                    _on_server(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    break
                except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
                    if attempt == 9:
                        raise
                    time.sleep(0.2)


@contextlib.contextmanager
def fresh_databases(directory: Path) -> Iterator[Databases]:
    made = Databases(directory)
    try:
        yield made
    finally:
        made.drop_all()


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[Databases]:
    """A factory for fresh databases: ``databases.new("postgres")``; all dropped after the test."""
    with fresh_databases(tmp_path) as made:
        yield made


BACKEND_PARAMS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend under test; every test that uses it runs once for each."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, databases: Databases) -> str:
    """The URL of a fresh, empty database, on SQLite and then on PostgreSQL."""
    return databases.new(backend)


def initialised(url: str) -> str:
    """``url`` with arenahub's tables made, as a platform's first start makes them (``storage.db.migrate``):
    ``arenahub admin`` refuses a database without them. Returns ``url``."""
    from arenahub.platform.storage import db

    async def migrate() -> None:
        engine = db.create_engine(url)
        try:
            await db.migrate(engine)
        finally:
            await engine.dispose()
    _run(migrate)
    return url


@pytest.fixture
def platform_database_url(database_url: str) -> str:
    """A fresh database as a platform's first start leaves it (its tables, no rows), on both backends."""
    return initialised(database_url)


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One fresh database per backend for a whole test module: for modules whose tests each leave the
    data as they found it (checks of refusals, reads), so they need not pay for a database each."""
    with fresh_databases(tmp_path_factory.mktemp("module-db")) as made:
        yield made.new(str(request.param))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real redis-server per test worker (tests/redis_server.py)."""
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    """The URL of an empty Redis (flushed before the test), running for as long as the test needs."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test stopped it
    redis_server.flush()
    return str(redis_server.url)


@pytest.fixture
def start_haproxy(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``start_haproxy([(name, host, port), ...])``: a real HAProxy from deploy/haproxy.cfg in front of those
    servers (tests/haproxy.py), stopped after the test."""
    from tests.haproxy import HAProxy

    started: list[HAProxy] = []

    def start(servers: list[tuple[str, str, int]]) -> HAProxy:
        workdir = tmp_path / f"haproxy-{len(started)}"
        workdir.mkdir()
        lb = HAProxy(servers, workdir)
        started.append(lb)
        return lb.start()
    try:
        yield start
    finally:
        for lb in started:
            lb.stop()
