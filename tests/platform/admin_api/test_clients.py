"""Clients through the admin API: register, download the package, show and change a connected client,
drain, disable, clear maintenance (real client sessions over the in-process tunnel)."""

import datetime as dt
import threading

import pytest
from starlette.websockets import WebSocketDisconnect

from arenahub.platform.storage import accounts
from arenahub.protocol import frames
from tests.platform.admin_api.support import (
    chat,
    connected,
    next_routing,
    stop_following_client_changes,
)
from tests.platform.support import call, eventually, platform_of, register


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


@pytest.mark.parametrize("asked, written", [
    ("https://gw.example.test", "https://gw.example.test/api"),
    ("https://gw.example.test/", "https://gw.example.test/api"),
    ("http://10.0.0.5:8080/gateway/api", "http://10.0.0.5:8080/gateway/api"),
])
def test_the_package_carries_the_platform_url_asked_for(admin, asked, written):
    """What clients reach may not be what the admin reached (a proxy, another name): ``platform_url`` says it."""
    import io
    import zipfile

    from arenahub import jsonc

    made = admin.post("/api/admin/clients", json={"name": "box"}).json()
    r = admin.post(f"/api/admin/clients/{made['client_id']}/package", params={"platform_url": asked})
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert jsonc.loads(z.read("config.jsonc").decode())["platform_integration"]["platform_url"] == written
    r = admin.post(f"/api/admin/clients/{made['client_id']}/package", params={"platform_url": "ftp://gw"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "platform_url"


def test_a_package_that_cannot_be_made_changes_no_key(admin):
    """A registration stored before its fields were checked (written straight to the database here) makes no
    package: 409, and the old key keeps working, for a connected client too."""
    stop_following_client_changes(admin)
    client_id, api_key = register(admin)
    engine = platform_of(admin).engine
    call(admin, accounts.update_client, engine, client_id, bridge_url="http://box:5102/\x07'$(id)'")
    with connected(admin, client_id, api_key):
        r = admin.post(f"/api/admin/clients/{client_id}/package")
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "package_not_buildable" and "bridge_url" in r.json()["error"]["message"]
        assert platform_of(admin).registry.get(client_id).closed is False
    assert call(admin, accounts.authenticate_client, engine, client_id, api_key) is not None
    # corrected through the API, it makes a package, and only then is the key replaced
    assert admin.patch(f"/api/admin/clients/{client_id}", json={"bridge_url": "http://box:5102"}).status_code == 200
    r = admin.post(f"/api/admin/clients/{client_id}/package")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert call(admin, accounts.authenticate_client, engine, client_id, api_key) is None


def test_show_and_change_a_connected_client(admin):
    stop_following_client_changes(admin)
    client_id, api_key = register(admin, max_concurrent=8, rpm=60)
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
    client_id, api_key = register(admin)
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
    client_id, api_key = register(admin)
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
    client_id, api_key = register(admin)
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
