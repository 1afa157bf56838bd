"""The admin API in process: token handling, key lifecycle, clients, validation, OpenAPI."""

import asyncio

import pytest
from starlette.testclient import TestClient

from arenahub.platform.admin.token import load_admin_auth, reset_admin_token
from arenahub.platform.app import create_app
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.db import create_engine, migrate

TOKEN = "adm-test-token"


@pytest.fixture
def admin(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    with TestClient(create_app(PlatformSettings(database_url=url, admin_token=TOKEN))) as http:
        http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield http


def test_token_is_required_and_consumer_keys_are_not_admin_tokens(admin):
    key = admin.post("/api/admin/keys", json={"name": "k"}).json()["key"]
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {key}"}):
        r = admin.get("/api/admin/keys", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
    # ...and an admin token is not a consumer key.
    r = admin.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 401


def test_key_lifecycle(admin):
    r = admin.post("/api/admin/keys", json={"name": "team", "email": "a@b.org", "rpm": 60, "tpm": 10000,
                                            "max_concurrent": 2, "models": ["m1"], "metadata": {"team": "x"},
                                            "expires_at": "2030-01-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    created = r.json()
    secret, key_id = created["key"], created["id"]
    assert secret.startswith("sk-") and created["key_prefix"] == secret[:7]
    assert created["allowed_models"] == ["m1"] and created["metadata"] == {"team": "x"}
    listed = admin.get("/api/admin/keys").json()["data"]
    assert [k["id"] for k in listed] == [key_id] and secret not in str(listed)
    r = admin.patch(f"/api/admin/keys/{key_id}", json={"rpm": None, "disabled": True, "models": None})
    assert r.status_code == 200 and r.json()["rpm"] is None and r.json()["disabled"] is True
    assert r.json()["allowed_models"] is None and r.json()["tpm"] == 10000  # untouched
    rotated = admin.post(f"/api/admin/keys/{key_id}/rotate").json()
    assert rotated["key"] != secret and rotated["id"] == key_id
    assert admin.delete(f"/api/admin/keys/{key_id}").json() == {"deleted": True, "id": key_id}
    assert admin.get(f"/api/admin/keys/{key_id}").status_code == 404
    assert admin.delete(f"/api/admin/keys/{key_id}").status_code == 404


@pytest.mark.parametrize("body, param", [
    ({}, None),
    ({"name": ""}, "name"),
    ({"name": "k", "rpm": 0}, "rpm"),
    ({"name": "k", "rpm": "60"}, "rpm"),
    ({"name": "k", "email": "not-an-email"}, "email"),
    ({"name": "k", "expires_at": "soon"}, "expires_at"),
    ({"name": "k", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ({"name": "k", "colour": "blue"}, None),
])
def test_bad_key_bodies_name_the_field(admin, body, param):
    r = admin.post("/api/admin/keys", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param
    assert err["message"]


def test_malformed_json_and_unknown_ids(admin):
    r = admin.post("/api/admin/keys", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert admin.patch("/api/admin/keys/key_nope", json={"rpm": 5}).status_code == 404
    assert admin.post("/api/admin/keys/key_nope/rotate").status_code == 404


def test_clients(admin):
    r = admin.post("/api/admin/clients", json={"name": "box", "max_concurrent": 3})
    assert r.status_code == 201 and r.json()["api_key"].startswith("ck-")
    data = admin.get("/api/admin/clients").json()["data"]
    assert data[0]["name"] == "box" and data[0]["live"] is None and "api_key_hash" not in data[0]
    assert admin.post("/api/admin/clients", json={"name": "x", "bridge_url": "ftp://x"}).status_code == 400


def test_openapi_documents_every_route(admin):
    doc = admin.get("/api/admin/openapi.json", headers={"Authorization": ""}).json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/api/admin/keys", "/api/admin/keys/{key_id}", "/api/admin/keys/{key_id}/rotate",
                                 "/api/admin/clients"}
    assert "KeyCreate" in doc["components"]["schemas"]
    create = doc["paths"]["/api/admin/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create == {"$ref": "#/components/schemas/KeyCreate"}


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
