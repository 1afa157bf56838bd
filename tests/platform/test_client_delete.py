"""Deleting a client: DELETE /api/admin/clients/{id} and `arenahub admin delete-client`. A connected
client is told why (refused, client_deleted) and disconnected, by this platform at once and by any
other platform on the same database within about a second; its records and ledger entries stay."""

import datetime as dt
import io
import json
import time

import pytest
import sqlalchemy as sa
from starlette.websockets import WebSocketDisconnect

from arenahub.cli import main
from arenahub.platform.billing import Entry, Kind
from arenahub.platform.records import RequestRecord
from arenahub.platform.storage import accounts, billing_store
from arenahub.platform.storage.db import create_engine, migrate
from arenahub.platform.storage.schema import request_records
from arenahub.protocol import frames
from tests.platform.support import connected, register, serving

TOKEN = "adm-delete"


def platform_app(database_url):
    return serving(database_url, TOKEN, record_flush_seconds=0.05)


@pytest.fixture
def admin(database_url):
    with platform_app(database_url) as http:
        yield http


def told_deleted_and_closed(ws):
    """The frames the client gets from now on end with a refusal naming the deletion, then the close."""
    refused = None
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            frame = frames.decode(ws.receive_bytes())
            if isinstance(frame, frames.Refused):
                refused = frame
    assert refused is not None and refused.code == "client_deleted" and refused.retry is False
    assert "deleted" in refused.message
    assert closed.value.code == frames.CLOSE_FORBIDDEN


def history(http, client_id, key_id):
    """A served request of this client: its record and its ledger entries, written to the database."""
    platform = http.app.state.platform
    at = dt.datetime.now(dt.UTC)
    platform.writer.add(RequestRecord(id="req_kept", created_at=at, key_id=key_id, client_id=client_id, model="m1",
                                      stream=False, status=200, error_code=None, latency_ms=12.0, ttft_ms=None,
                                      prompt_tokens=3, completion_tokens=4, attempts=1, cost=70))
    http.portal.call(platform.writer.flush)
    http.portal.call(lambda: billing_store.insert_entries(platform.engine, [
        Entry("le_kept_r", key_id, Kind.RESERVE, 0, 70, at, request_id="req_kept"),
        Entry("le_kept_s", key_id, Kind.SETTLE, -70, -70, at, request_id="req_kept", client_id=client_id,
              model="m1", prompt_tokens=3, completion_tokens=4)]))


def records_of(http, client_id):
    async def read():
        async with http.app.state.platform.engine.connect() as conn:
            return (await conn.execute(sa.select(request_records.c.id)
                                       .where(request_records.c.client_id == client_id))).scalars().all()
    return http.portal.call(read)


def test_deleting_a_connected_client_refuses_it_and_keeps_its_history(admin):
    client_id, api_key = register(admin)
    other_id, _ = register(admin, "stays")
    key_id = admin.post("/api/admin/keys", json={"name": "k"}).json()["id"]
    history(admin, client_id, key_id)
    platform = admin.app.state.platform
    with connected(admin, client_id, api_key) as ws:
        platform.dispatcher.health_of(client_id)  # it has a health record (as when routed to): forgotten too
        r = admin.delete(f"/api/admin/clients/{client_id}")
        assert r.status_code == 204 and r.content == b""
        told_deleted_and_closed(ws)  # already sent when the 204 came

    r = admin.get(f"/api/admin/clients/{client_id}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "client_not_found"
    assert [c["id"] for c in admin.get("/api/admin/clients").json()["data"]] == [other_id]
    assert client_id not in platform.dispatcher.health and platform.refusals.get(client_id) is None
    assert admin.delete(f"/api/admin/clients/{client_id}").status_code == 404  # once only
    # History stays: the request record, and what the ledger says the client earned.
    assert records_of(admin, client_id) == ["req_kept"]
    usage = admin.get("/api/admin/usage", params={"client": client_id}).json()
    assert usage["total"]["requests"] == 1 and usage["by_client"][0]["client_id"] == client_id

    # Its key is no good any more either.
    with admin.websocket_connect("/api/ws") as again:
        again.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                    api_key=api_key, models=["m1"])))
        refused = frames.decode(again.receive_bytes())
        assert isinstance(refused, frames.Refused) and refused.code == "invalid_credentials"


def test_deleting_an_unknown_client_is_a_404(admin):
    r = admin.delete("/api/admin/clients/cl_nobody")
    assert r.status_code == 404 and r.json()["error"]["code"] == "client_not_found"
    r = admin.delete("/api/admin/clients/cl_nobody", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_another_platform_on_the_same_database_disconnects_it_within_a_second(database_url):
    with platform_app(database_url) as first, platform_app(database_url) as second:
        client_id, api_key = register(first)
        with connected(second, client_id, api_key) as ws:
            assert second.get(f"/api/admin/clients/{client_id}").json()["connected"] is True
            started = time.monotonic()
            assert first.delete(f"/api/admin/clients/{client_id}").status_code == 204
            told_deleted_and_closed(ws)
            assert time.monotonic() - started < 3.0  # checked every second; generous for a loaded machine
        assert client_id not in second.app.state.platform.dispatcher.health
        assert second.get(f"/api/admin/clients/{client_id}").status_code == 404


def cli(capsys, *args):
    code = main(["admin", *args])
    out, err = capsys.readouterr()
    return code, out, err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_cli_deletes_and_a_running_platform_follows(database_url, capsys, monkeypatch):
    with platform_app(database_url) as http:
        client_id, api_key = register(http)
        with connected(http, client_id, api_key) as ws:
            # No terminal to ask on and no --yes: nothing happens.
            monkeypatch.setattr("sys.stdin", io.StringIO(""))
            code, _, err = cli(capsys, "delete-client", client_id, "--database-url", database_url)
            assert code == 2 and "--yes" in err
            # On a terminal, anything but yes keeps it.
            monkeypatch.setattr("sys.stdin", _Terminal(""))
            monkeypatch.setattr("builtins.input", lambda question: "n")
            code, _, err = cli(capsys, "delete-client", client_id, "--database-url", database_url)
            assert code == 1 and "not deleted" in err
            assert http.get(f"/api/admin/clients/{client_id}").status_code == 200

            questions = []
            monkeypatch.setattr("builtins.input", lambda question: questions.append(question) or "y")
            started = time.monotonic()
            code, out, _ = cli(capsys, "delete-client", client_id, "--database-url", database_url)
            assert code == 0 and client_id in questions[0] and "deleted client" in out
            told_deleted_and_closed(ws)
            assert time.monotonic() - started < 3.0
        assert http.get(f"/api/admin/clients/{client_id}").status_code == 404

        other_id, _ = register(http, "second")
        code, out, _ = cli(capsys, "delete-client", other_id, "--yes", "--database-url", database_url, "--json")
        assert code == 0 and json.loads(out) == {"deleted": True, "id": other_id}
        code, _, err = cli(capsys, "delete-client", other_id, "--yes", "--database-url", database_url)
        assert code == 1 and f"no client {other_id!r}" in err


async def test_deleting_a_client_leaves_the_others_and_the_storage_call_says_whether_it_did(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await migrate(engine)
    try:
        gone, _ = await accounts.create_client(engine, name="gone")
        kept, _ = await accounts.create_client(engine, name="kept")
        assert await accounts.delete_client(engine, gone) is True
        assert await accounts.delete_client(engine, gone) is False
        assert await accounts.registered_client_ids(engine, {gone, kept, "cl_never"}) == {kept}
        many = {f"cl_{n}" for n in range(1200)} | {kept}  # more ids than one query takes
        assert await accounts.registered_client_ids(engine, many, chunk=500) == {kept}
    finally:
        await engine.dispose()
