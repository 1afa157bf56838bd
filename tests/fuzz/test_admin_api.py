"""Schema fuzzing of the admin API: schemathesis runs every operation of the platform's own OpenAPI
document (``/api/admin/openapi.json``, built from the msgspec types the handlers decode with) against the
real platform over HTTP, authorized with the admin token. No 5xx; every status, content type and
response is what the document says; schema-valid requests are accepted and schema-violating ones
refused, except where a rule cannot be said in JSON Schema (``ALLOWED_REFUSALS``).

About half of the generated ids are replaced by a registered client's and key's, so that the handlers
behind a found resource run too (deletes keep the generated id, so that those two stay)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

from arenahub.platform.admin import fields
from arenahub.platform.admin.api import openapi
from tests.fuzz.support import ADMIN_TOKEN, FUZZ, Seeded, config, platform

# What a schema-valid request may still be refused for, (operation, error.param, error.code): rules JSON
# Schema cannot say, each told in the route's text or its field's description.
ALLOWED_REFUSALS = {
    *((f"GET /api/admin/{path}", "since", "invalid_request") for path in (
        "usage", "usage/summary", "analytics/summaries", "requests", "exports/requests", "exports/aggregates")),
    # The password's strength is checked by dashboard.auth (its body type has no minLength): a 400 there.
    ("PUT /api/admin/dashboard-password", "new_password", "weak_password"),
}

schema = schemathesis.openapi.from_dict(openapi(), config=config("adminToken", ADMIN_TOKEN))
_seeded: dict[str, str] = {}


@schema.hook
def map_path_parameters(context: Any, path_parameters: dict[str, Any]) -> dict[str, Any]:
    if not path_parameters or context.operation is None or context.operation.method.upper() == "DELETE":
        return path_parameters
    out = dict(path_parameters)
    for name, value in path_parameters.items():
        # Only a valid id, so that a case stays as valid as it was drawn; by its length, so that it shrinks alike.
        if name in _seeded and _is_id(value) and len(value) % 2 == 0:
            out[name] = _seeded[name]
    return out


def _is_id(value: Any) -> bool:
    try:
        msgspec.convert(value, fields.Id)
    except msgspec.ValidationError:
        return False
    return True


@schema.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        return True
    return (f"{case.method.upper()} {case.path}", error.get("param"), error.get("code")) not in ALLOWED_REFUSALS


@pytest.fixture(scope="module")
def admin_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with platform(tmp_path_factory.mktemp("admin-fuzz")) as seeded:
        _seeded.update(client_id=seeded.client_id, key_id=seeded.key_id)
        yield seeded


def test_the_served_document_is_the_fuzzed_one(admin_platform: Seeded) -> None:
    served = httpx.get(admin_platform.url + "/api/admin/openapi.json").json()
    assert served == openapi()


@schema.parametrize()
@FUZZ
def test_admin_api(case: schemathesis.Case, admin_platform: Seeded) -> None:
    case.call_and_validate(base_url=admin_platform.url, timeout=30)
