"""The model catalogue in the admin API (/api/admin/catalogue, the live setting model_catalogue), on
both databases, with real client sessions over the in-process tunnel: what a client that claims a model
serves with the catalogue off and on, approvals, refusals, listings, and what is refused.

The platform's own poll (which also applies another process's changes) is stopped, so that what
is checked here is each route applying its change at once."""

import threading

import msgspec
import pytest

from arenahub.platform.storage import accounts
from tests.platform.admin_api.support import connected, stop_following_client_changes
from tests.platform.support import answer, call, next_request, platform_of, register

MODEL = "vendor/gpt-4o:2024.08"  # '/', ':' and '.' travel in bodies and queries


@pytest.fixture
def admin(admin):
    stop_following_client_changes(admin)
    return admin


def consumer_key(http):
    return http.post("/api/admin/keys", json={"name": "consumer"}).json()["key"]


def models_of(http, key):
    r = http.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return {m["id"] for m in r.json()["data"]}


def ask(http, key, model):
    return http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                     json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def served(http, ws, key, model):
    """A request for ``model`` reaches the client on ``ws``, which answers it."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=ask(http, key, model)))
    thread.start()
    request = next_request(ws)
    assert msgspec.json.decode(request.body)["model"] == model
    answer(ws, request, "served")
    thread.join(10)
    assert out["r"].status_code == 200, out["r"].text
    return out["r"]


def catalogue(http, **query):
    r = http.get("/api/admin/catalogue", params=query)
    assert r.status_code == 200, r.text
    return r.json()


def decide(http, client_id, approved, model=MODEL):
    r = http.put("/api/admin/catalogue/decisions", json={"model": model, "client_id": client_id, "approved": approved})
    assert r.status_code == 200, r.text
    return r.json()


def turn(http, on):
    r = http.patch("/api/admin/settings", json={"model_catalogue": on})
    assert r.status_code == 200 and r.json()["values"]["model_catalogue"] is on, r.text


def test_off_by_default_every_offered_model_is_served(admin):
    client_id, api_key = register(admin, "alice")
    key = consumer_key(admin)
    with connected(admin, client_id, api_key, models=(MODEL, "m1")) as ws:
        assert admin.get("/api/admin/settings").json()["values"]["model_catalogue"] is False
        assert models_of(admin, key) == {MODEL, "m1"}
        served(admin, ws, key, MODEL)
        view = catalogue(admin)
        assert view["enabled"] is False and view["models"] == [] and view["refused"] == []
        # What would wait once it is on, so that the operator can decide first.
        assert view["pending"] == [{"client_id": client_id, "client_name": "alice", "model": "m1"},
                                   {"client_id": client_id, "client_name": "alice", "model": MODEL}]
        assert view["pending_total"] == 2 and view["client_names"] == {client_id: "alice"}
        assert admin.get(f"/api/admin/clients/{client_id}").json()["live"]["pending_models"] == []


def test_on_a_claimed_model_waits_for_approval(admin):
    alice, alice_key = register(admin, "alice")
    bob, bob_key = register(admin, "bob")
    key = consumer_key(admin)
    with connected(admin, alice, alice_key, models=(MODEL,)) as ws, \
            connected(admin, bob, bob_key, models=(MODEL,)):
        turn(admin, True)
        assert platform_of(admin).catalogue.enabled
        assert models_of(admin, key) == set()
        refused = ask(admin, key, MODEL)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
        view = catalogue(admin)
        assert view["enabled"] is True
        assert [(p["client_name"], p["model"]) for p in view["pending"]] == [("alice", MODEL), ("bob", MODEL)]
        assert admin.get(f"/api/admin/clients/{alice}").json()["live"]["pending_models"] == [MODEL]

        # Approved: alice serves it at once (the model is listed by the approval); bob still waits.
        assert decide(admin, alice, True) == {"model": MODEL, "client_id": alice, "approved": True, "serving": True}
        assert models_of(admin, key) == {MODEL}
        assert served(admin, ws, key, MODEL).headers["x-arenahub-client"] == alice
        view = catalogue(admin)
        assert view["models"] == [{"model": MODEL, "any_client": False, "approved": [alice], "refused": [],
                                   "serving": [alice]}]
        assert [p["client_id"] for p in view["pending"]] == [bob]
        live = admin.get(f"/api/admin/clients/{alice}").json()["live"]
        assert live["models"] == [MODEL] and live["pending_models"] == []

        # Refused: bob's offer never waits again; forgotten: it waits again.
        assert decide(admin, bob, False)["serving"] is False
        view = catalogue(admin)
        assert view["pending"] == [] and view["models"][0]["refused"] == [bob]
        assert catalogue(admin, client_id=bob)["pending"] == []
        forgotten = admin.delete("/api/admin/catalogue/decisions", params={"model": MODEL, "client_id": bob})
        assert forgotten.status_code == 204
        assert [p["client_id"] for p in catalogue(admin)["pending"]] == [bob]

        # Off again: everything offered is served, approved or not.
        turn(admin, False)
        assert platform_of(admin).registry.get(bob).models == {MODEL}


def test_a_model_listed_for_any_client_and_unlisted(admin):
    client_id, api_key = register(admin, "alice")
    key = consumer_key(admin)
    with connected(admin, client_id, api_key, models=(MODEL, "m1")) as ws:
        turn(admin, True)
        r = admin.put("/api/admin/catalogue/models", json={"model": MODEL, "any_client": True})
        assert r.status_code == 200, r.text
        assert r.json() == {"model": MODEL, "any_client": True, "approved": [], "refused": [], "serving": [client_id],
                            "created": True}
        assert models_of(admin, key) == {MODEL}
        served(admin, ws, key, MODEL)
        assert [p["model"] for p in catalogue(admin)["pending"]] == ["m1"]

        # Listed for approved clients only: the offer waits again.
        r = admin.put("/api/admin/catalogue/models", json={"model": MODEL})
        assert r.json()["created"] is False and r.json()["serving"] == []
        assert models_of(admin, key) == set()
        assert ask(admin, key, MODEL).status_code == 503  # listed: known, but no client may serve it

        # A refusal holds against any_client; unlisting leaves it.
        admin.put("/api/admin/catalogue/models", json={"model": MODEL, "any_client": True})
        decide(admin, client_id, False)
        assert models_of(admin, key) == set()
        assert admin.delete("/api/admin/catalogue/models", params={"model": MODEL}).status_code == 204
        view = catalogue(admin)
        assert view["models"] == [] and view["refused"] == [{"client_id": client_id, "client_name": "alice",
                                                             "model": MODEL}]
        assert ask(admin, key, MODEL).json()["error"]["code"] == "model_not_found"


def test_deleting_a_client_deletes_its_decisions(admin):
    alice, _ = register(admin, "alice")
    bob, _ = register(admin, "bob")
    for client_id in (alice, bob):
        decide(admin, client_id, True)
        decide(admin, client_id, False, model="junk")
    assert admin.delete(f"/api/admin/clients/{alice}").status_code == 204
    view = catalogue(admin)
    assert view["models"][0]["approved"] == [bob]
    assert [r["client_id"] for r in view["refused"]] == [bob]
    assert view["client_names"] == {bob: "bob"}


@pytest.mark.parametrize("method, path, body, query, param", [
    ("PUT", "/catalogue/models", {"model": ""}, None, "model"),
    ("PUT", "/catalogue/models", {"model": "m" * 201}, None, "model"),
    ("PUT", "/catalogue/models", {"model": "bell\u0007"}, None, "model"),
    ("PUT", "/catalogue/models", {"model": "line\nbreak"}, None, "model"),
    ("PUT", "/catalogue/models", {"model": "c1\u0085"}, None, "model"),
    ("PUT", "/catalogue/models", {"model": "m", "any_client": "yes"}, None, "any_client"),
    ("PUT", "/catalogue/models", {"model": "m", "colour": "blue"}, None, "colour"),
    ("PUT", "/catalogue/models", {}, None, "model"),
    ("PUT", "/catalogue/decisions", {"model": "m", "client_id": "cl x", "approved": True}, None, "client_id"),
    ("PUT", "/catalogue/decisions", {"model": "m", "client_id": "c" * 65, "approved": True}, None, "client_id"),
    ("PUT", "/catalogue/decisions", {"model": "m", "client_id": "cl_1"}, None, "approved"),
    ("PUT", "/catalogue/decisions", {"model": "m", "client_id": "cl_1", "approved": 1}, None, "approved"),
    ("DELETE", "/catalogue/models", None, {}, "model"),
    ("DELETE", "/catalogue/models", None, {"model": "m" * 201}, "model"),
    ("DELETE", "/catalogue/decisions", None, {"model": "m"}, "client_id"),
    ("DELETE", "/catalogue/decisions", None, {"model": "m", "client_id": "cl_1", "x": "1"}, "x"),
    ("GET", "/catalogue", None, {"client_id": "bad id"}, "client_id"),
])
def test_bad_input_is_a_400_naming_it_and_changes_nothing(shared_admin, method, path, body, query, param):
    before = shared_admin.get("/api/admin/catalogue").json()
    r = shared_admin.request(method, "/api/admin" + path, json=body, params=query)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert shared_admin.get("/api/admin/catalogue").json() == before


def test_what_does_not_exist_is_a_404_naming_it(shared_admin):
    r = shared_admin.put("/api/admin/catalogue/decisions", json={"model": "m", "client_id": "cl_nobody",
                                                                 "approved": True})
    assert r.status_code == 404 and r.json()["error"]["code"] == "client_not_found"
    r = shared_admin.delete("/api/admin/catalogue/models", params={"model": "never/listed"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_listed"
    r = shared_admin.delete("/api/admin/catalogue/decisions", params={"model": "m", "client_id": "cl_nobody"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "decision_not_found"
    assert shared_admin.get("/api/admin/catalogue").json()["models"] == []


def test_an_offer_with_a_name_no_one_can_approve_never_waits(admin):
    client_id, api_key = register(admin, "alice")
    with connected(admin, client_id, api_key, models=("fine", "bell\u0007", "")):
        turn(admin, True)
        assert [p["model"] for p in catalogue(admin)["pending"]] == ["fine"]
        assert platform_of(admin).registry.get(client_id).models == set()


def test_a_disconnected_clients_stored_offer_waits_too(admin):
    client_id, api_key = register(admin, "alice")
    with connected(admin, client_id, api_key, models=(MODEL,)):
        pass
    stored = call(admin, accounts.get_client, platform_of(admin).engine, client_id)
    assert stored.models == [MODEL]
    view = catalogue(admin, client_id=client_id)
    assert view["pending"] == [{"client_id": client_id, "client_name": "alice", "model": MODEL}]
