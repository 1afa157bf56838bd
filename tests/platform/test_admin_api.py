"""The admin API in process, on both databases: token handling, key lifecycle, credit, top-ups, prices,
usage, clients, validation, OpenAPI."""

import asyncio
import datetime as dt
import re
import time

import pytest
from starlette.testclient import TestClient

from arenahub.platform.admin.api import ROUTES
from arenahub.platform.admin.token import load_admin_auth, reset_admin_token
from arenahub.platform.app import create_app
from arenahub.platform.billing import DEFAULT_PRICES, Entry, Kind, Price, Usage
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import billing_store
from arenahub.platform.storage.db import create_engine, migrate

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
    assert admin.post("/api/admin/clients", json={"name": "x", "bridge_url": "ftp://x"}).status_code == 400


def test_openapi_documents_every_route(admin):
    doc = admin.get("/api/admin/openapi.json", headers={"Authorization": ""}).json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/api/admin/keys", "/api/admin/keys/{key_id}", "/api/admin/keys/{key_id}/rotate",
                                 "/api/admin/keys/{key_id}/top-ups", "/api/admin/keys/{key_id}/adjustments",
                                 "/api/admin/clients", "/api/admin/clients/{client_id}/earnings",
                                 "/api/admin/prices", "/api/admin/prices/{model}", "/api/admin/usage"}
    schemas = doc["components"]["schemas"]
    assert {"KeyCreate", "KeyUpdate", "TopUp", "Adjustment", "PriceSet"} <= set(schemas)
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
