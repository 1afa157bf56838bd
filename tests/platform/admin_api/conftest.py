"""Fixtures of the admin API tests: the platform in process with a known admin token, on both databases."""

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from arenahub.platform.app import create_app
from arenahub.platform.settings import PlatformSettings
from tests.platform.admin_api.support import TOKEN


def _serving(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(PlatformSettings(database_url=database_url, admin_token=TOKEN))) as http:
        http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield http


@pytest.fixture
def admin(database_url: str) -> Iterator[TestClient]:
    """A fresh platform (and database) for each test, the admin token sent by default."""
    yield from _serving(database_url)


@pytest.fixture(scope="module")
def shared_admin(module_database_url: str) -> Iterator[TestClient]:
    """One platform per module and backend, for tests that leave its data as they found it."""
    yield from _serving(module_database_url)
