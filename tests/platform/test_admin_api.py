"""The admin API in process, on both databases: token handling, key lifecycle, credit, top-ups, prices,
usage, clients (with real client sessions over the in-process tunnel), validation, OpenAPI."""

import asyncio
import datetime as dt
import re
import threading
import time
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from arenahub.platform.admin.api import ROUTES
from arenahub.platform.admin.token import load_admin_auth, reset_admin_token
from arenahub.platform.app import create_app
from arenahub.platform.billing import DEFAULT_PRICES, Entry, Kind, Price, Usage
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import accounts, billing_store
from arenahub.platform.storage.db import create_engine, migrate
from arenahub.protocol import frames

TOKEN = "adm-test-token"


@pytest.fixture
def admin(database_url):
    with TestClient(create_app(PlatformSettings(database_url=database_url, admin_token=TOKEN))) as http:
        http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield http


def platform_of(http):
    return http.app.state.platform


def call(http, fn, *args, **kwargs):
    """Run ``fn`` (a coroutine function) on the app's event loop, where its engine lives."""
    return http.portal.call(lambda: fn(*args, **kwargs))


def eventually(check, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout} s")
        time.sleep(0.02)
    return result


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
    assert admin.head("/api/admin/keys").status_code == 200
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
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "k", "rpm": 0}, "rpm"),
    ({"name": "k", "rpm": "60"}, "rpm"),
    ({"name": "k", "email": "not-an-email"}, "email"),
    ({"name": "k", "expires_at": "soon"}, "expires_at"),
    ({"name": "k", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ({"name": "k", "colour": "blue"}, "colour"),
    ({"name": "k", "credit": "-5"}, "credit"),
    ({"name": "k", "credit": "12,50"}, "credit"),
    ({"name": "k", "credit": 12.5}, "credit"),
    ({"name": "k", "unlimited": "yes"}, "unlimited"),
])
def test_bad_key_bodies_name_the_field(admin, body, param):
    r = admin.post("/api/admin/keys", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param
    assert err["message"]
    assert admin.get("/api/admin/keys").json()["data"] == []  # nothing was made


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
    assert data[0]["health"]["breaker"] == "closed" and data[0]["health"]["maintenance"] is None
    assert (data[0]["priority"], data[0]["weight"], data[0]["draining"]) == (0, 1, False)
    assert admin.post("/api/admin/clients", json={"name": "x", "bridge_url": "ftp://x"}).status_code == 400


def test_package_download_carries_a_new_key_and_the_old_one_stops(admin):
    import io
    import zipfile

    from arenahub import jsonc

    made = admin.post("/api/admin/clients", json={"name": "box", "bridge_url": "http://127.0.0.1:5999"}).json()
    r = admin.post(f"/api/admin/clients/{made['client_id']}/package")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert f"lmarena-client-{made['client_id']}.zip" in r.headers["content-disposition"]
    assert r.headers["cache-control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        config = jsonc.loads(z.read("config.jsonc").decode())
        assert {"start_client.sh", "README.txt", "userscript.js", "requirements_platform.txt",
                "lmarena_platform_integration.py"} <= set(z.namelist())
    pi = config["platform_integration"]
    assert pi["client_id"] == made["client_id"] and pi["platform_url"] == "http://testserver/api"
    new_key = pi["api_key"]
    assert new_key.startswith("ck-") and new_key != made["api_key"]
    engine = platform_of(admin).engine
    assert call(admin, accounts.authenticate_client, engine, made["client_id"], made["api_key"]) is None
    assert call(admin, accounts.authenticate_client, engine, made["client_id"], new_key) is not None
    assert admin.post("/api/admin/clients/cl_nobody/package").status_code == 404


def test_openapi_documents_every_route(admin):
    doc = admin.get("/api/admin/openapi.json", headers={"Authorization": ""}).json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/api/admin/keys", "/api/admin/keys/{key_id}", "/api/admin/keys/{key_id}/rotate",
                                 "/api/admin/keys/{key_id}/top-ups", "/api/admin/keys/{key_id}/adjustments",
                                 "/api/admin/clients", "/api/admin/clients/{client_id}",
                                 "/api/admin/clients/{client_id}/drain", "/api/admin/clients/{client_id}/undrain",
                                 "/api/admin/clients/{client_id}/clear-maintenance", "/api/admin/clients/{client_id}/package",
                                 "/api/admin/clients/{client_id}/earnings",
                                 "/api/admin/prices", "/api/admin/prices/{model}", "/api/admin/usage"}
    assert set(doc["paths"]["/api/admin/clients/{client_id}"]) == {"get", "patch"}
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


def _fill(path):
    return re.sub(r"\{\w+(:\w+)?\}", "x_1", path)


@pytest.mark.parametrize("spec", ROUTES, ids=lambda s: f"{s.method} {s.path}")
def test_every_route_refuses_a_missing_or_wrong_token(admin, spec):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        r = admin.request(spec.method, "/api/admin" + _fill(spec.path), json={}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token", r.text


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


# --- credit and top-ups -------------------------------------------------------------------------

def test_keys_carry_their_credit(admin):
    plain = admin.post("/api/admin/keys", json={"name": "free"}).json()
    assert plain["unlimited"] is True
    assert plain["credit"] == {"unlimited": True, "balance_usd": "0.00", "held_usd": "0.00", "available_usd": "0.00",
                               "balance_micros": 0, "held_micros": 0}
    r = admin.post("/api/admin/keys", json={"name": "paid", "credit": "12.50"})
    assert r.status_code == 201, r.text
    paid = r.json()
    assert paid["unlimited"] is False and paid["key"].startswith("sk-")
    assert paid["credit"] == {"unlimited": False, "balance_usd": "12.50", "held_usd": "0.00",
                              "available_usd": "12.50", "balance_micros": 12_500_000, "held_micros": 0}
    shown = admin.get(f"/api/admin/keys/{paid['id']}").json()
    assert shown["credit"]["balance_micros"] == 12_500_000
    listed = {k["id"]: k["credit"] for k in admin.get("/api/admin/keys").json()["data"]}
    assert listed[paid["id"]]["balance_usd"] == "12.50" and listed[plain["id"]]["unlimited"] is True
    # credit "0" and unlimited=false both make a limited key with nothing to spend
    for body in ({"name": "zero", "credit": "0"}, {"name": "limited", "unlimited": False}):
        made = admin.post("/api/admin/keys", json=body).json()
        assert made["credit"]["unlimited"] is False and made["credit"]["balance_micros"] == 0, body
    # explicit unlimited wins over the default that credit implies
    both = admin.post("/api/admin/keys", json={"name": "both", "credit": "1", "unlimited": True}).json()
    assert both["credit"]["unlimited"] is True and both["credit"]["balance_usd"] == "1.00"
    # the key row and the request path see the same setting
    r = admin.patch(f"/api/admin/keys/{paid['id']}", json={"unlimited": True})
    assert r.json()["unlimited"] is True and r.json()["credit"]["unlimited"] is True
    assert r.json()["credit"]["balance_usd"] == "12.50"
    rotated = admin.post(f"/api/admin/keys/{paid['id']}/rotate").json()
    assert rotated["credit"]["balance_usd"] == "12.50"
    # the starting credit is persisted like any top-up
    eventually(lambda: call(admin, billing_store.key_balance, platform_of(admin).engine, paid["id"])
               == (12_500_000, 0), what="starting credit persisted")


def test_top_ups_and_adjustments(admin):
    key_id = admin.post("/api/admin/keys", json={"name": "paid", "credit": "10"}).json()["id"]
    r = admin.post(f"/api/admin/keys/{key_id}/top-ups", json={"amount": "2.25", "note": "invoice 7"})
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["entry_id"] and entry["key_id"] == key_id and entry["kind"] == "topup"
    assert (entry["amount_usd"], entry["amount_micros"], entry["note"]) == ("2.25", 2_250_000, "invoice 7")
    assert dt.datetime.fromisoformat(entry["created_at"]).tzinfo is not None
    assert entry["credit"]["balance_usd"] == "12.25" and entry["credit"]["balance_micros"] == 12_250_000
    assert admin.get(f"/api/admin/keys/{key_id}").json()["credit"]["balance_micros"] == 12_250_000
    r = admin.post(f"/api/admin/keys/{key_id}/adjustments", json={"amount": "-0.25"})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "adjustment" and r.json()["amount_micros"] == -250_000 and r.json()["note"] is None
    assert r.json()["credit"]["balance_usd"] == "12.00"
    # the live ledger holds it at once; the book has it after the writer's next flush
    assert platform_of(admin).accounting.ledger.account(key_id).balance == 12_000_000
    eventually(lambda: call(admin, billing_store.key_balance, platform_of(admin).engine, key_id) == (12_000_000, 0),
               what="top-ups persisted")
    # a top-up is spendable at once: the ledger admits a request it covers
    ledger = platform_of(admin).accounting.ledger
    reservation = ledger.reserve(key_id, "req_topup_1", 11_000_000, unlimited=False)
    assert admin.get(f"/api/admin/keys/{key_id}").json()["credit"] == {
        "unlimited": False, "balance_usd": "12.00", "held_usd": "11.00", "available_usd": "1.00",
        "balance_micros": 12_000_000, "held_micros": 11_000_000}
    ledger.release(reservation)


@pytest.mark.parametrize("route, body, param", [
    ("top-ups", {"amount": "0"}, "amount"),
    ("top-ups", {"amount": "0.00"}, "amount"),
    ("top-ups", {"amount": "-5"}, "amount"),
    ("top-ups", {"amount": "five"}, "amount"),
    ("top-ups", {"amount": "$5"}, "amount"),
    ("top-ups", {"amount": "1.0000001"}, "amount"),
    ("top-ups", {"amount": "2000000000"}, "amount"),
    ("top-ups", {"amount": ""}, "amount"),
    ("top-ups", {"amount": 5}, "amount"),
    ("top-ups", {}, "amount"),
    ("top-ups", {"amount": "5", "note": "x" * 501}, "note"),
    ("top-ups", {"amount": "5", "currency": "EUR"}, "currency"),
    ("adjustments", {"amount": "0"}, "amount"),
    ("adjustments", {"amount": "--1"}, "amount"),
    ("adjustments", {"amount": "-1e3"}, "amount"),
])
def test_bad_amounts_name_the_field_and_change_nothing(admin, route, body, param):
    key_id = admin.post("/api/admin/keys", json={"name": "paid", "credit": "1"}).json()["id"]
    r = admin.post(f"/api/admin/keys/{key_id}/{route}", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]
    assert admin.get(f"/api/admin/keys/{key_id}").json()["credit"]["balance_usd"] == "1.00"


def test_top_ups_need_a_live_key(admin):
    for route in ("top-ups", "adjustments"):
        r = admin.post(f"/api/admin/keys/key_nope/{route}", json={"amount": "1"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "key_not_found"
    key_id = admin.post("/api/admin/keys", json={"name": "gone"}).json()["id"]
    admin.delete(f"/api/admin/keys/{key_id}")
    assert admin.post(f"/api/admin/keys/{key_id}/top-ups", json={"amount": "1"}).status_code == 404
    assert platform_of(admin).accounting.ledger.account(key_id).balance == 0


# --- prices -------------------------------------------------------------------------------------

def test_prices(admin):
    doc = admin.get("/api/admin/prices").json()
    rows = {row["model"]: row for row in doc["data"]}
    assert set(rows) == set(DEFAULT_PRICES) and all(row["default"] for row in rows.values())
    assert rows["gpt-4o"] == {"model": "gpt-4o", "prompt_per_1m_usd": "2.50", "completion_per_1m_usd": "10.00",
                              "per_image_usd": "0.00", "default": True}
    assert doc["fallback"] == {"prompt_per_1m_usd": "1.00", "completion_per_1m_usd": "3.00", "per_image_usd": "0.04"}

    r = admin.put("/api/admin/prices/meta/llama-3", json={"prompt": "0.5", "completion": "1.25", "image": "0.01"})
    assert r.status_code == 200, r.text
    assert r.json() == {"model": "meta/llama-3", "prompt_per_1m_usd": "0.50", "completion_per_1m_usd": "1.25",
                        "per_image_usd": "0.01", "default": False}
    # an admin price equal to the default is still the admin's
    assert admin.put("/api/admin/prices/gpt-4o", json={"prompt": "2.5", "completion": "10"}).status_code == 200
    rows = {row["model"]: row for row in admin.get("/api/admin/prices").json()["data"]}
    assert rows["meta/llama-3"]["default"] is False and rows["meta/llama-3"]["prompt_per_1m_usd"] == "0.50"
    assert rows["gpt-4o"]["default"] is False and rows["gpt-4o-mini"]["default"] is True
    # charged from the next request on, and stored for the next start
    prices = platform_of(admin).accounting.prices
    assert prices.price("meta/llama-3") == Price(500_000, 1_250_000, 10_000)
    stored, _ = call(admin, billing_store.prices_since, platform_of(admin).engine, None)
    assert stored == {"meta/llama-3": Price(500_000, 1_250_000, 10_000), "gpt-4o": Price(2_500_000, 10_000_000)}
    # PUT replaces the whole price: no image means 0 per image
    admin.put("/api/admin/prices/meta/llama-3", json={"prompt": "1", "completion": "2"})
    assert prices.price("meta/llama-3") == Price(1_000_000, 2_000_000, 0)


@pytest.mark.parametrize("path, body, param", [
    ("/api/admin/prices/m", {"prompt": "-1", "completion": "1"}, "prompt"),
    ("/api/admin/prices/m", {"prompt": "1", "completion": "one"}, "completion"),
    ("/api/admin/prices/m", {"prompt": "1", "completion": "1", "image": "0.0000001"}, "image"),
    ("/api/admin/prices/m", {"prompt": "1"}, "completion"),
    ("/api/admin/prices/m", {"prompt": 1, "completion": "1"}, "prompt"),
    ("/api/admin/prices/m", {"prompt": "1", "completion": "1", "per_image": "1"}, "per_image"),
    ("/api/admin/prices/" + "m" * 201, {"prompt": "1", "completion": "1"}, "model"),
    ("/api/admin/prices/", {"prompt": "1", "completion": "1"}, "model"),
])
def test_bad_prices_name_the_field_and_change_nothing(admin, path, body, param):
    r = admin.put(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert all(row["default"] for row in admin.get("/api/admin/prices").json()["data"])
    assert platform_of(admin).accounting.prices.price("m") == platform_of(admin).accounting.prices.fallback


# --- usage and earnings -------------------------------------------------------------------------

def serve(http, key_id, request_id, *, client_id, model, prompt, completion, charge):
    """A request served through the live ledger, as the request path records it."""
    ledger = platform_of(http).accounting.ledger
    reservation = ledger.reserve(key_id, request_id, charge, unlimited=False)
    ledger.settle(reservation, charge, client_id=client_id, model=model, usage=Usage(prompt, completion))


def served_earlier(http, key_id, request_id, at, *, client_id, model, prompt, completion, charge):
    """A request served on an earlier day, written straight to the book."""
    entries = [Entry(f"le_{request_id}_r", key_id, Kind.RESERVE, 0, charge, at, request_id=request_id),
               Entry(f"le_{request_id}_s", key_id, Kind.SETTLE, -charge, -charge, at, request_id=request_id,
                     client_id=client_id, model=model, prompt_tokens=prompt, completion_tokens=completion)]
    call(http, billing_store.insert_entries, platform_of(http).engine, entries)


def test_usage_by_key_and_client_day_and_model(admin):
    k1 = admin.post("/api/admin/keys", json={"name": "one", "credit": "10"}).json()["id"]
    k2 = admin.post("/api/admin/keys", json={"name": "two", "credit": "10"}).json()["id"]
    c1 = admin.post("/api/admin/clients", json={"name": "c1"}).json()["client_id"]
    c2 = admin.post("/api/admin/clients", json={"name": "c2"}).json()["client_id"]
    today = dt.datetime.now(dt.UTC)
    midnight = today.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = midnight - dt.timedelta(hours=12)
    serve(admin, k1, "req_1", client_id=c1, model="m-a", prompt=10, completion=5, charge=100)
    serve(admin, k1, "req_2", client_id=c1, model="m-a", prompt=20, completion=5, charge=200)
    serve(admin, k1, "req_3", client_id=c2, model="m-b", prompt=1, completion=1, charge=7)
    serve(admin, k2, "req_4", client_id=c2, model="m-a", prompt=3, completion=4, charge=50)
    served_earlier(admin, k1, "req_0", yesterday, client_id=c1, model="m-a", prompt=100, completion=100, charge=1000)

    # the book trails the live ledger by the writer's flush interval
    report = eventually(lambda: (r := admin.get("/api/admin/usage").json())["total"]["requests"] == 5 and r,
                        what="usage persisted")
    assert report["filters"] == {"key": None, "client": None, "since": None, "until": None}
    day, before = midnight.date().isoformat(), yesterday.date().isoformat()
    by_key = [(x["key_id"], x["day"], x["model"], x["requests"], x["prompt_tokens"], x["completion_tokens"],
               x["cost_micros"]) for x in report["by_key"]]
    assert by_key == sorted([(k1, before, "m-a", 1, 100, 100, 1000), (k1, day, "m-a", 2, 30, 10, 300),
                             (k1, day, "m-b", 1, 1, 1, 7), (k2, day, "m-a", 1, 3, 4, 50)])
    by_client = [(x["client_id"], x["day"], x["model"], x["requests"], x["cost_usd"]) for x in report["by_client"]]
    assert by_client == sorted([(c1, before, "m-a", 1, "0.001"), (c1, day, "m-a", 2, "0.0003"),
                                (c2, day, "m-a", 1, "0.00005"), (c2, day, "m-b", 1, "0.000007")])
    assert report["total"]["requests"] == 5 and report["total"]["cost_micros"] == 1357
    assert report["total"]["cost_usd"] == "0.001357"
    assert (report["total"]["prompt_tokens"], report["total"]["completion_tokens"], report["total"]["images"]) == (
        134, 115, 0)

    mine = admin.get("/api/admin/usage", params={"key": k1}).json()
    assert mine["filters"]["key"] == k1 and {x["key_id"] for x in mine["by_key"]} == {k1}
    assert mine["total"]["requests"] == 4
    assert {(x["client_id"], x["model"]) for x in mine["by_client"] if x["day"] == day} == {(c1, "m-a"), (c2, "m-b")}
    served = admin.get("/api/admin/usage", params={"client": c2}).json()
    assert {x["client_id"] for x in served["by_client"]} == {c2} and served["total"]["cost_micros"] == 57
    assert {x["key_id"] for x in served["by_key"]} == {k1, k2}
    both = admin.get("/api/admin/usage", params={"key": k2, "client": c2}).json()
    assert both["total"]["requests"] == 1
    since = midnight.isoformat().replace("+00:00", "Z")
    fresh = admin.get("/api/admin/usage", params={"since": since}).json()
    assert fresh["total"]["requests"] == 4 and {x["day"] for x in fresh["by_key"]} == {day}
    assert dt.datetime.fromisoformat(fresh["filters"]["since"]) == midnight
    old = admin.get("/api/admin/usage", params={"until": since}).json()
    assert old["total"]["requests"] == 1 and [x["day"] for x in old["by_key"]] == [before]
    # since inclusive, until exclusive; any zone
    window = {"since": (yesterday - dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(),
              "until": yesterday.isoformat()}
    assert admin.get("/api/admin/usage", params=window).json()["total"]["requests"] == 0
    window["until"] = (yesterday + dt.timedelta(microseconds=1)).isoformat()
    assert admin.get("/api/admin/usage", params=window).json()["total"]["requests"] == 1
    assert admin.get("/api/admin/usage", params={"key": "key_nobody"}).json()["by_key"] == []

    # client earnings are live (the ledger restored at start plus what it settled since)
    r = admin.get(f"/api/admin/clients/{c1}/earnings")
    assert r.status_code == 200, r.text
    assert r.json() == {"client_id": c1, "requests": 2, "prompt_tokens": 30, "completion_tokens": 10,
                        "total_tokens": 40, "images": 0, "value_usd": "0.0003", "value_micros": 300}
    assert admin.get(f"/api/admin/clients/{c2}/earnings").json()["value_micros"] == 57
    r = admin.get("/api/admin/clients/cl_nope/earnings")
    assert r.status_code == 404 and r.json()["error"]["code"] == "client_not_found"


@pytest.mark.parametrize("query, param", [
    ("since=yesterday", "since"),
    ("since=2026-01-01T00:00:00", "since"),  # no zone
    ("until=2026-01-01", "until"),
    ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
    ("key=", "key"),
    ("client=" + "c" * 201, "client"),
    ("kee=key_1", "kee"),
    ("key=key_1&key=key_2", "key"),
])
def test_bad_usage_queries_name_the_parameter(admin, query, param):
    r = admin.get(f"/api/admin/usage?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]


# --- clients: show, change, drain, maintenance -------------------------------------------------

def stop_following_client_changes(http):
    """The platform also applies stored client changes within a second; stop that, so that only the
    admin API's own immediate apply can make a live session change."""
    for task in platform_of(http)._tasks:
        if task.get_name() == "client-changes":
            http.portal.call(task.cancel)


def new_client(http, **body):
    made = http.post("/api/admin/clients", json={"name": "box", **body}).json()
    return made["client_id"], made["api_key"]


@contextmanager
def connected(http, client_id, api_key, models=("m1",)):
    """A real client session over the in-process tunnel."""
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                 api_key=api_key, models=list(models), max_concurrent_requests=10)))
        assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
        yield ws


def next_routing(ws):
    while not isinstance(frame := frames.decode(ws.receive_bytes()), frames.Routing):
        pass
    return frame


def chat(http, key):
    return http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                     json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]})


def test_show_and_change_a_connected_client(admin):
    stop_following_client_changes(admin)
    client_id, api_key = new_client(admin, max_concurrent=8, rpm=60)
    shown = admin.get(f"/api/admin/clients/{client_id}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["live"] is None and shown.json()["id"] == client_id and "api_key_hash" not in shown.json()
    with connected(admin, client_id, api_key):
        shown = admin.get(f"/api/admin/clients/{client_id}").json()
        live, health = shown["live"], shown["health"]
        assert live["connected"] is True and live["models"] == ["m1"] and live["max_concurrent"] == 8
        assert (live["priority"], live["weight"], live["draining"], live["drained_by"]) == (0, 1, False, None)
        assert health == {"breaker": "closed", "breaker_retry_in": None, "maintenance": None, "drops_last_hour": 0,
                          "ttft_ms": None, "tokens_per_second": None, "samples": 0, "successes": 0, "failures": 0}
        listed = admin.get("/api/admin/clients").json()["data"]
        assert listed[0]["live"]["connected"] is True and listed[0]["health"] == health

        r = admin.patch(f"/api/admin/clients/{client_id}", json={
            "name": "renamed", "email": "o@x.org", "bridge_url": "http://10.0.0.2:5102", "rpm": 30,
            "max_concurrent": 2, "priority": 7, "weight": 3})
        assert r.status_code == 200, r.text
        changed = r.json()
        assert (changed["name"], changed["email"], changed["bridge_url"]) == ("renamed", "o@x.org",
                                                                           "http://10.0.0.2:5102")
        assert (changed["rpm"], changed["max_concurrent"], changed["priority"], changed["weight"]) == (30, 2, 7, 3)
        # applied to the live session at once, not at the next poll
        session = platform_of(admin).registry.get(client_id)
        assert (session.priority, session.weight, session.max_concurrent, session.rpm) == (7, 3, 2, 30)
        assert (changed["live"]["priority"], changed["live"]["weight"], changed["live"]["rpm"]) == (7, 3, 30)
        # only what is sent changes; null clears the RPM and the email
        r = admin.patch(f"/api/admin/clients/{client_id}", json={"rpm": None, "email": None})
        assert r.json()["rpm"] is None and r.json()["email"] is None and r.json()["priority"] == 7
        assert session.rpm is None and session.limits.unlimited
        assert admin.patch(f"/api/admin/clients/{client_id}", json={}).json()["weight"] == 3
        # the higher max_concurrent is capped by what the client itself said (10)
        admin.patch(f"/api/admin/clients/{client_id}", json={"max_concurrent": 50})
        assert session.max_concurrent == 10
    stored = call(admin, accounts.get_client, platform_of(admin).engine, client_id)
    assert (stored.priority, stored.weight, stored.max_concurrent, stored.rpm) == (7, 3, 50, None)


def test_drain_keeps_work_in_flight_and_takes_no_new_work(admin):
    stop_following_client_changes(admin)
    client_id, api_key = new_client(admin)
    key = admin.post("/api/admin/keys", json={"name": "k"}).json()["key"]
    with connected(admin, client_id, api_key) as ws:
        answer = {}
        in_flight = threading.Thread(target=lambda: answer.update(r=chat(admin, key)))
        in_flight.start()
        while not isinstance(request := frames.decode(ws.receive_bytes()), frames.Request):
            pass

        r = admin.post(f"/api/admin/clients/{client_id}/drain", json={"reason": "moving the box"})
        assert r.status_code == 200, r.text
        assert r.json()["draining"] is True
        assert r.json()["live"]["draining"] is True and r.json()["live"]["drained_by"] == "admin"
        assert platform_of(admin).registry.get(client_id).draining
        assert next_routing(ws) == frames.Routing(draining=True, drain_reason="drained by an administrator")
        refused = chat(admin, key)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_client_available"
        assert "draining" in refused.json()["error"]["message"] and refused.headers["retry-after"]

        # the request in flight finishes normally
        ws.send_bytes(frames.encode(frames.Chunk(id=request.id, events=[[{"index": 0, "delta": {"content": "ok"}}]])))
        ws.send_bytes(frames.encode(frames.End(id=request.id)))
        in_flight.join(10)
        assert answer["r"].status_code == 200, answer["r"].text
        assert answer["r"].json()["choices"][0]["message"]["content"] == "ok"

        r = admin.post(f"/api/admin/clients/{client_id}/undrain")  # no body needed
        assert r.status_code == 200 and r.json()["draining"] is False and r.json()["live"]["draining"] is False
        assert not platform_of(admin).registry.get(client_id).draining
        assert next_routing(ws) == frames.Routing(draining=False)

        # an admin's undrain leaves a drain the client asked for itself
        ws.send_bytes(frames.encode(frames.Drain(draining=True, reason="mine")))
        assert next_routing(ws).draining
        admin.post(f"/api/admin/clients/{client_id}/drain")
        live = admin.post(f"/api/admin/clients/{client_id}/undrain").json()["live"]
        assert live["draining"] is True and live["drained_by"] == "client" and live["drain_reason"] == "mine"
    # stored: a client drained by an admin is still drained when it reconnects
    admin.post(f"/api/admin/clients/{client_id}/drain", content=b"")
    assert call(admin, accounts.get_client, platform_of(admin).engine, client_id).draining
    with connected(admin, client_id, api_key) as ws:
        assert next_routing(ws).draining
        assert admin.get(f"/api/admin/clients/{client_id}").json()["live"]["drained_by"] == "admin"


def test_disabling_a_connected_client_closes_its_session(admin):
    stop_following_client_changes(admin)
    client_id, api_key = new_client(admin)
    with connected(admin, client_id, api_key) as ws:
        session = platform_of(admin).registry.get(client_id)
        r = admin.patch(f"/api/admin/clients/{client_id}", json={"disabled": True})
        assert r.status_code == 200, r.text
        assert r.json()["disabled"] is True
        assert session.closed and session.close_reason == "this client is disabled by an administrator"
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_bytes()
        assert closed.value.code == frames.CLOSE_FORBIDDEN
    eventually(lambda: admin.get(f"/api/admin/clients/{client_id}").json()["live"] is None, what="session gone")
    with admin.websocket_connect("/api/ws") as ws:  # and it cannot come back
        ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                 api_key=api_key, models=["m1"])))
        refused = frames.decode(ws.receive_bytes())
        assert isinstance(refused, frames.Refused) and refused.code == "client_disabled"
    assert admin.patch(f"/api/admin/clients/{client_id}", json={"disabled": False}).json()["disabled"] is False
    with connected(admin, client_id, api_key):
        assert admin.get(f"/api/admin/clients/{client_id}").json()["live"]["connected"] is True


def test_clear_maintenance(admin):
    stop_following_client_changes(admin)
    platform = platform_of(admin)
    client_id, api_key = new_client(admin)
    with connected(admin, client_id, api_key) as ws:
        health = platform.dispatcher.health_of(client_id)
        now = platform.dispatcher.clock()

        def drop_too_many():
            for _ in range(platform.dispatcher.policy.maintenance_drops):
                health.failed(now)
            platform.client_routing_changed(client_id)  # what the dispatcher calls; it stores the state

        admin.portal.call(drop_too_many)
        assert next_routing(ws).maintenance == "dropped 50 requests in the last hour"
        shown = eventually(lambda: (c := admin.get(f"/api/admin/clients/{client_id}").json())["maintenance_reason"]
                           and c, what="maintenance stored")
        assert shown["maintenance_reason"] == "dropped 50 requests in the last hour"
        assert dt.datetime.fromisoformat(shown["maintenance_since"]).tzinfo is not None
        assert shown["health"]["maintenance"] == shown["maintenance_reason"]
        assert shown["health"]["drops_last_hour"] == 50 and shown["health"]["failures"] == 50
        assert admin.get("/api/admin/clients").json()["data"][0]["maintenance_since"] == shown["maintenance_since"]

        r = admin.post(f"/api/admin/clients/{client_id}/clear-maintenance")
        assert r.status_code == 200, r.text
        cleared = r.json()
        assert cleared["maintenance_reason"] is None and cleared["maintenance_since"] is None
        assert cleared["health"]["maintenance"] is None and cleared["health"]["drops_last_hour"] == 0
        assert health.maintenance is None
        assert next_routing(ws).maintenance is None
    # a stored maintenance with no live state (say, from before a restart) clears too
    call(admin, accounts.update_client, platform.engine, client_id, maintenance_reason="by hand",
         maintenance_since=dt.datetime.now(dt.UTC))
    r = admin.post(f"/api/admin/clients/{client_id}/clear-maintenance")
    assert r.json()["maintenance_reason"] is None
    assert call(admin, accounts.get_client, platform.engine, client_id).maintenance_reason is None


@pytest.mark.parametrize("body, param", [
    ({"priority": 1001}, "priority"),
    ({"priority": -1001}, "priority"),
    ({"priority": 1.5}, "priority"),
    ({"weight": 0}, "weight"),
    ({"weight": 1001}, "weight"),
    ({"max_concurrent": 0}, "max_concurrent"),
    ({"max_concurrent": 10_001}, "max_concurrent"),
    ({"max_concurrent": None}, "max_concurrent"),
    ({"rpm": 0}, "rpm"),
    ({"name": ""}, "name"),
    ({"name": None}, "name"),
    ({"email": "nope"}, "email"),
    ({"bridge_url": "ftp://x"}, "bridge_url"),
    ({"disabled": "yes"}, "disabled"),
    ({"draining": True}, "draining"),
    ({"maintenance_reason": None}, "maintenance_reason"),
])
def test_bad_client_changes_name_the_field_and_change_nothing(admin, body, param):
    client_id, _ = new_client(admin)
    before = admin.get(f"/api/admin/clients/{client_id}").json()
    r = admin.patch(f"/api/admin/clients/{client_id}", json={"priority": 5, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]
    assert admin.get(f"/api/admin/clients/{client_id}").json() == before


@pytest.mark.parametrize("body, param", [({"reason": "x" * 201}, "reason"), ({"why": "x"}, "why"),
                                         ({"reason": 5}, "reason")])
def test_bad_drain_bodies_name_the_field(admin, body, param):
    client_id, _ = new_client(admin)
    r = admin.post(f"/api/admin/clients/{client_id}/drain", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = admin.post(f"/api/admin/clients/{client_id}/drain", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert admin.get(f"/api/admin/clients/{client_id}").json()["draining"] is False


@pytest.mark.parametrize("method, path", [("GET", ""), ("PATCH", ""), ("POST", "/drain"), ("POST", "/undrain"),
                                          ("POST", "/clear-maintenance")])
def test_unknown_clients_are_404(admin, method, path):
    r = admin.request(method, f"/api/admin/clients/cl_nope{path}", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "client_not_found", r.text
