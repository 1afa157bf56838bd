"""Fixtures of the admin API tests: the platform in process with a known admin token, on both databases."""

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.platform.admin_api.support import TOKEN
from tests.platform.support import serving


@pytest.fixture
def admin(database_url: str) -> Iterator[TestClient]:
    """A fresh platform (and database) for each test, the admin token sent by default."""
    with serving(database_url, TOKEN) as http:
        yield http


@pytest.fixture(scope="module")
def shared_admin(module_database_url: str) -> Iterator[TestClient]:
    """One platform per module and backend, for tests that leave its data as they found it."""
    with serving(module_database_url, TOKEN) as http:
        yield http
