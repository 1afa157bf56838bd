"""``arenahub admin`` through a running platform's admin API (``--platform-url`` or ARENAHUB_PLATFORM_URL,
with the admin token): the platform is real, served by uvicorn on a loopback port, and the commands
give the same answers as on its database (issue 12, item 6)."""

import io
import json
import os
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arenahub import __version__, jsonc
from arenahub.cli import main
from arenahub.platform.app import create_app
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import accounts, db
from tests.conftest import PG_URL_ENV
from tests.servers import ServerThread

TOKEN = "adm-remote-cli-test-token"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ARENAHUB_") and name != PG_URL_ENV:
            monkeypatch.delenv(name)


@pytest.fixture
def platform(database_url: str, clean_env: None, tmp_path: Path) -> Iterator[str]:
    """A running platform on a fresh database; its URL (no trailing slash). Its data folder is absolute: the
    tests change the working folder under it."""
    settings = PlatformSettings(database_url=database_url, admin_token=TOKEN, credential_failures_per_minute=0,
                                data_dir=tmp_path / "platform")
    server = ServerThread(create_app(settings), lifespan="on").start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.stop()


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder with no database in it, to run the commands in."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def admin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    """``arenahub admin ... --json``: (exit code, what it printed as JSON or None, standard error)."""
    code = main(["admin", *argv, "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, json.loads(out) if code == 0 and out.strip() else None, err


def one_line(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_a_key_made_through_the_platform_works_at_once(platform, elsewhere, capsys, monkeypatch):
    monkeypatch.setenv("ARENAHUB_PLATFORM_URL", platform)
    monkeypatch.setenv("ARENAHUB_ADMIN_TOKEN", TOKEN)
    code, made, err = admin(capsys, "create-key", "--name", "remote", "--rpm", "60")
    assert code == 0, err
    assert one_line(err) == f"arenahub admin: using the platform at {platform} (its admin API; arenahub {__version__})"
    r = httpx.get(platform + "/v1/models", headers={"Authorization": f"Bearer {made['key']}"})
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert list(elsewhere.iterdir()) == []  # no database made here
    monkeypatch.delenv("ARENAHUB_PLATFORM_URL")
    monkeypatch.delenv("ARENAHUB_ADMIN_TOKEN")
    # The flags, with /api on the URL as clients have it: the key is there.
    code, keys, err = admin(capsys, "list-keys", "--platform-url", platform + "/api/", "--admin-token", TOKEN)
    assert code == 0 and [k["name"] for k in keys] == ["remote"] and keys[0]["rpm"] == 60
    assert TOKEN not in err


def test_a_wrong_token_or_no_platform_is_one_line(platform, elsewhere, capsys, monkeypatch):
    monkeypatch.setenv("ARENAHUB_ADMIN_TOKEN", "adm-wrong-token")
    code, _, err = admin(capsys, "create-key", "--name", "k", "--platform-url", platform)
    assert code == 1
    assert one_line(err) == (f"arenahub admin: the platform at {platform} refused the admin token (401 "
                             "invalid_admin_token: Wrong admin token.); check ARENAHUB_ADMIN_TOKEN")
    assert "adm-wrong-token" not in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, _, err = admin(capsys, "list-keys", "--platform-url", closed)
    assert code == 1 and one_line(err).startswith(f"arenahub admin: cannot reach the platform at {closed}: ")
    assert list(elsewhere.iterdir()) == []


def test_what_the_api_cannot_do_is_said_before_anything(platform, elsewhere, capsys, monkeypatch):
    monkeypatch.setenv("ARENAHUB_ADMIN_TOKEN", TOKEN)
    for argv in (["reset-admin-token"], ["set-dashboard-password", "--clear"]):
        code, _, err = admin(capsys, *argv, "--platform-url", "http://127.0.0.1:1")  # not even reached
        assert code == 2 and "has no admin API equivalent: run it where the platform's database is" in one_line(err)


def test_what_the_platform_refuses_is_one_line(platform, elsewhere, capsys, monkeypatch, database_url):
    monkeypatch.setenv("ARENAHUB_PLATFORM_URL", platform)
    monkeypatch.setenv("ARENAHUB_ADMIN_TOKEN", TOKEN)
    # A value out of a field's rules is refused before the platform is asked, in the API's words
    # (test_admin_rules.py); what only the platform can refuse comes back as one line.
    with pytest.raises(SystemExit) as refused:
        admin(capsys, "create-key", "--name", "k", "--email", "not-an-email")
    assert refused.value.code == 2 and "--email: must be an email address" in capsys.readouterr().err

    made = admin(capsys, "create-client", "--name", "box")[1]

    async def corrupt() -> None:  # a registration stored before bridge_url was checked
        engine = db.create_engine(database_url)
        await accounts.update_client(engine, made["client_id"], bridge_url="http://box/\x07'")
        await engine.dispose()
    import asyncio
    asyncio.run(corrupt())
    code, _, err = admin(capsys, "client-package", made["client_id"], "--platform-url", "https://gw.example.test")
    assert code == 1 and "409 package_not_buildable" in err and not list(elsewhere.glob("*.zip"))
    one_line(err.split("\n", 1)[1])  # after the line saying which platform it used


@pytest.mark.parametrize("way", ["database", "api"])
def test_every_command_answers_alike_on_the_database_and_through_the_api(platform, elsewhere, capsys, monkeypatch,
                                                                         database_url, way):
    if way == "api":
        monkeypatch.setenv("ARENAHUB_PLATFORM_URL", platform)
        monkeypatch.setenv("ARENAHUB_ADMIN_TOKEN", TOKEN)
        where: list[str] = []
    else:
        where = ["--database-url", database_url]

    def run(*argv: str) -> object:
        code, out, err = admin(capsys, *argv, *where)
        assert code == 0, err
        return out

    def refused(*argv: str) -> str:
        code, _, err = admin(capsys, *argv, *where)
        assert code == 1, err
        return err

    # clients
    made = run("create-client", "--name", "box", "--max-concurrent", "3")
    cid = made["client_id"]
    assert [c["id"] for c in run("list-clients")] == [cid]
    assert run("show-client", cid)["max_concurrent"] == 3
    changed = run("update-client", cid, "--priority", "7", "--weight", "2")
    assert (changed["priority"], changed["weight"], changed["max_concurrent"]) == (7, 2, 3)
    assert run("drain-client", cid)["draining"] is True
    assert run("undrain-client", cid)["draining"] is False
    assert run("clear-maintenance", cid)["maintenance_reason"] is None
    assert run("disable-client", cid)["disabled"] is True
    assert run("enable-client", cid)["disabled"] is False
    assert "no client 'cl_nope'" in refused("show-client", "cl_nope")
    package = run("client-package", cid, "--platform-url", "https://gw.example.test", "--output",
                  str(elsewhere / "box.zip"))
    assert package == {"path": str(elsewhere / "box.zip"), "client_id": cid}
    with zipfile.ZipFile(elsewhere / "box.zip") as z:
        config = jsonc.loads(z.read("config.jsonc").decode())["platform_integration"]
    assert config["platform_url"] == "https://gw.example.test/api" and config["api_key"] != made["api_key"]

    # keys, credit, prices, usage
    key = run("create-key", "--name", "k", "--credit", "5", "--rpm", "10", "--models", "a,b")
    assert key["key"].startswith("sk-") and key["credit_usd"] == "5.00"
    kid = key["key_id"]
    shown = run("show-key", kid)
    assert (shown["rpm"], shown["allowed_models"], shown["credit"]["balance_usd"]) == (10, ["a", "b"], "5.00")
    assert (run("update-key", kid, "--tpm", "100")["tpm"], shown["unlimited"]) == (100, False)
    assert run("disable-key", kid)["disabled"] is True
    assert run("enable-key", kid)["disabled"] is False
    topped = run("top-up", kid, "2.5", "--note", "invoice 7")
    assert (topped["amount_usd"], topped["credit"]["balance_usd"]) == ("2.50", "7.50")
    rotated = run("rotate-key", kid)
    assert rotated["key"] != key["key"] and [k["id"] for k in run("list-keys")] == [kid]
    assert run("set-price", "vendor/m 1", "--prompt", "1", "--completion", "2")["prompt_per_1m_usd"] == "1.00"
    assert run("usage", "--key", kid, "--since", "2026-01-01")["total"]["requests"] == 0
    assert "no key 'key_nope'" in refused("show-key", "key_nope")

    # the model catalogue
    assert run("models", "add", "vendor/m:1")["created"] is True
    assert run("models", "approve", "vendor/m:1", cid)["approved"] is True
    listed = run("models", "list")["models"]
    assert [(m["model"], m["approved"]) for m in listed] == [("vendor/m:1", [cid])]
    assert run("models", "refuse", "vendor/m:1", cid)["approved"] is False
    assert run("models", "forget", "vendor/m:1", cid)["forgotten"] is True
    assert "no decision" in refused("models", "forget", "vendor/m:1", cid)
    assert run("models", "remove", "vendor/m:1")["removed"] is True
    assert "not listed" in refused("models", "remove", "vendor/m:1")
    assert "no client 'cl_nope'" in refused("models", "approve", "m", "cl_nope")

    # the dashboard password, and deleting
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert run("set-dashboard-password", "--password-stdin") == {"password_set": True}
    assert run("delete-key", kid)["deleted"] is True
    assert "no key" in refused("delete-key", kid)
    assert run("delete-client", cid, "--yes") == {"deleted": True, "id": cid}
    assert "no client" in refused("show-client", cid)
