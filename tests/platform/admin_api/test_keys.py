"""Consumer keys through the admin API: their lifecycle, their credit, top-ups and adjustments."""

import datetime as dt

from arenahub.platform.storage import billing_store
from tests.platform.support import call, eventually, platform_of


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


def test_malformed_json_and_unknown_ids(admin):
    r = admin.post("/api/admin/keys", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert admin.patch("/api/admin/keys/key_nope", json={"rpm": 5}).status_code == 404
    assert admin.post("/api/admin/keys/key_nope/rotate").status_code == 404


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


def test_top_ups_need_a_live_key(admin):
    for route in ("top-ups", "adjustments"):
        r = admin.post(f"/api/admin/keys/key_nope/{route}", json={"amount": "1"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "key_not_found"
    key_id = admin.post("/api/admin/keys", json={"name": "gone"}).json()["id"]
    admin.delete(f"/api/admin/keys/{key_id}")
    assert admin.post(f"/api/admin/keys/{key_id}/top-ups", json={"amount": "1"}).status_code == 404
    assert platform_of(admin).accounting.ledger.account(key_id).balance == 0
