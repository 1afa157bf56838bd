"""Client versions: clients report theirs in hello and in each heartbeat, the platform stores it and
flags clients older than the version its client package ships; unknown versions are never outdated."""

import asyncio
import dataclasses
import json
from itertools import pairwise
from pathlib import Path

import pytest

import arenahub
from arenahub.cli import main
from arenahub.client.config import ClientConfig
from arenahub.client.link import PlatformLink
from arenahub.client.stats import Stats
from arenahub.client.tunnel import Tunnel
from arenahub.platform import client_package
from arenahub.platform.client_versions import current_client_version, is_outdated, version_key
from arenahub.platform.storage import accounts
from arenahub.platform.storage.db import create_engine, migrate
from arenahub.protocol import frames
from tests.platform.support import eventually, register, serving

TOKEN = "adm-versions"
CURRENT = arenahub.__version__


@pytest.fixture
def admin(database_url):
    with serving(database_url, TOKEN, record_flush_seconds=0.05) as http:
        yield http


def hello(client_id, api_key, version):
    return frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id, api_key=api_key,
                                      client_version=version, models=["m1"]))


def stored(http, client_id):
    platform = http.app.state.platform
    return http.portal.call(lambda: accounts.client_view(platform.engine, client_id))


def view(http, client_id):
    r = http.get(f"/api/admin/clients/{client_id}")
    assert r.status_code == 200, r.text
    return r.json()


def test_the_current_version_is_the_one_the_package_ships():
    assert current_client_version() == CURRENT
    assert client_package.WheelCache().get().version == CURRENT


def test_a_heartbeat_reports_the_version_and_it_is_stored(admin):
    client_id, api_key = register(admin)
    with admin.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(client_id, api_key, "0.0.1"))
        assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
        shown = view(admin, client_id)
        assert (shown["version"], shown["current_version"], shown["outdated"]) == ("0.0.1", CURRENT, True)
        assert [c["outdated"] for c in admin.get("/api/admin/clients").json()["data"]] == [True]

        # Updated in place: the next heartbeat says so, no reconnect needed.
        ws.send_bytes(frames.encode(frames.Heartbeat(stats=frames.ClientStats(), client_version=CURRENT)))
        eventually(lambda: view(admin, client_id)["version"] == CURRENT, what="the live version")
        assert view(admin, client_id)["outdated"] is False
        eventually(lambda: stored(admin, client_id)["client_version"] == CURRENT, what="the stored version")
    # Gone from the live state, the stored version still shows.
    eventually(lambda: view(admin, client_id)["live"] is None, what="the disconnect")
    shown = view(admin, client_id)
    assert (shown["version"], shown["outdated"], shown["connected"]) == (CURRENT, False, False)


def test_old_clients_without_the_field_keep_their_hello_version(admin):
    client_id, api_key = register(admin)
    with admin.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(client_id, api_key, "0.0.9"))
        assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
        # What a client from before the field sends: no client_version key at all.
        ws.send_text(json.dumps({"type": "heartbeat", "stats": {"requests_processed": 7}}))
        eventually(lambda: (stored(admin, client_id)["last_stats"] or {}).get("stats", {}).get("requests_processed")
                   == 7, what="the heartbeat stored")
        assert stored(admin, client_id)["client_version"] == "0.0.9"
        shown = view(admin, client_id)
        assert (shown["version"], shown["outdated"]) == ("0.0.9", True)
        assert shown["last_stats"]["stats"]["requests_processed"] == 7


def test_a_version_the_platform_cannot_read_is_not_outdated(admin):
    for reported in ("", "banana", "1.x", "0." * 32):  # the last is as long as the protocol allows
        client_id, api_key = register(admin, reported[:20] or "none")
        with admin.websocket_connect("/api/ws") as ws:
            ws.send_bytes(hello(client_id, api_key, reported))
            assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
            shown = view(admin, client_id)
            assert shown["outdated"] is False and shown["current_version"] == CURRENT, reported
            assert shown["version"] == (reported[:64] or None)
        assert stored(admin, client_id)["client_version"] == reported[:64]


def test_the_http_heartbeat_carries_the_version_too(admin):
    client_id, api_key = register(admin)
    auth = {"Authorization": f"Bearer {api_key}"}
    assert admin.put(f"/api/clients/{client_id}/status", headers=auth, json={"client_version": "0.0.1"}).status_code \
        == 200
    assert view(admin, client_id)["outdated"] is True
    r = admin.post(f"/api/clients/{client_id}/heartbeat", headers=auth, json={"client_version": CURRENT})
    assert r.status_code == 200
    eventually(lambda: stored(admin, client_id)["client_version"] == CURRENT, what="the stored version")
    assert view(admin, client_id)["outdated"] is False


@pytest.mark.parametrize("reported, current, outdated", [
    ("0.0.9", "0.1.0", True), ("0.1", "0.1.0", False), ("0.1.0", "0.1.0", False), ("0.2.0", "0.1.0", False),
    ("0.1.0rc1", "0.1.0", True), ("0.1.0.dev3", "0.1.0a1", True), ("0.1.0.post1", "0.1.0", False),
    ("v0.1.0", "0.1.1", True), ("0.1.0+local.7", "0.1.0", False), ("1!0.1", "2.0", False),
    ("0.9.10", "0.9.9", False), ("0.9.9", "0.9.10", True),
    (None, "0.1.0", False), ("", "0.1.0", False), ("latest", "0.1.0", False), ("0.1.0", "garbage", False),
])
def test_outdated_compares_release_numbers_and_never_guesses(reported, current, outdated):
    assert is_outdated(reported, current) is outdated


def test_versions_sort_as_pep_440_does():
    ordered = ["0.9", "1.0.dev1", "1.0a1.dev1", "1.0a1", "1.0a2.post1", "1.0b1", "1.0rc1", "1.0",
               "1.0.post1.dev1", "1.0.post1", "1.0.1", "1.10", "1!0.1"]
    keys = [version_key(v) for v in ordered]
    assert all(a < b for a, b in pairwise(keys))
    assert version_key("1.0") == version_key("1.0.0") == version_key("V1.0") == version_key("1.0+abc")
    assert version_key("1.0-1") == version_key("1.0.post1")


class _Socket:
    closed = False

    def __init__(self):
        self.sent = []

    async def send_bytes(self, data):
        self.sent.append(frames.decode(data))


class _Relay:
    async def model_list(self):
        return ["m"], None

    async def session_status(self):
        return frames.SessionStatus()


async def test_the_client_sends_its_version_in_each_heartbeat():
    config = ClientConfig(path=Path("config.jsonc"), enabled=True, platform_url="http://platform", client_id="cl_1",
                          api_key="ck-secret")
    link = PlatformLink(dataclasses.replace(config, heartbeat_interval_seconds=0.01), _Relay(), None, Stats(False))
    ws = _Socket()
    beats = asyncio.create_task(link._heartbeats(Tunnel(ws, "http://platform")))
    try:
        while len(ws.sent) < 2:
            await asyncio.sleep(0.01)
    finally:
        beats.cancel()
    assert all(isinstance(f, frames.Heartbeat) and f.client_version == CURRENT for f in ws.sent)


def test_the_cli_shows_versions(tmp_path, capsys):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"

    async def prepare():
        engine = create_engine(url)
        await migrate(engine)
        old, _ = await accounts.create_client(engine, name="old-one")
        new, _ = await accounts.create_client(engine, name="new-one")
        await accounts.record_client_hello(engine, old, ["m"], "0.0.1")
        await accounts.record_client_hello(engine, new, ["m"], CURRENT)
        await engine.dispose()
        return old, new

    old, new = asyncio.run(prepare())
    assert main(["admin", "list-clients", "--database-url", url, "--json"]) == 0
    listed = {c["id"]: c for c in json.loads(capsys.readouterr().out)}
    assert (listed[old]["version"], listed[old]["outdated"], listed[old]["current_version"]) == ("0.0.1", True, CURRENT)
    assert (listed[new]["version"], listed[new]["outdated"]) == (CURRENT, False)
    assert main(["admin", "list-clients", "--database-url", url]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "version 0.0.1 (outdated)" in lines[old] and f"version {CURRENT} " in lines[new]
    assert "outdated" not in lines[new]
    assert main(["admin", "show-client", old, "--database-url", url]) == 0
    shown = capsys.readouterr().out
    assert "outdated: true" in shown and f"current_version: {CURRENT}" in shown and "last_refusal: null" in shown


def test_a_version_longer_than_the_protocol_allows_is_refused_by_name(admin):
    client_id, api_key = register(admin, "long")
    with admin.websocket_connect("/api/ws") as ws:
        ws.send_bytes(hello(client_id, api_key, "0." * 40))
        refused = frames.decode(ws.receive_bytes())
        assert isinstance(refused, frames.Refused) and refused.code == "protocol_error"
        assert "$.client_version" in refused.message and "64" in refused.message
