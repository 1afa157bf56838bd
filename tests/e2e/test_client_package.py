"""The client package on a fresh machine, as its README.txt says: unzip, ./start_client.sh, and the
client connects. start_client.sh makes a new venv, installs the bundled arenahub wheel and its
dependencies from PyPI (pip's cache helps), and starts the bridge with the client inside it. No
LMArena tab is attached: the client connects whatever the bridge's tab state."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

import arenahub

from .harness import Platform, Stack, free_port

ADMIN_TOKEN = "adm-e2e-client-package"
INSTALL_SECONDS = 540.0  # a fresh venv and everything from PyPI; about a minute with pip's cache

pytestmark = [pytest.mark.slow_install, pytest.mark.timeout(INSTALL_SECONDS + 60)]


@pytest.fixture
def platform_env() -> dict[str, str]:
    return {"ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN}


def unzip(archive: Path, folder: Path) -> None:
    """With unzip, as README.txt says; Python's zipfile (applying the recorded modes) where it is missing."""
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-q", str(archive), "-d", str(folder)], check=True, timeout=60)
        return
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            (folder / info.filename).write_bytes(zf.read(info))
            (folder / info.filename).chmod(info.external_attr >> 16 & 0o777)


def fresh_machine_env(port: int) -> dict[str, str]:
    """This environment without the test's venv or arenahub settings: python3 is the machine's own."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ARENAHUB_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))}
    return {**env, "PATH": path, "ARENAHUB_BRIDGE_PORT": str(port)}


def live_client(platform: Platform, client_id: str) -> dict[str, Any] | None:
    resp = httpx.get(platform.url + "/api/admin/clients", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                     timeout=5.0)
    resp.raise_for_status()
    return next(c["live"] for c in resp.json()["data"] if c["id"] == client_id)


def test_unzip_start_client_and_see_it_connect(stack: Stack, platform: Platform, tmp_path: Path) -> None:
    account = stack.admin("create-client", "--name", "packaged", database_url=platform.database_url)
    made = stack.admin("client-package", account["client_id"], "--platform-url", platform.url, "--output",
                       str(tmp_path), database_url=platform.database_url)
    assert made["client_id"] == account["client_id"]
    folder = tmp_path / "lmarena-client"
    unzip(Path(made["path"]), folder)
    assert os.access(folder / "start_client.sh", os.X_OK)

    port = free_port()
    log_path = tmp_path / "start_client.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["./start_client.sh"], cwd=folder, env=fresh_machine_env(port),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def log_tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])

    try:
        live = None
        while live is None or not live["connected"]:
            assert proc.poll() is None, f"start_client.sh exited with {proc.returncode}:\n{log_tail()}"
            assert time.monotonic() - started < INSTALL_SECONDS, (
                f"not connected in {INSTALL_SECONDS:g} s:\n{log_tail()}")
            time.sleep(0.5)
            live = live_client(platform, account["client_id"])
        connected_after = time.monotonic() - started
        assert live["client_version"] == arenahub.__version__
        assert platform.health()["clients_connected"] == 1
        # The client's local endpoints, on the bridge, as README.txt says to check them.
        bridge = f"http://127.0.0.1:{port}"
        health = httpx.get(bridge + "/health", timeout=5.0).json()
        assert health["connected"] is True and health["client_id"] == account["client_id"]
        assert health["healthy"] is False  # no LMArena tab is attached
        assert httpx.get(bridge + "/platform/status", timeout=5.0).json()["state"] == "connected"
        assert httpx.get(bridge + "/bridge/status", timeout=5.0).json()["lmarena"]["browser_connected"] is False
        print(f"start_client.sh: connected {connected_after:.1f} s after it started")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # start_client.sh exec'd the bridge: this stops it
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)
    platform.wait_health(lambda h: h["clients_connected"] == 0, "the packaged client gone after it stopped")
    log = log_path.read_text(errors="replace")
    assert "creating a virtual environment" in log and "installing arenahub" in log

    # A second start finds everything installed and goes straight to the bridge.
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(["./start_client.sh"], cwd=folder, env=fresh_machine_env(port),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        platform.wait_health(lambda h: h["clients_connected"] == 1, "the packaged client back", timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert "installing" not in log_path.read_text(errors="replace")
