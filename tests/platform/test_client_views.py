"""Client views' last hour (`stats_1h`, from the aggregates), `connected` and `healthy`, and
GET /api/admin/status."""

import datetime as dt
import time

import pytest

import arenahub
from arenahub.platform.records import RequestRecord
from arenahub.protocol import frames
from tests.platform.support import register, serving

TOKEN = "adm-views"


@pytest.fixture
def admin(database_url):
    with serving(database_url, TOKEN, routing_strategy="round_robin") as http:
        yield http


def served(http, client_id, ago_minutes, status=200, latency_ms=100.0):
    platform = http.app.state.platform
    platform.writer.add(RequestRecord(
        id=f"req_{client_id}_{ago_minutes}_{status}_{latency_ms}",
        created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=ago_minutes), key_id="key_1", client_id=client_id,
        model="m1", stream=False, status=status, error_code=None if status == 200 else "upstream_error",
        latency_ms=latency_ms, ttft_ms=None, prompt_tokens=1, completion_tokens=1, attempts=1, cost=0))


def test_stats_1h_comes_from_the_last_hour_of_aggregates(admin):
    busy, _ = register(admin, "busy")
    idle, _ = register(admin, "idle")
    for latency in (40.0, 60.0, 70.0):  # answered: all in the (25, 50] and (50, 100] ms buckets
        served(admin, busy, 5, latency_ms=latency)
    served(admin, busy, 20, status=502)
    served(admin, busy, 90)  # before the last hour: not counted
    served(admin, idle, 150)
    admin.portal.call(admin.app.state.platform.writer.flush)

    listed = {c["id"]: c["stats_1h"] for c in admin.get("/api/admin/clients").json()["data"]}
    assert listed[busy]["requests"] == 4 and listed[busy]["success_rate"] == 0.75
    assert 50 < listed[busy]["p50_ms"] <= 100  # the median answer (60 ms), within its bucket
    assert listed[idle] == {"requests": 0, "success_rate": None, "p50_ms": None}
    assert admin.get(f"/api/admin/clients/{busy}").json()["stats_1h"] == listed[busy]


def test_status_and_the_connected_and_healthy_flags(admin):
    client_id, api_key = register(admin, "c")
    status = admin.get("/api/admin/status").json()
    assert status["version"] == status["current_client_version"] == arenahub.__version__
    assert (status["connected_clients"], status["healthy_clients"]) == (0, 0)
    assert (status["active_requests"], status["queue_depth"], status["routing_strategy"]) == (0, 0, "round_robin")
    started = dt.datetime.fromisoformat(status["started_at"])
    assert abs((dt.datetime.now(dt.UTC) - started).total_seconds() - status["uptime_seconds"]) < 5
    assert admin.get("/api/admin/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    shown = admin.get(f"/api/admin/clients/{client_id}").json()
    assert (shown["connected"], shown["healthy"], shown["live"]) == (False, False, None)
    assert shown["platform_instance"] is None

    with admin.websocket_connect("/api/ws") as ws:
        ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                 api_key=api_key, models=["m1"])))
        assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
        shown = admin.get(f"/api/admin/clients/{client_id}").json()
        assert (shown["connected"], shown["healthy"]) == (True, True)
        assert shown["platform_instance"] == admin.app.state.platform.instance_id  # connected to this one
        status = admin.get("/api/admin/status").json()
        assert (status["connected_clients"], status["healthy_clients"]) == (1, 1)

        # Its bridge lost the LMArena session: still connected, no longer healthy.
        ws.send_bytes(frames.encode(frames.Heartbeat(stats=frames.ClientStats(),
                                                     session=frames.SessionStatus(session_valid=False))))
        deadline = time.monotonic() + 5
        while admin.get("/api/admin/status").json()["healthy_clients"] != 0:
            assert time.monotonic() < deadline, "the heartbeat was not applied"
            time.sleep(0.02)
        shown = admin.get(f"/api/admin/clients/{client_id}").json()
        assert (shown["connected"], shown["healthy"]) == (True, False)
        assert admin.get("/api/admin/status").json()["connected_clients"] == 1
