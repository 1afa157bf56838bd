"""What the admin API refuses: a missing or wrong token on every route, and bad bodies, amounts, prices,
queries and ids, each a 400 or 404 naming what is wrong, with nothing changed.

Every test leaves the data as it found it, so one platform per backend serves the whole module."""

import re

import pytest

from arenahub.platform.admin.api import ROUTES
from tests.platform.support import platform_of, register


@pytest.fixture
def admin(shared_admin):
    return shared_admin


def _fill(path):
    return re.sub(r"\{\w+(:\w+)?\}", "x_1", path)


@pytest.mark.parametrize("spec", ROUTES, ids=lambda s: f"{s.method} {s.path}")
def test_every_route_refuses_a_missing_or_wrong_token(admin, spec):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        r = admin.request(spec.method, "/api/admin" + _fill(spec.path), json={}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token", r.text


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
    before = admin.get("/api/admin/keys").json()["data"]
    r = admin.post("/api/admin/keys", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param
    assert err["message"]
    assert admin.get("/api/admin/keys").json()["data"] == before  # nothing was made


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
    client_id, _ = register(admin)
    before = admin.get(f"/api/admin/clients/{client_id}").json()
    r = admin.patch(f"/api/admin/clients/{client_id}", json={"priority": 5, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]
    assert admin.get(f"/api/admin/clients/{client_id}").json() == before


@pytest.mark.parametrize("body, param", [({"reason": "x" * 201}, "reason"), ({"why": "x"}, "why"),
                                         ({"reason": 5}, "reason")])
def test_bad_drain_bodies_name_the_field(admin, body, param):
    client_id, _ = register(admin)
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
