"""The last refusal of each client: why the platform last refused it or closed its connection, shown in
the client views, kept in memory for registered clients only and persisted for other processes."""

import datetime as dt

import pytest
from starlette.websockets import WebSocketDisconnect

from arenahub.platform.records import RecordWriter
from arenahub.platform.storage import accounts
from arenahub.platform.storage.db import create_engine, migrate
from arenahub.protocol import frames
from tests.platform.support import eventually, register, serving

TOKEN = "adm-refusals"


def platform_app(database_url):
    return serving(database_url, TOKEN, record_flush_seconds=0.05)


@pytest.fixture
def admin(database_url):
    with platform_app(database_url) as http:
        yield http


def hello(client_id, api_key):
    return frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id, api_key=api_key,
                                      models=["m1"]))


def refused_at_connect(http, client_id, api_key):
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(client_id, api_key))
        frame = frames.decode(ws.receive_bytes())
    assert isinstance(frame, frames.Refused)
    return frame


def view(http, client_id):
    r = http.get(f"/api/admin/clients/{client_id}")
    assert r.status_code == 200, r.text
    return r.json()


def refusal(http, client_id):
    return view(http, client_id)["last_refusal"]


def test_a_wrong_key_at_connect_is_remembered_without_the_key(admin):
    client_id, api_key = register(admin)
    assert refusal(admin, client_id) is None
    wrong = "ck-" + "x" * 40
    assert refused_at_connect(admin, client_id, wrong).code == "invalid_credentials"
    last = refusal(admin, client_id)
    assert last["code"] == "invalid_credentials" and "regenerated" in last["message"]
    assert wrong not in str(view(admin, client_id)) and api_key not in str(view(admin, client_id))
    # An id nobody registered leaves nothing behind: the memory holds registered clients only.
    book = admin.app.state.platform.refusals
    assert refused_at_connect(admin, "cl_made_up", wrong).code == "invalid_credentials"
    assert len(book) == 1 and book.get("cl_made_up") is None


def test_disabled_replaced_and_regenerated_are_refusals_with_reasons(admin):
    client_id, api_key = register(admin)
    # Connected twice: the first connection is replaced.
    with admin.websocket_connect("/api/ws") as first:
        first.send_bytes(hello(client_id, api_key))
        assert isinstance(frames.decode(first.receive_bytes()), frames.Welcome)
        with admin.websocket_connect("/api/ws") as second:
            second.send_bytes(hello(client_id, api_key))
            assert isinstance(frames.decode(second.receive_bytes()), frames.Welcome)
            assert refusal(admin, client_id)["code"] == "connection_replaced"
            shown = view(admin, client_id)
            assert shown["connected"] is True  # the refusal stays, and the client shows connected

            # A new package regenerates the key: the live connection is told why and closed.
            assert admin.post(f"/api/admin/clients/{client_id}/package").status_code == 200
            while not isinstance(frame := frames.decode(second.receive_bytes()), frames.Refused):
                pass
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_bytes()
            assert frame.code == "invalid_credentials" and "regenerated" in frame.message
            assert closed.value.code == frames.CLOSE_INVALID_CREDENTIALS
            last = refusal(admin, client_id)
            assert (last["code"], last["message"]) == (frame.code, frame.message)
    eventually(lambda: not view(admin, client_id)["connected"], what="disconnected")


def test_disabled_while_connected_and_at_connect(admin):
    client_id, api_key = register(admin)
    with admin.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(client_id, api_key))
        assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
        assert admin.patch(f"/api/admin/clients/{client_id}", json={"disabled": True}).status_code == 200
        with pytest.raises(WebSocketDisconnect):
            while True:
                ws.receive_bytes()
    closed_at = refusal(admin, client_id)
    assert closed_at["code"] == "client_disabled" and "disabled" in closed_at["message"]
    assert refused_at_connect(admin, client_id, api_key).code == "client_disabled"
    again = refusal(admin, client_id)
    assert again["code"] == "client_disabled"
    assert dt.datetime.fromisoformat(again["at"]) > dt.datetime.fromisoformat(closed_at["at"])


def test_the_last_refusal_survives_heartbeats_and_shows_in_another_process(database_url):
    with platform_app(database_url) as first:
        client_id, api_key = register(first)
        refused_at_connect(first, client_id, "ck-wrong")
        remembered = refusal(first, client_id)
        # Connected again with the right key, heartbeats write the stats beside the stored refusal.
        with first.websocket_connect("/api/ws") as ws:
            ws.send_bytes(hello(client_id, api_key))
            assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
            ws.send_bytes(frames.encode(frames.Heartbeat(stats=frames.ClientStats(requests_processed=5))))
            eventually(lambda: (view(first, client_id)["last_stats"] or {}).get("stats", {})
                       .get("requests_processed") == 5, what="the heartbeat stored")
            shown = view(first, client_id)
            assert shown["connected"] is True and shown["last_refusal"] == remembered
            assert "last_refusal" not in shown["last_stats"]  # shown once, at the top
            with platform_app(database_url) as second:  # another process: reads it from the database
                assert refusal(second, client_id) == remembered
    with platform_app(database_url) as restarted:
        shown = view(restarted, client_id)
        assert shown["last_refusal"] == remembered and shown["connected"] is False
        assert shown["last_stats"]["stats"]["requests_processed"] == 5


def test_missed_heartbeats_and_garbage_are_reasons_too(database_url):
    with serving(database_url, TOKEN, missed_heartbeats=1) as http:
        client_id, api_key = register(http)
        with http.websocket_connect("/api/ws") as ws:  # promises a heartbeat every 0.2 s, then sends none
            ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                     api_key=api_key, heartbeat_interval_seconds=0.2)))
            assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
            last = eventually(lambda: refusal(http, client_id), what="the drop")
        assert last["code"] == "missed_heartbeats" and "heartbeat" in last["message"]

        with http.websocket_connect("/api/ws") as ws:
            ws.send_bytes(hello(client_id, api_key))
            assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
            with pytest.raises(WebSocketDisconnect) as closed:
                for _ in range(30):
                    ws.send_text("{not a frame")
                    ws.receive_bytes()  # the notice about it
            assert closed.value.code == frames.CLOSE_PROTOCOL_ERROR
        assert refusal(http, client_id)["code"] == "protocol_error"


async def test_the_writer_merges_heartbeats_and_refusals_of_a_client(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    await migrate(engine)
    client_id, _ = await accounts.create_client(engine, name="c")
    writer = RecordWriter(engine)
    try:
        writer.client_state(client_id, last_stats={"stats": {"requests_processed": 1}, "session": None})
        writer.client_state(client_id, last_stats={"last_refusal": {"code": "x", "message": "m", "at": "t"}})
        writer.client_state(client_id, last_stats={"stats": {"requests_processed": 2}, "session": None},
                            last_seen_at=dt.datetime.now(dt.UTC))
        writer.client_state("cl_deleted_meanwhile", last_stats={"stats": {}})
        await writer.flush()
        stored = (await accounts.client_view(engine, client_id))["last_stats"]
        assert stored == {"stats": {"requests_processed": 2}, "session": None,
                          "last_refusal": {"code": "x", "message": "m", "at": "t"}}
        # A later heartbeat alone keeps the stored refusal beside it.
        writer.client_state(client_id, last_stats={"stats": {"requests_processed": 3}, "session": None})
        await writer.flush()
        stored = (await accounts.client_view(engine, client_id))["last_stats"]
        assert stored["stats"] == {"requests_processed": 3} and stored["last_refusal"]["code"] == "x"
    finally:
        await engine.dispose()
