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
    ("until=null", "until"),  # a query has no null: the parameter is left out instead
    ("since=null", "since"),
    ("until=2026-01-01T00:00:00Z%0A", "until"),
    ("key=%20key_1", "key"),
    ("client=cl_1%0Aforged", "client"),
])
def test_bad_usage_queries_name_the_parameter(admin, query, param):
    r = admin.get(f"/api/admin/usage?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]


# A client's fields have the same rules on create and on update (arenahub.platform.admin.fields).
BAD_CLIENT_FIELDS = [
    ({"max_concurrent": 10_000_000}, "max_concurrent"),
    ({"max_concurrent": 10_001}, "max_concurrent"),
    ({"max_concurrent": 0}, "max_concurrent"),
    ({"max_concurrent": 2.5}, "max_concurrent"),
    ({"rpm": 0}, "rpm"),
    ({"rpm": 100_001}, "rpm"),
    ({"rpm": "60"}, "rpm"),
    ({"bridge_url": "ftp://x"}, "bridge_url"),
    ({"bridge_url": "http://127.0.0.1:5102/\x07"}, "bridge_url"),
    ({"bridge_url": "http://127.0.0.1:5102\r\nX-Injected: 1"}, "bridge_url"),
    ({"bridge_url": "http://127.0.0.1:5102\n"}, "bridge_url"),
    ({"bridge_url": "http://box/a b"}, "bridge_url"),
    ({"bridge_url": "http://box/'$(id)'"}, "bridge_url"),
    ({"bridge_url": "http://127.0.0.1:99999"}, "bridge_url"),
    ({"bridge_url": "http://"}, "bridge_url"),
    ({"bridge_url": "http://" + "b" * 494}, "bridge_url"),
    ({"name": ""}, "name"),
    ({"name": " "}, "name"),
    ({"name": " box"}, "name"),
    ({"name": "box\nWARNING admin token reset"}, "name"),
    ({"name": "b" * 201}, "name"),
    ({"email": "nope"}, "email"),
    ({"email": "o@x.org\n"}, "email"),
    ({"email": "o@x.org\u0085"}, "email"),
    ({"email": "o" * 320 + "@x.org"}, "email"),
]


@pytest.mark.parametrize("body, param", BAD_CLIENT_FIELDS)
def test_bad_client_registrations_name_the_field_and_make_nothing(admin, body, param):
    before = admin.get("/api/admin/clients").json()["data"]
    r = admin.post("/api/admin/clients", json={"name": "box", **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]
    assert admin.get("/api/admin/clients").json()["data"] == before


def test_a_registration_is_read_as_json_schema_reads_it(admin):
    """4.0 is an integer in JSON Schema, so the OpenAPI document allows it: so does the API."""
    r = admin.post("/api/admin/clients", json={"name": "box", "max_concurrent": 8.0, "rpm": 60.0})
    assert r.status_code == 201, r.text
    shown = admin.get(f"/api/admin/clients/{r.json()['client_id']}").json()
    assert (shown["max_concurrent"], shown["rpm"]) == (8, 60)
    admin.delete(f"/api/admin/clients/{r.json()['client_id']}")


@pytest.mark.parametrize("body, param", [
    *BAD_CLIENT_FIELDS,
    ({"priority": 1001}, "priority"),
    ({"priority": -1001}, "priority"),
    ({"priority": 1.5}, "priority"),
    ({"weight": 0}, "weight"),
    ({"weight": 1001}, "weight"),
    ({"max_concurrent": None}, "max_concurrent"),
    ({"name": None}, "name"),
    ({"bridge_url": None}, "bridge_url"),
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


@pytest.mark.parametrize("query, param", [
    ("stream=null", "stream"), ("stream=1", "stream"), ("stream=True", "stream"), ("limit=5.0", "limit"),
    ("limit=1e2", "limit"), ("limit=+5", "limit"), ("limit=null", "limit"), ("status=null", "status"),
])
def test_query_values_are_what_the_openapi_document_says(admin, query, param):
    """Booleans are true or false, integers JSON integers, and nothing is null, as the document has it."""
    r = admin.get(f"/api/admin/requests?{query}")
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert admin.get("/api/admin/requests?stream=true&limit=5&status=5xx").status_code == 200


@pytest.mark.parametrize("method, path, param", [
    ("GET", "/api/admin/clients/a.b", "client_id"),
    ("GET", "/api/admin/clients/cl_1%0A", "client_id"),
    ("PATCH", "/api/admin/keys/" + "k" * 65, "key_id"),
    ("GET", "/api/admin/requests/r%20001", "request_id"),
    ("PUT", "/api/admin/prices/%20m", "model"),
    ("PUT", "/api/admin/prices/m%07", "model"),
])
def test_path_parameters_are_checked_like_the_rest(admin, method, path, param):
    r = admin.request(method, path, json={"prompt": "1", "completion": "1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


@pytest.mark.parametrize("method, path", [("POST", "/api/admin/keys"), ("PATCH", "/api/admin/keys/key_1"),
                                          ("POST", "/api/admin/clients"), ("PATCH", "/api/admin/clients/cl_1"),
                                          ("PATCH", "/api/admin/settings"), ("PUT", "/api/admin/prices/m")])
def test_a_required_body_is_required(admin, method, path):
    r = admin.request(method, path)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text


def test_bodies_nest_at_most_32_deep(admin):
    def nested(depth):
        return b'{"name": "k", "metadata": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
    r = admin.post("/api/admin/keys", content=nested(33))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    r = admin.post("/api/admin/keys", content=nested(31))
    assert r.status_code == 201, r.text
    admin.delete(f"/api/admin/keys/{r.json()['id']}")


def test_times_out_of_the_calendar_in_utc_are_its_ends(admin):
    """Year 1 at +05:00 is before the first UTC instant Python has: the period starts at that first instant."""
    r = admin.get("/api/admin/usage", params={"since": "0001-01-01T00:00:00+05:00",
                                             "until": "9999-12-31T23:59:59-05:00"})
    assert r.status_code == 200, r.text
    assert r.json()["filters"]["since"] == "0001-01-01T00:00:00+00:00"
    r = admin.get("/api/admin/analytics/summaries", params={"until": "0001-01-01T12:00:00Z"})
    assert r.status_code == 200, r.text
