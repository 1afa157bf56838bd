"""The admin token: required on every admin route, never a consumer key, shown once, stored hashed; the
OpenAPI document."""

import asyncio
import json
import re

import pytest

from arenahub.platform.admin.token import load_admin_auth, reset_admin_token
from arenahub.platform.storage.db import create_engine, migrate
from tests.platform.admin_api.support import TOKEN


def test_token_is_required_and_consumer_keys_are_not_admin_tokens(admin):
    key = admin.post("/api/admin/keys", json={"name": "k"}).json()["key"]
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {key}"}):
        r = admin.get("/api/admin/keys", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
    # ...and an admin token is not a consumer key.
    r = admin.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 401


async def test_generated_token_is_shown_once_and_stored_hashed(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    await migrate(engine)
    shown: list[str] = []
    auth = await load_admin_auth(engine, show=shown.append)
    assert len(shown) == 1
    await auth.check(f"Bearer {shown[0]}")
    again = await load_admin_auth(engine, show=shown.append)  # the next start shows nothing
    assert len(shown) == 1
    await again.check(f"Bearer {shown[0]}")
    raw = (tmp_path / "t.db").read_bytes()
    assert shown[0].encode() not in raw
    new = await reset_admin_token(engine)
    await asyncio.sleep(0)
    await again.check(f"Bearer {new}")  # a running platform picks up the reset
    with pytest.raises(Exception, match="Wrong admin token"):
        again._reread_at = 0
        await again.check(f"Bearer {shown[0]}")
    await engine.dispose()


def test_openapi_documents_every_route(admin):
    doc = admin.get("/api/admin/openapi.json", headers={"Authorization": ""}).json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/api/admin/keys", "/api/admin/keys/{key_id}", "/api/admin/keys/{key_id}/rotate",
                                 "/api/admin/keys/{key_id}/top-ups", "/api/admin/keys/{key_id}/adjustments",
                                 "/api/admin/clients", "/api/admin/clients/{client_id}",
                                 "/api/admin/clients/{client_id}/drain", "/api/admin/clients/{client_id}/undrain",
                                 "/api/admin/clients/{client_id}/clear-maintenance",
                                 "/api/admin/clients/{client_id}/package",
                                 "/api/admin/clients/{client_id}/earnings", "/api/admin/status", "/api/admin/instances",
                                 "/api/admin/prices", "/api/admin/prices/{model}", "/api/admin/usage",
                                 "/api/admin/usage/summary",
                                 "/api/admin/analytics/overview", "/api/admin/analytics/summaries",
                                 "/api/admin/requests", "/api/admin/requests/{request_id}",
                                 "/api/admin/exports/requests", "/api/admin/exports/aggregates",
                                 "/api/admin/settings", "/api/admin/dashboard-password", "/api/admin/catalogue",
                                 "/api/admin/catalogue/models", "/api/admin/catalogue/decisions"}
    assert set(doc["paths"]["/api/admin/clients/{client_id}"]) == {"get", "patch", "delete"}
    schemas = doc["components"]["schemas"]
    assert {"KeyCreate", "KeyUpdate", "TopUp", "Adjustment", "PriceSet", "ClientUpdate", "DrainRequest"} <= set(schemas)
    assert set(schemas["ClientUpdate"]["properties"]) == {"name", "email", "bridge_url", "rpm", "max_concurrent",
                                                          "priority", "weight", "disabled"}
    drain = doc["paths"]["/api/admin/clients/{client_id}/drain"]["post"]["requestBody"]
    assert drain["required"] is False  # the reason is optional, and so is the body
    assert doc["paths"]["/api/admin/clients/{client_id}"]["patch"]["requestBody"]["required"] is True
    assert {"credit", "unlimited"} <= set(schemas["KeyCreate"]["properties"])
    assert "unlimited" in schemas["KeyUpdate"]["properties"]
    create = doc["paths"]["/api/admin/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create == {"$ref": "#/components/schemas/KeyCreate"}
    assert "201" in doc["paths"]["/api/admin/keys/{key_id}/top-ups"]["post"]["responses"]
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["summary"], path
            named = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert named == set(re.findall(r"\{(\w+)\}", path)), path
    price = doc["paths"]["/api/admin/prices/{model}"]["put"]
    assert price["parameters"][0]["name"] == "model" and "/" in price["parameters"][0]["description"]
    query = {p["name"]: p for p in doc["paths"]["/api/admin/usage"]["get"]["parameters"]}
    assert set(query) == {"key", "client", "since", "until"}
    assert all(p["in"] == "query" and not p["required"] and p["description"] for p in query.values())
    assert query["since"]["schema"] == {"type": "string", "format": "date-time"}
    assert "UsageQuery" not in schemas  # query types become parameters, not body schemas


def test_the_openapi_document_says_what_is_accepted(admin):
    """Built from the types the router checks requests with: nullable and optional as they really are."""
    doc = admin.get("/api/admin/openapi.json", headers={"Authorization": ""}).json()
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                assert "null" not in json.dumps(p["schema"]), (method, path, p)  # a query has no null
                if p["in"] == "path":
                    assert p["schema"]["pattern"] and p["schema"]["maxLength"], (method, path, p)
            assert {"400", "401", "404"} <= set(op["responses"]), (method, path)
    usage = {p["name"]: p for p in doc["paths"]["/api/admin/usage"]["get"]["parameters"]}
    assert usage["until"]["required"] is False and usage["until"]["schema"]["format"] == "date-time"
    # a client's fields: the same rules on create and update
    create, update = schemas["ClientCreate"]["properties"], schemas["ClientUpdate"]["properties"]
    for name, rules in create.items():
        assert {k: v for k, v in rules.items() if k != "default"} == update[name], name
    assert (create["max_concurrent"]["minimum"], create["max_concurrent"]["maximum"]) == (1, 10_000)
    assert "pattern" in create["bridge_url"] and create["bridge_url"]["maxLength"] == 500
    assert "pattern" in create["name"] and "pattern" in create["email"]["anyOf"][0]
    # optional and nullable: email may be null (no email), max_concurrent may not
    assert {"type": "null"} in update["email"]["anyOf"] and "anyOf" not in update["max_concurrent"]
    assert schemas["ClientUpdate"].get("required", []) == [] and schemas["ClientCreate"]["required"] == ["name"]
    # money has its format: a top-up is more than 0, an adjustment not 0
    assert "pattern" in schemas["TopUp"]["properties"]["amount"]
    assert "pattern" in schemas["PriceSet"]["properties"]["prompt"]
    package = doc["paths"]["/api/admin/clients/{client_id}/package"]["post"]
    assert "409" in package["responses"] and "requestBody" not in package
