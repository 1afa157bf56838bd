"""The client package: its files and modes, a config.jsonc both programs read, a valid wheel, the key
in config.jsonc only; a new key stored only once its package is made, and ``arenahub admin client-package``,
which does so."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

import arenahub
from arenahub.bridge.config import load_bridge_config
from arenahub.client.config import load_client_config
from arenahub.platform.admin import fields, package_keys
from arenahub.platform.client_package import (
    ClientPackageError,
    WheelCache,
    build_client_package,
    build_wheel,
    package_filename,
)
from arenahub.platform.client_package.inputs import package_inputs
from arenahub.platform.storage import accounts, db
from tests.conftest import initialised

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "ck-UnitTestSecret_0123456789abcdefABCDEF"
PLATFORM = "https://gateway.example.test/api"
FILES = {"config.jsonc", "lmarena_platform_integration.py", "requirements_platform.txt", "userscript.js",
         "start_client.sh", "README.txt", f"arenahub-{arenahub.__version__}-py3-none-any.whl"}


@pytest.fixture(scope="module")
def wheel():
    return build_wheel()


@pytest.fixture(scope="module")
def package(wheel) -> zipfile.ZipFile:
    data = build_client_package(platform_url=PLATFORM, client_id="cl_0123abcd", api_key=API_KEY,
                                client_name="Ann's box\n(home)", heartbeat_interval_seconds=15,
                                capabilities=["chat", "models"], max_concurrent_requests=6, wheel=wheel)
    return zipfile.ZipFile(io.BytesIO(data))


def text(package: zipfile.ZipFile, name: str) -> str:
    return package.read(name).decode()


def extract(package: zipfile.ZipFile, folder: Path) -> Path:
    """As unzip does it: with the modes the ZIP records."""
    for info in package.infolist():
        path = folder / info.filename
        path.write_bytes(package.read(info))
        path.chmod(info.external_attr >> 16 & 0o777)
    return folder


def test_the_package_holds_the_files_flat_with_their_modes(package):
    assert {i.filename for i in package.infolist()} == FILES
    modes = {i.filename: i.external_attr >> 16 for i in package.infolist()}
    assert all(i.create_system == 3 for i in package.infolist())  # Unix: unzip applies the modes
    assert modes.pop("start_client.sh") == stat.S_IFREG | 0o755
    assert set(modes.values()) == {stat.S_IFREG | 0o644}
    assert package_filename("cl_0123abcd") == "lmarena-client-cl_0123abcd.zip"


def test_config_is_read_by_the_client_and_by_the_bridge(package, tmp_path):
    path = tmp_path / "config.jsonc"
    path.write_text(text(package, "config.jsonc"))
    client = load_client_config(path)
    assert (client.enabled, client.platform_url, client.client_id, client.api_key) == (
        True, PLATFORM, "cl_0123abcd", API_KEY)
    assert client.heartbeat_interval_seconds == 15 and client.capabilities == ("chat", "models")
    assert client.max_concurrent_requests == 6 and client.lmarena_bridge_url == "http://127.0.0.1:5102"
    assert (client.log_level, client.enable_request_logging, client.enable_performance_monitoring) == (
        "INFO", False, True)
    assert client.bridge_api_key is None and client.allowed_origins == ()
    bridge = load_bridge_config(path)
    assert bridge.platform_integration_enabled and bridge.api_key == ""
    assert bridge.ignored == ()  # every key in it is one the bridge knows
    assert not bridge.ids_captured  # capture-ids fills them in


def test_config_keeps_the_seeds_layout_with_comments(package):
    config = text(package, "config.jsonc")
    assert config.lstrip().startswith("//") and "\n    // " in config
    for key in ("enabled", "platform_url", "client_id", "api_key", "heartbeat_interval_seconds", "capabilities",
                "log_level", "enable_request_logging", "enable_performance_monitoring", "platform_features",
                "preferred_routing_strategy", "max_concurrent_requests", "allowed_origins", "lmarena_bridge_url"):
        assert f'"{key}":' in config, key
    comments = "\n".join(line for line in config.splitlines() if line.strip().startswith("//"))
    assert API_KEY not in comments
    assert "Ann's box (home)" in config  # the name, on one comment line


def test_the_api_key_is_in_config_jsonc_and_nowhere_else(package, wheel):
    for info in package.infolist():
        data = package.read(info)
        assert (API_KEY.encode() in data) == (info.filename == "config.jsonc"), info.filename
    with zipfile.ZipFile(io.BytesIO(wheel.data)) as inner:
        assert not any(API_KEY.encode() in inner.read(name) for name in inner.namelist())


def test_readme_has_this_clients_steps(package):
    readme = text(package, "README.txt")
    for fragment in ("cl_0123abcd", PLATFORM, "./start_client.sh", "Tampermonkey", "userscript.js",
                     "http://127.0.0.1:5102/health", "http://127.0.0.1:5102/platform/status", "regenerated",
                     "update-models", "doctor", "https://arena.ai", "verification_required", "PYTHON=",
                     "ARENAHUB_BRIDGE_PORT", "unzip lmarena-client-cl_0123abcd.zip"):
        assert fragment in readme, fragment


def test_userscript_connects_to_the_bridge_url(wheel):
    def script(bridge_url: str) -> str:
        data = build_client_package(platform_url=PLATFORM, client_id="cl_1", api_key=API_KEY,
                                    bridge_url=bridge_url, wheel=wheel)
        return zipfile.ZipFile(io.BytesIO(data)).read("userscript.js").decode()

    assert 'const BRIDGE_WS_URL = "ws://127.0.0.1:5102/ws";' in script("http://127.0.0.1:5102")
    assert 'const BRIDGE_WS_URL = "ws://localhost:5200/ws";' in script("http://localhost:5200/")
    assert 'const BRIDGE_WS_URL = "wss://bridge.example.test/ws";' in script("https://bridge.example.test")


def test_the_integration_is_the_drop_in(package):
    assert package.read("lmarena_platform_integration.py") == (
        ROOT / "arenahub/integration/lmarena_platform_integration.py").read_bytes()


def test_requirements_are_the_wheel_and_the_ranges_of_pyproject(package, wheel):
    lines = [ln for ln in text(package, "requirements_platform.txt").splitlines() if ln and not ln.startswith("#")]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert lines == [f"./{wheel.filename}", *declared]


def test_the_wheel_is_arenahub_as_it_runs(wheel):
    with zipfile.ZipFile(io.BytesIO(wheel.data)) as whl:
        names = set(whl.namelist())
        info = f"arenahub-{arenahub.__version__}.dist-info"
        record = whl.read(f"{info}/RECORD").decode().splitlines()
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            if name == f"{info}/RECORD":
                continue
            data = whl.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(data)), name
        assert {line.rsplit(",", 2)[0] for line in record} == names
        metadata = whl.read(f"{info}/METADATA").decode()
        assert f"Version: {arenahub.__version__}\n" in metadata and "Requires-Dist: aiohttp" in metadata
        assert "pytest" not in metadata  # no test extras
        assert "arenahub = arenahub.cli:main" in whl.read(f"{info}/entry_points.txt").decode()
        assert "Tag: py3-none-any" in whl.read(f"{info}/WHEEL").decode()
    package_files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "arenahub").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")}
    assert package_files == {n for n in names if not n.startswith(info)}
    assert {"arenahub/bridge/userscript.js", "arenahub/platform/storage/migrations/script.py.mako"} <= names


def test_the_wheel_is_cached_until_the_code_changes():
    cache = WheelCache()
    first = cache.get()
    assert cache.get() is first
    assert build_wheel().data == first.data  # the same code gives the same bytes


def test_start_script_is_posix_sh_and_says_what_is_missing(package, tmp_path):
    folder = extract(package, tmp_path)
    script = folder / "start_client.sh"
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/bin/sh\n")
    for shell in ("sh", "bash", "dash"):
        if shutil.which(shell):
            subprocess.run([shell, "-n", str(script)], check=True)
    env = {"PATH": os.environ["PATH"], "PYTHON": "no-such-python3"}
    done = subprocess.run([str(script)], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "no 'no-such-python3' here: install Python 3.11 or newer" in done.stderr
    done = subprocess.run([str(script)], check=False, cwd=tmp_path, env={**env, "ARENAHUB_BRIDGE_PORT": "x"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "ARENAHUB_BRIDGE_PORT must be a port number" in done.stderr
    (folder / "requirements_platform.txt").unlink()
    done = subprocess.run(["sh", "start_client.sh"], check=False, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1 and "requirements_platform.txt is missing" in done.stderr
    assert not (folder / ".venv").exists()


@pytest.mark.parametrize("change, fragment", [
    ({"platform_url": "ftp://gateway.example.test"}, "platform_url must be an http"),
    ({"platform_url": "https://gateway.example.test/a'b"}, "without spaces or quotes"),
    ({"bridge_url": "http://127.0.0.1:99999"}, "bad port"),
    ({"client_id": "../etc"}, "client_id must be"),
    ({"api_key": ""}, "api_key"),
    ({"heartbeat_interval_seconds": 0}, "heartbeat_interval_seconds"),
    ({"capabilities": []}, "capabilities"),
    ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
])
def test_bad_inputs_are_refused(wheel, change, fragment):
    values = {"platform_url": PLATFORM, "client_id": "cl_1", "api_key": API_KEY, **change}
    with pytest.raises(ClientPackageError, match=fragment):
        build_client_package(**values, wheel=wheel)


# -- a new key, stored only once its package is made -------------------------------------------
async def test_a_new_key_replaces_the_one_the_package_was_made_from(engine: AsyncEngine):
    client_id, old_key = await accounts.create_client(engine, name="box")
    before = await accounts.get_client(engine, client_id)
    made = await package_keys.build(engine, client_id, lambda account, key: key.encode())
    assert made is not None and made.api_key != old_key and made.api_key.startswith("ck-")
    assert made.data == made.api_key.encode() and made.account == before
    assert await accounts.authenticate_client(engine, client_id, old_key) is not None  # nothing stored yet
    assert await package_keys.commit(engine, made)
    assert await accounts.authenticate_client(engine, client_id, old_key) is None
    assert await accounts.authenticate_client(engine, client_id, made.api_key) is not None
    after = await accounts.get_client(engine, client_id)
    assert after.updated_at > before.updated_at and after.name == "box"
    assert await package_keys.build(engine, "cl_missing", lambda account, key: b"") is None


async def test_a_package_made_before_another_one_cannot_replace_its_key(engine: AsyncEngine):
    client_id, _ = await accounts.create_client(engine, name="box")
    first = await package_keys.build(engine, client_id, lambda account, key: b"first")
    second = await package_keys.build(engine, client_id, lambda account, key: b"second")
    assert first is not None and second is not None
    assert await package_keys.commit(engine, second)
    assert not await package_keys.commit(engine, first)  # its key would replace the one delivered in second
    assert await accounts.authenticate_client(engine, client_id, second.api_key) is not None
    assert await accounts.authenticate_client(engine, client_id, first.api_key) is None
    await accounts.delete_client(engine, client_id)
    assert not await package_keys.commit(engine, second)


async def test_a_package_that_cannot_be_made_changes_no_key(engine: AsyncEngine):
    client_id, old_key = await accounts.create_client(engine, name="box")

    def broken(account: accounts.ClientAccount, key: str) -> bytes:
        raise ClientPackageError("bridge_url must be an http:// or https:// URL")

    with pytest.raises(ClientPackageError):
        await package_keys.build(engine, client_id, broken)
    assert await accounts.authenticate_client(engine, client_id, old_key) is not None


@settings(max_examples=200, deadline=None)
@given(url=st.from_regex(msgspec.json.schema(fields.BridgeUrl)["pattern"], fullmatch=True))
def test_every_bridge_url_a_client_may_register_makes_a_package(url):
    package_inputs(platform_url=PLATFORM, client_id="cl_1", api_key=API_KEY, client_name="box", bridge_url=url,
                   heartbeat_interval_seconds=30, capabilities=["chat"], max_concurrent_requests=10_000, made_at=None)


async def authenticates(url: str, client_id: str, api_key: str) -> bool:
    engine = db.create_engine(url)
    try:
        return await accounts.authenticate_client(engine, client_id, api_key) is not None
    finally:
        await engine.dispose()


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENAHUB_")}
    return subprocess.run([sys.executable, "-m", "arenahub", *argv], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_admin_client_package_regenerates_the_key_and_writes_the_zip(tmp_path):
    url = initialised(f"sqlite:///{tmp_path / 'a.db'}")
    made = run("admin", "create-client", "--name", "box", "--max-concurrent", "3", "--database-url", url, "--json",
               cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    client = json.loads(made.stdout)
    out = run("admin", "client-package", client["client_id"], "--platform-url", "http://gw.example.test:8080",
              "--database-url", url, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    path = tmp_path / f"lmarena-client-{client['client_id']}.zip"
    assert result == {"path": str(path), "client_id": client["client_id"]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the key
    (tmp_path / "config.jsonc").write_bytes(zipfile.ZipFile(path).read("config.jsonc"))
    config = load_client_config(tmp_path / "config.jsonc")
    assert config.platform_url == "http://gw.example.test:8080/api" and config.max_concurrent_requests == 3
    assert config.api_key != client["api_key"]
    assert not asyncio.run(authenticates(url, client["client_id"], client["api_key"]))
    assert asyncio.run(authenticates(url, client["client_id"], config.api_key))
    again = run("admin", "client-package", client["client_id"], "--platform-url", "https://gw.example.test/api",
                "--output", str(tmp_path / "out.zip"), "--database-url", url, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith(str(tmp_path / "out.zip"))


def test_admin_client_package_that_cannot_be_made_keeps_the_old_key(tmp_path):
    url = initialised(f"sqlite:///{tmp_path / 'a.db'}")
    made = json.loads(run("admin", "create-client", "--name", "box", "--database-url", url, "--json",
                          cwd=tmp_path).stdout)

    async def corrupt() -> None:  # a registration stored before bridge_url was checked
        engine = db.create_engine(url)
        await accounts.update_client(engine, made["client_id"], bridge_url="http://box/\x07'")
        await engine.dispose()
    asyncio.run(corrupt())
    out = run("admin", "client-package", made["client_id"], "--platform-url", "http://gw.example.test",
              "--database-url", url, cwd=tmp_path)
    assert out.returncode == 1 and "cannot make a package" in out.stderr and "bridge_url" in out.stderr
    assert asyncio.run(authenticates(url, made["client_id"], made["api_key"]))
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".lmarena-client-*"))


@pytest.mark.parametrize("argv, fragment, code", [
    (["cl_nope", "--platform-url", "http://gw.example.test"], "no client 'cl_nope'", 1),
    (["cl_nope", "--platform-url", "gw.example.test"], "must be an http:// or https:// URL", 2),
    (["cl_nope", "--platform-url", "http://gw.example.test", "--output", "/no/such/folder/x.zip"],
     "cannot write into /no/such/folder", 2),
])
def test_admin_client_package_refuses_clearly(tmp_path, argv, fragment, code):
    url = initialised(f"sqlite:///{tmp_path / 'a.db'}")
    out = run("admin", "client-package", *argv, "--database-url", url, cwd=tmp_path)
    assert out.returncode == code and fragment in out.stderr


def test_no_placeholder_is_left_in_any_file_of_the_package(package, wheel):
    """Every @@NAME@@ of the templates is filled (WHEEL_SHA256 once was not: its digits did not match)."""
    import re

    for name in package.namelist():
        if name.endswith(".whl"):
            continue
        data = package.read(name).decode("utf-8", "replace")
        assert not re.search(r"@@[A-Za-z0-9_]+@@", data), (name, re.findall(r"@@[A-Za-z0-9_]+@@", data))
    script = package.read("start_client.sh").decode()
    assert f"WHEEL_SHA256='{wheel.sha256}'" in script


def test_readme_steps_reach_this_clients_bridge_port(wheel):
    """A client registered with its bridge on another port: README.txt's commands talk to that port, not to
    the bridge commands' default (5102), where another bridge may be listening."""
    data = build_client_package(platform_url=PLATFORM, client_id="cl_1", api_key=API_KEY,
                                bridge_url="http://127.0.0.1:40427", wheel=wheel)
    readme = zipfile.ZipFile(io.BytesIO(data)).read("README.txt").decode()
    for command in ("update-models", "doctor"):
        assert f"arenahub bridge {command} --config config.jsonc --bridge-url http://127.0.0.1:40427" in readme
    assert "5102" not in readme
