"""Fixtures for end-to-end tests: real programs on free ports, each test in its own folder.

Storage does not matter to most tests, so the platform runs on SQLite (``platform_db``). Test
modules where it does matter override ``platform_db`` with the top-level ``database_url``
fixture, which runs them on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from .harness import MODELS, SHARED_MAX_BODY_BYTES, Client, Platform, Shared, Stack, Upstream, consumer_for


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """When a test fails, show the tails of the logs of every program it ran."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    seen: set[int] = set()
    for value in getattr(item, "funcargs", {}).values():
        stack = value if isinstance(value, Stack) else getattr(value, "stack", None)
        if isinstance(stack, Stack) and id(stack) not in seen:
            seen.add(id(stack))
            for name, tail in stack.tails():
                report.sections.append((f"arenahub {name} log", tail))


@contextlib.contextmanager
def running_stack(workdir: Path) -> Iterator[Stack]:
    stack = Stack(workdir)
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
def stack(tmp_path: Path, platform_db: str) -> Iterator[Stack]:
    # Depends on platform_db so that the programs stop before their database is dropped.
    with running_stack(tmp_path) as s:
        yield s


@pytest.fixture
def platform_db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}"


@pytest.fixture
def platform_env() -> dict[str, str]:
    """Environment of the platform; modules override it to tune timeouts and limits."""
    return {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.2"}


@pytest.fixture
def upstream(stack: Stack) -> Upstream:
    return stack.upstream(MODELS)


@pytest.fixture
def platform(stack: Stack, platform_db: str, platform_env: dict[str, str]) -> Platform:
    return stack.platform(platform_db, platform_env)


@pytest.fixture
def consumer_key(stack: Stack, platform: Platform) -> str:
    return stack.create_key(platform)["key"]


@pytest.fixture
def start_client(stack: Stack, platform: Platform, upstream: Upstream) -> Callable[..., Client]:
    """``start_client(name=..., upstream=..., **options)``: see ``Stack.client``."""
    def start(upstream: Upstream = upstream, **options: Any) -> Client:
        return stack.client(platform, upstream, **options)
    return start


@pytest.fixture
def consumer(platform: Platform, consumer_key: str) -> Iterator[openai.OpenAI]:
    with consumer_for(platform, consumer_key) as client:
        yield client


# -- one stack for a whole module of tests that only read -------------------------------------
@pytest.fixture(scope="module")
def shared_env() -> dict[str, str]:
    return {"ARENAHUB_MAX_BODY_BYTES": str(SHARED_MAX_BODY_BYTES)}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, shared_env: dict[str, str]) -> Iterator[Shared]:
    workdir = tmp_path_factory.mktemp("shared")
    with running_stack(workdir) as stack:
        up = stack.upstream(MODELS)
        platform = stack.platform(f"sqlite+aiosqlite:///{workdir / 'platform.db'}", shared_env)
        key = stack.create_key(platform)["key"]
        client = stack.client(platform, up)
        shared = Shared(stack, platform, client, key)
        try:
            yield shared
        finally:
            shared.consumer.close()
