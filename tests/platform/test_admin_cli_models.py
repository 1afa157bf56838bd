"""``arenahub admin models ...``, in process, on both databases: what the commands store and print, what
they refuse, and that a running platform applies them within about a second."""

import asyncio
import json

import pytest

from arenahub.cli import main
from arenahub.platform.storage import accounts, catalogue_store
from arenahub.platform.storage.db import create_engine
from tests.conftest import initialised
from tests.platform.support import call, connected, eventually, platform_of, register, serving

MODEL = "vendor/gpt-4o:2024.08"


def models(capsys, *argv, url):
    """Run ``arenahub admin models ... --json``; returns (exit code, parsed JSON or None, stderr)."""
    code = main(["admin", "models", *argv, "--database-url", url, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def client(capsys, url, name="box"):
    assert main(["admin", "create-client", "--name", name, "--database-url", url, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["client_id"]


async def _stored_claim(url, client_id, claimed):
    engine = create_engine(url)
    try:
        await accounts.record_client_hello(engine, client_id, claimed, "1.0")
    finally:
        await engine.dispose()


def test_the_commands_store_their_change(platform_database_url, capsys):
    url = platform_database_url
    alice, bob = client(capsys, url, "alice"), client(capsys, url, "bob")
    asyncio.run(_stored_claim(url, bob, [MODEL, "m1"]))

    assert models(capsys, "add", "open", url=url)[1] == {"model": "open", "any_client": False, "created": True}
    assert models(capsys, "add", "open", "--any-client", url=url)[1]["created"] is False
    assert models(capsys, "approve", MODEL, alice, url=url)[1] == {"model": MODEL, "client_id": alice,
                                                                   "approved": True}
    assert models(capsys, "refuse", "m1", bob, url=url)[1]["approved"] is False
    code, view, _ = models(capsys, "list", url=url)
    assert code == 0 and view["enabled"] is False
    assert view["models"] == [{"model": "open", "any_client": True, "approved": [], "refused": []},
                              {"model": MODEL, "any_client": False, "approved": [alice], "refused": []}]
    assert view["pending"] == [{"client_id": bob, "client_name": "bob", "model": MODEL}]  # m1 was refused
    assert view["refused"] == [{"client_id": bob, "client_name": "bob", "model": "m1"}]

    assert models(capsys, "forget", "m1", bob, url=url)[1] == {"forgotten": True, "model": "m1", "client_id": bob}
    assert models(capsys, "remove", "open", url=url)[1] == {"removed": True, "model": "open"}
    code, view, _ = models(capsys, "list", url=url)
    assert [m["model"] for m in view["models"]] == [MODEL]
    assert sorted(p["model"] for p in view["pending"]) == ["m1", MODEL]

    assert main(["admin", "models", "list", "--database-url", url]) == 0  # plain text too
    out = capsys.readouterr().out
    assert "model catalogue: off" in out and f"{MODEL}  approved: alice ({alice})" in out and "bob" in out


def test_what_does_not_exist_is_an_error(tmp_path, capsys):
    url = initialised(f"sqlite:///{tmp_path / 'a.db'}")
    box = client(capsys, url)
    code, _, err = models(capsys, "approve", MODEL, "cl_nope", url=url)
    assert code == 1 and "no client 'cl_nope'" in err
    code, _, err = models(capsys, "remove", MODEL, url=url)
    assert code == 1 and "not listed" in err
    code, _, err = models(capsys, "forget", MODEL, box, url=url)
    assert code == 1 and "no decision" in err
    assert models(capsys, "list", url=url)[1]["models"] == []


@pytest.mark.parametrize("argv, fragment", [
    (["add", ""], "1 to 200 characters"),
    (["add", "m" * 201], "1 to 200 characters"),
    (["add", "bell\x07"], "without control characters"),
    (["approve", MODEL, "cl x"], "letters, digits"),
    (["refuse", MODEL], "CLIENT_ID"),
    (["forget"], "MODEL"),
])
def test_bad_arguments_are_refused_clearly(tmp_path, capsys, argv, fragment):
    with pytest.raises(SystemExit) as info:
        main(["admin", "models", *argv, "--database-url", f"sqlite:///{tmp_path / 'a.db'}"])
    assert info.value.code == 2 and fragment in capsys.readouterr().err
    assert not (tmp_path / "a.db").exists()  # refused before the database is opened


def test_a_running_platform_applies_the_commands(database_url, capsys):
    with serving(database_url, "adm-x") as http:
        client_id, api_key = register(http, "alice")
        with connected(http, client_id, api_key, models=(MODEL, "m1")):
            assert http.patch("/api/admin/settings", json={"model_catalogue": True}).status_code == 200
            session = platform_of(http).registry.get(client_id)
            assert session.models == set()
            code, view, _ = models(capsys, "list", url=database_url)
            assert view["enabled"] is True  # the setting stored from the dashboard
            assert [p["model"] for p in view["pending"]] == ["m1", MODEL]

            assert models(capsys, "approve", MODEL, client_id, url=database_url)[0] == 0
            eventually(lambda: session.models == {MODEL}, what="the CLI's approval applied")
            assert models(capsys, "add", "m1", "--any-client", url=database_url)[0] == 0
            eventually(lambda: session.models == {MODEL, "m1"}, what="the CLI's listing applied")
            assert models(capsys, "remove", MODEL, url=database_url)[0] == 0
            eventually(lambda: session.models == {"m1"}, what="the CLI's unlisting applied")
            listings, _ = call(http, catalogue_store.load, platform_of(http).engine)
            assert set(listings) == {"m1"}
