"""``arenahub admin`` client commands, in process, on both databases: what they store, what they refuse,
and that a running platform applies them."""

import asyncio
import datetime as dt
import json
import time

import pytest
from starlette.testclient import TestClient

from arenahub.cli import main
from arenahub.platform.app import create_app
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import accounts
from arenahub.platform.storage.db import create_engine
from arenahub.protocol import frames
from tests.conftest import initialised


def admin(capsys, *argv):
    """Run ``arenahub admin ...``; returns (exit code, parsed JSON or None, stderr)."""
    code = main(["admin", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def stored(url, client_id):
    async def read():
        engine = create_engine(url)
        try:
            return await accounts.get_client(engine, client_id)
        finally:
            await engine.dispose()
    return asyncio.run(read())


def new_client(capsys, url):
    code, made, err = admin(capsys, "create-client", "--name", "box", "--database-url", url, "--json")
    assert code == 0, err
    return made["client_id"], made["api_key"]


def test_client_commands_store_their_change(platform_database_url, capsys):
    url = platform_database_url
    client_id, _ = new_client(capsys, url)
    code, listed, _ = admin(capsys, "list-clients", "--database-url", url, "--json")
    assert code == 0 and [c["id"] for c in listed] == [client_id] and "api_key_hash" not in listed[0]
    code, shown, _ = admin(capsys, "show-client", client_id, "--database-url", url, "--json")
    assert shown == listed[0] and (shown["priority"], shown["weight"], shown["draining"]) == (0, 1, False)

    code, changed, err = admin(capsys, "update-client", client_id, "--name", "renamed", "--email", "o@x.org",
                               "--bridge-url", "https://box.example.test", "--rpm", "30", "--max-concurrent", "6",
                               "--priority", "-5", "--weight", "3", "--database-url", url, "--json")
    assert code == 0, err
    assert (changed["name"], changed["email"], changed["bridge_url"], changed["rpm"], changed["max_concurrent"],
            changed["priority"], changed["weight"]) == ("renamed", "o@x.org", "https://box.example.test", 30, 6, -5, 3)
    admin(capsys, "update-client", client_id, "--priority", "9", "--database-url", url, "--json")
    account = stored(url, client_id)
    assert (account.priority, account.weight, account.rpm, account.name) == (9, 3, 30, "renamed")  # the rest stays

    assert admin(capsys, "drain-client", client_id, "--database-url", url, "--json")[1]["draining"] is True
    assert stored(url, client_id).draining
    assert admin(capsys, "undrain-client", client_id, "--database-url", url, "--json")[1]["draining"] is False
    assert admin(capsys, "disable-client", client_id, "--database-url", url, "--json")[1]["disabled"] is True
    assert stored(url, client_id).disabled
    assert admin(capsys, "enable-client", client_id, "--database-url", url, "--json")[1]["disabled"] is False

    async def into_maintenance():
        engine = create_engine(url)
        await accounts.update_client(engine, client_id, maintenance_reason="dropped 50 requests in the last hour",
                                     maintenance_since=dt.datetime.now(dt.UTC))
        await engine.dispose()
    asyncio.run(into_maintenance())
    code, shown, _ = admin(capsys, "show-client", client_id, "--database-url", url, "--json")
    assert shown["maintenance_reason"] and dt.datetime.fromisoformat(shown["maintenance_since"])
    code, cleared, _ = admin(capsys, "clear-maintenance", client_id, "--database-url", url, "--json")
    assert cleared["maintenance_reason"] is None and cleared["maintenance_since"] is None
    assert stored(url, client_id).maintenance_reason is None

    assert main(["admin", "list-clients", "--database-url", url]) == 0  # plain text too
    assert client_id in capsys.readouterr().out


@pytest.mark.parametrize("command", ["show-client", "update-client", "drain-client", "undrain-client",
                                     "clear-maintenance", "disable-client", "enable-client"])
def test_unknown_client_is_an_error(tmp_path, capsys, command):
    url = initialised(f"sqlite:///{tmp_path / 'a.db'}")
    extra = ["--priority", "1"] if command == "update-client" else []
    code, _, err = admin(capsys, command, "cl_nope", *extra, "--database-url", url, "--json")
    assert code == 1 and "no client 'cl_nope'" in err


BAD_CLIENT_FLAGS = [
    (["--priority", "1001"], "from -1000 to 1000"),
    (["--priority", "high"], "must be a whole number"),
    (["--weight", "0"], "from 1 to 1000"),
    (["--max-concurrent", "10001"], "from 1 to 10000"),
    (["--max-concurrent", "10000000"], "from 1 to 10000"),
    (["--rpm", "0"], "from 1 to 100000"),
    (["--bridge-url", "ftp://x"], "http://"),
    (["--bridge-url", "http://box:5102/\x07"], "control characters"),
    (["--bridge-url", "http://box:5102/a b"], "no spaces"),
    (["--bridge-url", "http://" + "b" * 500], "at most 500"),
    (["--name", " "], "not starting or ending with a space"),
    (["--name", "box\nWARNING forged"], "without control characters"),
    (["--name", "b" * 201], "1 to 200 characters"),
    (["--email", "o@x.org\r\n"], "email address"),
]


@pytest.mark.parametrize("command, argv, fragment", [
    *(("update-client", argv, fragment) for argv, fragment in BAD_CLIENT_FLAGS),
    *(("create-client", argv, fragment) for argv, fragment in BAD_CLIENT_FLAGS
      if argv[0] not in ("--priority", "--weight"))])  # set after registering, as in the API
def test_bad_client_settings_are_refused_clearly(tmp_path, capsys, command, argv, fragment):
    """The flags of both commands have the rules of the admin API's fields (arenahub.platform.admin.fields)."""
    target = ["cl_1"] if command == "update-client" else ["--name", "box"] if "--name" not in argv else []
    with pytest.raises(SystemExit) as info:
        main(["admin", command, *target, *argv, "--database-url", f"sqlite:///{tmp_path / 'a.db'}"])
    assert info.value.code == 2 and fragment in capsys.readouterr().err
    assert not (tmp_path / "a.db").exists()  # refused before the database is opened


def test_empty_name_is_refused(tmp_path, capsys):
    url = initialised(f"sqlite:///{tmp_path / 'a.db'}")
    client_id, _ = new_client(capsys, url)
    with pytest.raises(SystemExit):
        main(["admin", "update-client", client_id, "--name", " ", "--database-url", url])
    assert "--name" in capsys.readouterr().err and stored(url, client_id).name == "box"


def test_a_running_platform_applies_a_drain_from_the_cli(platform_database_url, capsys):
    database_url = platform_database_url
    client_id, api_key = new_client(capsys, database_url)
    app = create_app(PlatformSettings(database_url=database_url, admin_token="adm-x"))
    with TestClient(app) as http, http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                 api_key=api_key, models=["m1"])))
        assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
        session = app.state.platform.registry.get(client_id)
        assert not session.draining
        assert admin(capsys, "drain-client", client_id, "--database-url", database_url, "--json")[0] == 0
        assert admin(capsys, "update-client", client_id, "--priority", "4", "--database-url", database_url,
                     "--json")[0] == 0
        deadline = time.monotonic() + 5
        while not (session.draining and session.priority == 4):
            assert time.monotonic() < deadline, "the platform did not apply the CLI's change"
            time.sleep(0.05)
        # And the client was told (an earlier Routing frame may say what the hello's own row change read).
        for _ in range(10):
            frame = frames.decode(ws.receive_bytes())
            if isinstance(frame, frames.Routing) and frame.draining:
                break
        else:
            raise AssertionError("the client was not told it is drained")


def test_show_client_reads_as_text_not_as_python(platform_database_url, capsys):
    """Without --json, nested values print as JSON (true, null), not as Python writes them (True, None)."""
    client_id, _ = new_client(capsys, platform_database_url)
    assert main(["admin", "show-client", client_id, "--database-url", platform_database_url]) == 0
    out = capsys.readouterr().out
    assert "draining: false" in out and "last_refusal: null" in out, out
    assert "None" not in out and "False" not in out and "True" not in out, out
