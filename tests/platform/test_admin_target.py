"""Which database ``arenahub admin`` uses (``admin/target.py``): it never makes one, says which one it
used, and says in one line, without a traceback, why it cannot use one (issue 12, items 6 and 8)."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from arenahub.cli import main
from arenahub.platform.storage import db
from tests.conftest import PG_URL_ENV, initialised, postgres_base_url

# One of each kind: keys, clients, prices, usage, the catalogue, the admin's credentials.
COMMANDS = [
    ["list-keys"], ["create-key", "--name", "k"], ["show-key", "key_1"], ["create-client", "--name", "c"],
    ["list-clients"], ["set-price", "m", "--prompt", "1", "--completion", "2"], ["usage"], ["models", "list"],
    ["models", "add", "m"], ["reset-admin-token"], ["top-up", "key_1", "5"],
]


def admin(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``arenahub admin ...`` as a process in ``cwd``, with no ARENAHUB_ variable but those in ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ARENAHUB_")}
    return subprocess.run([sys.executable, "-m", "arenahub", "admin", *argv], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """An empty folder to run in, with no ARENAHUB_ variable set (but the tests' own)."""
    for name in list(os.environ):
        if name.startswith("ARENAHUB_") and name != PG_URL_ENV:
            monkeypatch.delenv(name)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def one_line(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_from_an_empty_folder_it_makes_nothing_and_says_where_it_looked(tmp_path):
    done = admin("create-key", "--name", "k", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert one_line(done.stderr) == (
        f"arenahub admin: no database at {tmp_path.resolve()}/.arenahub/arenahub.db (start the platform once here, "
        "or pass --database-url or set ARENAHUB_DATA_DIR to the platform's data folder, or use --platform-url with "
        "the admin token)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv))
def test_no_command_makes_a_database(nowhere, capsys, argv):
    assert main(["admin", *argv]) == 1
    err = one_line(capsys.readouterr().err)
    assert f"no database at {nowhere}/.arenahub/arenahub.db" in err
    assert list(nowhere.iterdir()) == []


def test_a_data_folder_without_a_database_is_named(nowhere, capsys, monkeypatch, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("ARENAHUB_DATA_DIR", str(data))
    assert main(["admin", "list-keys"]) == 1
    err = one_line(capsys.readouterr().err)
    assert f"no database at {data}/arenahub.db" in err and "ARENAHUB_DATA_DIR" in err
    assert list(data.iterdir()) == [] and list(nowhere.iterdir()) == []
    missing = tmp_path / "missing.db"
    assert main(["admin", "list-keys", "--database-url", f"sqlite:///{missing}"]) == 1
    assert f"no database at {missing} (named by --database-url" in one_line(capsys.readouterr().err)
    assert not missing.exists()


def test_it_says_once_which_database_it_used(nowhere, capsys, monkeypatch):
    initialised(f"sqlite:///{nowhere / '.arenahub' / 'arenahub.db'}")  # the platform started here once
    assert main(["admin", "create-key", "--name", "k", "--json"]) == 0
    out, err = capsys.readouterr()
    assert one_line(err) == f"arenahub admin: using sqlite:///{nowhere}/.arenahub/arenahub.db" and '"key"' in out
    monkeypatch.chdir(nowhere.parent)  # elsewhere, the same database by name
    monkeypatch.setenv("ARENAHUB_DATA_DIR", str(nowhere / ".arenahub"))
    assert main(["admin", "list-keys", "--json"]) == 0
    out, err = capsys.readouterr()
    assert one_line(err) == f"arenahub admin: using sqlite:///{nowhere}/.arenahub/arenahub.db" and '"k"' in out


@pytest.mark.postgres
def test_on_postgresql_the_password_is_masked_and_an_empty_database_refused(databases, nowhere, capsys):
    url = databases.new("postgres")
    password = sa.engine.make_url(url).password
    assert main(["admin", "list-keys", "--database-url", url]) == 1
    err = one_line(capsys.readouterr().err)
    assert "has no arenahub tables (named by --database-url" in err
    assert password and f":{password}@" not in err and ":***@" in err
    assert not asyncio.run(_tables(url))  # still empty
    initialised(url)
    assert main(["admin", "list-keys", "--database-url", url]) == 0
    err = one_line(capsys.readouterr().err)
    assert err.startswith("arenahub admin: using postgresql+asyncpg://") and ":***@" in err


async def _tables(url: str) -> list[str]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("url, fragment, code", [
    ("mysql://u:pw@db.example.test/x", "unsupported database URL scheme 'mysql'", 2),
    ("not a url at all", "the database URL cannot be read", 2),
    ("postgresql://u:pw@db.example.test:port/x", "the database URL cannot be read", 2),
    ("sqlite:///:memory:", "an in-memory SQLite database holds nothing", 2),
])
def test_a_url_it_cannot_use_is_one_line(nowhere, capsys, url, fragment, code):
    assert main(["admin", "list-keys", "--database-url", url]) == code
    err = one_line(capsys.readouterr().err)
    assert fragment in err and "pw" not in err
    assert list(nowhere.iterdir()) == []


def test_a_closed_postgresql_port_is_one_line(tmp_path):
    import socket
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = admin("list-keys", cwd=tmp_path, env={"ARENAHUB_DATABASE_URL": f"postgresql://u:pw@127.0.0.1:{port}/x"})
    assert done.returncode == 1
    err = one_line(done.stderr)
    assert err.startswith(f"arenahub admin: cannot use the database postgresql+asyncpg://u:***@127.0.0.1:{port}/x: ")
    assert "Connect call failed" in err or "refused" in err


@pytest.mark.postgres
@pytest.mark.parametrize("change, fragment", [
    ({"password": "wrong-password"}, "password authentication failed"),
    ({"database": "no_such_database_here"}, 'database "no_such_database_here" does not exist'),
])
def test_postgresql_refusing_is_one_line(nowhere, capsys, change, fragment):
    url = postgres_base_url().set(**change).render_as_string(hide_password=False)
    assert main(["admin", "list-keys", "--database-url", url]) == 1
    err = one_line(capsys.readouterr().err)
    assert fragment in err and "wrong-password" not in err


def test_a_file_that_is_no_arenahub_database_is_left_alone(nowhere, capsys):
    garbage, empty, folder = nowhere / "garbage.db", nowhere / "empty.db", nowhere / "folder.db"
    garbage.write_bytes(b"not sqlite")
    empty.touch()
    folder.mkdir()
    assert main(["admin", "list-keys", "--database-url", f"sqlite:///{garbage}"]) == 1
    assert "file is not a database" in one_line(capsys.readouterr().err)
    assert main(["admin", "list-keys", "--database-url", f"sqlite:///{empty}"]) == 1
    assert "has no arenahub tables" in one_line(capsys.readouterr().err)
    assert main(["admin", "list-keys", "--database-url", f"sqlite:///{folder}"]) == 1
    assert f"{folder} is not a database file" in one_line(capsys.readouterr().err)
    assert garbage.read_bytes() == b"not sqlite" and empty.stat().st_size == 0
    assert sorted(p.name for p in nowhere.iterdir()) == ["empty.db", "folder.db", "garbage.db"]


def _at_revision(url: str, revision: str) -> None:
    async def go() -> None:
        engine = db.create_engine(url)
        cfg = db.alembic_config()

        def upgrade(conn: sa.Connection) -> None:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(upgrade)
        finally:
            await engine.dispose()
    asyncio.run(go())


async def _revision(url: str) -> str:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one())
    finally:
        await engine.dispose()


def test_an_older_schema_is_brought_up_to_date_and_a_newer_one_refused(tmp_path, capsys):
    """As a platform start would: an arenahub database made by an older version is migrated."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _at_revision(url, "0001")
    assert main(["admin", "create-key", "--name", "k", "--database-url", url]) == 0
    capsys.readouterr()
    head = asyncio.run(_revision(url))
    assert head != "0001"

    async def from_the_future() -> None:
        engine = db.create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        await engine.dispose()
    asyncio.run(from_the_future())
    assert main(["admin", "list-keys", "--database-url", url]) == 1
    assert "a newer arenahub made it: upgrade this one" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv, env, fragment", [
    (["--admin-token", "adm-x"], {}, "--admin-token goes with --platform-url"),
    (["--platform-url", "http://127.0.0.1:1"], {}, "needs the admin token: set ARENAHUB_ADMIN_TOKEN"),
    ([], {"ARENAHUB_PLATFORM_URL": "http://127.0.0.1:1"}, "needs the admin token"),
    (["--platform-url", "ftp://gw.example.test"], {"ARENAHUB_ADMIN_TOKEN": "adm-x"}, "not an http:// or https://"),
    (["--platform-url", "http://127.0.0.1:1"], {"ARENAHUB_ADMIN_TOKEN": "adm x"}, "holds spaces"),
])
def test_a_target_given_wrongly_is_one_line(nowhere, capsys, monkeypatch, argv, env, fragment):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["admin", "list-keys", *argv]) == 2
    assert fragment in one_line(capsys.readouterr().err)
    assert list(nowhere.iterdir()) == []


def test_database_url_and_platform_url_do_not_go_together(capsys):
    with pytest.raises(SystemExit) as info:
        main(["admin", "list-keys", "--database-url", "sqlite:///x.db", "--platform-url", "http://127.0.0.1:1"])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_database_url_wins_over_the_platform_url_in_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARENAHUB_PLATFORM_URL", "http://127.0.0.1:1")
    url = initialised(f"sqlite:///{tmp_path / 'a.db'}")
    assert main(["admin", "list-keys", "--database-url", url]) == 0
    assert one_line(capsys.readouterr().err) == f"arenahub admin: using sqlite:///{tmp_path / 'a.db'}"
