"""The platform's tunnel endpoint and plain-HTTP client API, in process (no network)."""

import asyncio
import time

import msgspec
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from arenahub.platform.app import create_app
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import accounts
from arenahub.platform.storage.db import create_engine, migrate
from arenahub.protocol import frames
from tests.platform.support import platform_of

ADMIN_TOKEN = "adm-tunnel-tests"


@pytest.fixture
def setup(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"

    async def prepare():
        engine = create_engine(url)
        await migrate(engine)
        client = await accounts.create_client(engine, name="c1", max_concurrent=3)
        _, key = await accounts.create_key(engine, name="k")
        await engine.dispose()
        return client, key

    (client_id, api_key), key = asyncio.run(prepare())
    app = create_app(PlatformSettings(database_url=url, admin_token=ADMIN_TOKEN))
    with TestClient(app) as http:
        yield http, client_id, api_key, key


def hello(client_id, api_key, **kw):
    return frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id, api_key=api_key,
                                      models=["m1"], max_concurrent_requests=10, **kw))


def test_valid_hello_is_welcomed_with_the_lower_concurrency(setup):
    http, cid, ckey, key = setup
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(cid, ckey))
        welcome = frames.decode(ws.receive_bytes())
        assert isinstance(welcome, frames.Welcome)
        assert welcome.client_name == "c1" and welcome.max_concurrent_requests == 3
        models = http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
        assert [m["id"] for m in models["data"]] == ["m1"]
    # Gone once the socket closes.
    models = http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
    assert models["data"] == []


@pytest.mark.parametrize("first, code, close", [
    (lambda cid, k: hello(cid, "ck-wrong"), "invalid_credentials", frames.CLOSE_INVALID_CREDENTIALS),
    (lambda cid, k: hello("cl_nobody", k), "invalid_credentials", frames.CLOSE_INVALID_CREDENTIALS),
    (lambda cid, k: b"{garbage", "protocol_error", frames.CLOSE_PROTOCOL_ERROR),
    (lambda cid, k: frames.encode(frames.Cancel(id="x")), "protocol_error", frames.CLOSE_PROTOCOL_ERROR),
    (lambda cid, k: msgspec.json.encode({"type": "hello", "version": 99, "client_id": cid, "api_key": k}),
     "unsupported_version", frames.CLOSE_UNSUPPORTED_VERSION),
])
def test_bad_hellos_are_refused_with_a_reason(setup, first, code, close):
    http, cid, ckey, _ = setup
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(first(cid, ckey))
        refused = frames.decode(ws.receive_bytes())
        assert isinstance(refused, frames.Refused) and refused.code == code
        assert refused.retry is False and refused.message
        assert ckey not in refused.message
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_bytes()
        assert info.value.code == close


def test_broken_frames_after_hello_get_a_notice_and_the_tunnel_survives(setup):
    http, cid, ckey, key = setup
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(cid, ckey))
        frames.decode(ws.receive_bytes())
        ws.send_text("{not json")
        notice = frames.decode(ws.receive_bytes())
        assert isinstance(notice, frames.Notice) and notice.code == "bad_frame"
        ws.send_bytes(frames.encode(frames.Welcome(version=1, connection_id="x", client_name="x",
                                                   max_concurrent_requests=1)))
        notice = frames.decode(ws.receive_bytes())
        assert notice.code == "unexpected_frame"
        # A chunk for a request that does not exist is dropped silently; heartbeats still work.
        ws.send_bytes(frames.encode(frames.Chunk(id="nope", events=[])))
        ws.send_bytes(frames.encode(frames.Heartbeat(stats=frames.ClientStats(requests_processed=1),
                                                     models=["m1", "m2"])))
        for _ in range(50):
            health = http.get("/api/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
            if "m2" in health["models"]:
                break
        assert health["clients_connected"] == 1 and health["models"] == ["m1", "m2"]


@pytest.mark.parametrize("session", [
    frames.SessionStatus(session_valid=False),
    # The arena.ai tab closed: nothing else is wrong, but the bridge cannot answer until one is open again.
    frames.SessionStatus(browser_connected=False, state="no_tab", action="open arena.ai in the browser"),
    frames.SessionStatus(browser_connected=True, state="signed_out"),
])
def test_unhealthy_session_status_takes_the_client_out_of_rotation(setup, session):
    http, cid, ckey, key = setup
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(cid, ckey, session=session))
        frames.decode(ws.receive_bytes())
        r = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "m1", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "no_client_available"
        assert "unhealthy" in r.json()["error"]["message"]
        assert r.headers["retry-after"]


def test_http_register_and_heartbeat(setup):
    http, cid, ckey, key = setup
    auth = {"Authorization": f"Bearer {ckey}", "X-Client-ID": cid}
    r = http.put(f"/api/clients/{cid}/status", headers=auth, json={"models": ["m9"], "client_version": "1.0"})
    assert r.status_code == 200
    assert r.json()["registered"] is True and r.json()["tunnel_url"].endswith("/api/ws")
    r = http.post(f"/api/clients/{cid}/heartbeat", headers=auth,
                  json={"stats": {"requests_processed": 3, "success_rate": 99.0}, "session": {"session_valid": True}})
    assert r.status_code == 200 and r.json() == {"ok": True, "client_id": cid, "connected": False}
    # A known model with no connected client is a 503, not a 404.
    r = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                  json={"model": "m9", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503


@pytest.mark.parametrize("headers, body, status, code", [
    ({"Authorization": "Bearer ck-wrong"}, b"{}", 401, "invalid_credentials"),
    ({}, b"{}", 401, "invalid_api_key"),
    ({"X-Client-ID": "cl_other"}, b"{}", 400, "invalid_request"),
    ({}, b"{nope", 400, "invalid_json"),
    ({}, b'{"stats": {"requests_processed": "lots"}}', 400, "invalid_request"),
])
def test_http_client_api_rejects_bad_input(setup, headers, body, status, code):
    http, cid, ckey, _ = setup
    base = {"Authorization": f"Bearer {ckey}"} if "Authorization" not in headers and status != 401 else {}
    r = http.post(f"/api/clients/{cid}/heartbeat", headers={**base, **headers}, content=body)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert ckey not in r.text


def test_unknown_paths_and_methods_use_the_error_envelope(setup):
    http, *_ = setup
    r = http.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_path"
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_a_key_limited_to_some_models_sees_and_uses_only_those(setup, tmp_path):
    http, cid, ckey, key = setup
    engine_url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"

    async def restrict():
        engine = create_engine(engine_url)
        keys = await accounts.list_keys(engine)
        await accounts.update_key(engine, keys[0].id, allowed_models=["m2"])
        await engine.dispose()

    asyncio.run(restrict())
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=cid, api_key=ckey,
                                                 models=["m1", "m2"])))
        frames.decode(ws.receive_bytes())
        for _ in range(100):  # the key cache refreshes within about a second
            models = http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
            if [m["id"] for m in models["data"]] == ["m2"]:
                break
            time.sleep(0.05)
        assert [m["id"] for m in models["data"]] == ["m2"]
        r = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "m1", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"


def test_frames_for_unknown_requests_are_counted_and_logged_at_a_bounded_rate(setup, caplog):
    http, cid, ckey, _ = setup
    caplog.set_level("INFO", logger="arenahub.platform.tunnel")
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(cid, ckey))
        frames.decode(ws.receive_bytes())
        for i in range(40):
            ws.send_bytes(frames.encode(frames.Chunk(id=f"nope-{i}\nWARNING forged", events=[])))
        ws.send_bytes(frames.encode(frames.End(id="nope-end")))
        for _ in range(100):
            metrics = http.get("/metrics").text
            if 'event="unknown_request"} 41.0' in metrics:
                break
            time.sleep(0.02)
        assert (f'arenahub_client_protocol_events_total{{client="{cid}",event="unknown_request",'
                f'platform_instance="{platform_of(http).instance_id}"}} 41.0') in metrics
    lines = [r.getMessage() for r in caplog.records if "requests not in flight" in r.getMessage()]
    assert len(lines) == 1 and "nope-0" in lines[0]


def test_health_tells_a_stranger_only_whether_the_platform_serves(setup):
    http, cid, ckey, _ = setup
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(cid, ckey))
        frames.decode(ws.receive_bytes())
        assert http.get("/api/health").json() == {"status": "ok", "serving": True}
        full = http.get("/api/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        assert full["models"] == ["m1"] and full["clients_connected"] == 1
        assert full["instance"] == full["cluster"]["instances"][0]["id"] and full["instance"].count("-") >= 2
        assert full["cluster"]["shared_state"] == "in_process"
        wrong = http.get("/api/health", headers={"Authorization": "Bearer adm-wrong"})  # e.g. a consumer key
        assert wrong.status_code == 200 and wrong.json() == {"status": "ok", "serving": True}
    assert http.get("/api/health").json() == {"status": "ok", "serving": False}


def test_a_client_that_reads_batches_is_told_so_and_its_batches_are_read_frame_by_frame(setup):
    import threading

    http, cid, ckey, key = setup
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(cid, ckey, capabilities=["chat", frames.BATCHES]))
        welcome = frames.decode(ws.receive_bytes())
        assert isinstance(welcome, frames.Welcome) and welcome.capabilities == [frames.BATCHES]
        answer = {}
        consumer = threading.Thread(target=lambda: answer.update(r=http.post(
            "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
            json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]})))
        consumer.start()
        received = frames.decode_message(ws.receive_bytes())
        request = received[0][0]
        assert isinstance(request, frames.Request)
        # The answer's chunk and end in one message, with a broken frame and a heartbeat between them.
        ws.send_bytes(frames.batch([
            frames.encode(frames.Chunk(id=request.id, events=[[{"index": 0, "delta": {"content": "batched"}}]])),
            b'{"type":"nope"}',
            frames.encode(frames.Heartbeat(stats=frames.ClientStats(), models=["m1", "m3"],
                                           capabilities=["chat", frames.BATCHES])),
            frames.encode(frames.End(id=request.id))]))
        consumer.join(10)
        assert answer["r"].status_code == 200
        assert answer["r"].json()["choices"][0]["message"]["content"] == "batched"
        notice = frames.decode_message(ws.receive_bytes())[0][0]
        assert isinstance(notice, frames.Notice) and notice.code == "bad_frame" and "nope" in notice.message
        health = http.get("/api/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        assert health["models"] == ["m1", "m3"]
        # The dashboard shows what the client serves, not how it reads frames.
        session = platform_of(http).registry.get(cid)
        assert session is not None and session.batches and session.capabilities == ["chat"]
        # Garbage that is neither a frame nor a batch is one bad frame; the tunnel goes on.
        ws.send_bytes(b"[{]")
        notice = frames.decode_message(ws.receive_bytes())[0][0]
        assert isinstance(notice, frames.Notice) and notice.code == "bad_frame"
