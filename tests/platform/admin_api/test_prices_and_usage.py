"""Model prices, and what keys spent and clients earned, through the admin API."""

import datetime as dt

from arenahub.platform.billing import DEFAULT_PRICES, Price
from arenahub.platform.storage import billing_store
from tests.platform.admin_api.support import serve, served_earlier
from tests.platform.support import call, eventually, platform_of


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
