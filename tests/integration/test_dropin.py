"""The drop-in lmarena_platform_integration.py, copied into a bridge's folder as a user would, against a
real platform: run as its own program (a), and mounted into the bridge's app served by uvicorn (b)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import arenahub.integration
from tests.e2e.harness import (
    MODELS,
    READY_SECONDS,
    STOP_SECONDS,
    Client,
    Platform,
    Stack,
    ask,
    consumer_for,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.e2e

DROPIN = Path(arenahub.integration.__file__).parent / "lmarena_platform_integration.py"
SEED_HEALTH = {"enabled", "connected", "healthy", "platform_url", "client_id", "stats"}
SEED_STATS = {"requests_processed", "success_rate", "uptime_seconds"}
BRIDGE_KEY = "bridge-secret"
BRIDGE_MODEL = "dropin-model"
BRIDGE_ANSWER = "an answer from the bridge the drop-in is mounted in"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
def platform(stack: Stack, tmp_path: Path) -> Platform:
    return stack.platform(f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}", {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.2"})


def bridge_folder(tmp_path: Path, integration: dict[str, Any] | None, **top: Any) -> Path:
    """An LMArenaBridge folder: its config.jsonc (own keys, maybe platform_integration) and the copied drop-in."""
    folder = tmp_path / "LMArenaBridge"
    folder.mkdir()
    shutil.copy(DROPIN, folder)
    config = {"version": "2.7.6", "session_id": "", "message_id": "", "id_updater_last_mode": "direct_chat",
              "api_key": "", **top}
    if integration is not None:
        config["platform_integration"] = integration
    (folder / "config.jsonc").write_text("// LMArenaBridge settings\n" + json.dumps(config, indent=2))
    return folder


def integration_for(stack: Stack, platform: Platform) -> dict[str, Any]:
    account = stack.admin("create-client", "--name", "dropin", database_url=platform.database_url)
    return {"enabled": True, "platform_url": platform.api_url, "client_id": account["client_id"],
            "api_key": account["api_key"], "heartbeat_interval_seconds": 0.5, "reconnect_max_delay_seconds": 1.0}


def load_dropin(folder: Path) -> ModuleType:
    """``import lmarena_platform_integration`` as api_server.py beside it does."""
    spec = importlib.util.spec_from_file_location("lmarena_platform_integration", folder / DROPIN.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


# -- a) its own program, beside the bridge ------------------------------------------------------
class DropIn(Client):
    """``python lmarena_platform_integration.py --port P``, started from another folder and without
    ``--config``: it must find the config.jsonc beside itself."""

    def __init__(self, workdir: Path, folder: Path, integration: dict[str, Any]) -> None:
        super().__init__(workdir, "dropin", folder / "config.jsonc", integration["client_id"], integration["api_key"])
        self.script = folder / DROPIN.name
        self.args = ["--port", str(self.port)]

    def start(self) -> DropIn:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARENAHUB_")} | {"PYTHONUNBUFFERED": "1"}
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, str(self.script), *self.args], cwd=self.workdir, env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        return self


def test_run_beside_the_bridge_connects_and_answers(tmp_path: Path, stack: Stack, platform: Platform) -> None:
    upstream = stack.upstream(MODELS)  # stands in for api_server.py: an OpenAI-compatible server
    integration = integration_for(stack, platform)
    folder = bridge_folder(tmp_path, integration, lmarena_bridge_url=upstream.url)
    key = stack.create_key(platform)["key"]
    upstream.wait_ready()
    dropin = DropIn(stack.workdir, folder, integration)
    stack.programs.append(dropin)
    dropin.start()

    health = dropin.wait_http(dropin.url + "/health", lambda r: r.status_code == 200 and r.json()["connected"]
                              and r.json(), what="the drop-in connected")
    assert set(health) == SEED_HEALTH and set(health["stats"]) == SEED_STATS
    assert (health["enabled"], health["healthy"]) == (True, True)
    assert (health["platform_url"], health["client_id"]) == (platform.api_url, integration["client_id"])
    status = dropin.status()
    assert status["config"]["config_file"] == str(folder / "config.jsonc")
    assert status["bridge"]["url"] == upstream.url and set(MODELS) <= set(status["models"])

    with consumer_for(platform, key) as consumer:
        answer = consumer.chat.completions.create(model=MODELS[0], messages=ask("through the drop-in"))
    assert answer.choices[0].message.content == "Echo: through the drop-in"
    dropin.wait_http(dropin.url + "/health", lambda r: r.json()["stats"]["requests_processed"] == 1,
                     what="the request counted")
    # uvicorn re-raises SIGTERM once it has shut down: -SIGTERM is a clean stop too.
    assert dropin.stop() in (0, -signal.SIGTERM)
    platform.wait_health(lambda h: h["clients_connected"] == 0, "the drop-in gone")


def test_run_without_platform_integration_says_what_to_add(tmp_path: Path) -> None:
    folder = bridge_folder(tmp_path, None)
    done = python(str(folder / DROPIN.name), cwd=tmp_path)
    assert done.returncode == 2
    assert "config.jsonc" in done.stderr and "platform_integration" in done.stderr
    assert "client package" in done.stderr


def test_without_arenahub_installed_it_says_how_to_install(tmp_path: Path) -> None:
    folder = bridge_folder(tmp_path, None)
    # -S: no site-packages, so no arenahub (nor its dependencies), as in a bare bridge install.
    done = python("-S", str(folder / DROPIN.name), cwd=tmp_path)
    assert done.returncode == 1
    assert "needs the arenahub package" in done.stderr and "pip install arenahub" in done.stderr
    assert "requirements_platform.txt" in done.stderr and "Traceback" not in done.stderr

    imported = python("-S", "-c", "import lmarena_platform_integration", cwd=folder)
    assert imported.returncode == 1
    assert "ImportError: lmarena_platform_integration needs the arenahub package" in imported.stderr


# -- b) mounted into the bridge's app ------------------------------------------------------------
def bridge_app(events: list[str], seen_keys: list[str | None]) -> Starlette:
    """A stand-in for api_server.py's app: its own lifespan and OpenAI endpoints behind its api_key."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("bridge started")
        yield
        events.append("bridge stopped")

    def authorized(request: Request) -> bool:
        seen_keys.append(request.headers.get("authorization"))
        return request.headers.get("authorization") == f"Bearer {BRIDGE_KEY}"

    async def models(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"error": "bad key"}, status_code=401)
        return JSONResponse({"object": "list", "data": [{"id": BRIDGE_MODEL, "object": "model"}]})

    async def chat(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"error": "bad key"}, status_code=401)
        body = await request.json()
        return JSONResponse({
            "id": "chatcmpl-dropin", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": BRIDGE_ANSWER},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}})

    return Starlette(routes=[Route("/v1/models", models, methods=["GET"]),
                             Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan)


@contextlib.contextmanager
def served(app: Starlette, port: int) -> Iterator[None]:
    """``uvicorn.run(app, ...)`` as api_server.py does, in a thread; stopped (bounded) on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="mounted-bridge", daemon=True)
    thread.start()
    try:
        def started() -> bool:
            assert thread.is_alive(), "the app exited during start-up"
            return server.started
        wait_until(started, READY_SECONDS, "the mounted app to start")
        yield
    finally:
        server.should_exit = True
        thread.join(STOP_SECONDS)
        assert not thread.is_alive(), "the app did not stop"


def test_mounted_into_the_bridge_app_connects_and_answers(tmp_path: Path, stack: Stack, platform: Platform) -> None:
    integration = integration_for(stack, platform)
    # lmarena_bridge_url points elsewhere: mounted, the link relays to the app itself.
    folder = bridge_folder(tmp_path, integration, api_key=BRIDGE_KEY, lmarena_bridge_url="http://127.0.0.1:9")
    key = stack.create_key(platform)["key"]
    events: list[str] = []
    seen_keys: list[str | None] = []
    app = bridge_app(events, seen_keys)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    config = load_dropin(folder).mount(app, port=port)
    assert config.lmarena_bridge_url == url and config.path == folder / "config.jsonc"
    with served(app, port):
        assert events == ["bridge started"]
        health = wait_until(lambda: (h := httpx.get(url + "/health", timeout=5).json())["connected"] and h,
                            15, "the mounted link to connect")
        assert set(health) == SEED_HEALTH and set(health["stats"]) == SEED_STATS
        assert (health["enabled"], health["platform_url"]) == (True, platform.api_url)
        assert health["client_id"] == integration["client_id"]
        # The link asks the app for its models (with the bridge's own key) once the app listens.
        status = wait_until(lambda: (s := httpx.get(url + "/platform/status", timeout=5).json())["models"] and s,
                            15, "the models of the app reaching the link")
        assert status["models"] == [BRIDGE_MODEL] and status["bridge"]["url"] == url
        assert httpx.get(url + "/health", timeout=5).json()["healthy"] is True
        platform.wait_health(lambda h: BRIDGE_MODEL in h["models"], "the app's model offered")

        with consumer_for(platform, key) as consumer:
            answer = consumer.chat.completions.create(model=BRIDGE_MODEL, messages=ask("hello"))
        assert answer.choices[0].message.content == BRIDGE_ANSWER
        assert set(seen_keys) == {f"Bearer {BRIDGE_KEY}"}

        registered = httpx.post(url + "/platform/register", timeout=15)
        assert registered.status_code == 200 and registered.json()["registered"] is True

        # The client's drain endpoints come with the mount: the platform confirms, then routes nothing here.
        drained = httpx.post(url + "/platform/drain", json={"reason": "bridge upgrade"}, timeout=15)
        assert drained.status_code == 200, drained.text
        assert drained.json()["routing"]["draining"] is True and drained.json()["routing"]["drained_by"] == "client"
        assert httpx.post(url + "/platform/drain", content=b"{", timeout=5).status_code == 400
        with consumer_for(platform, key) as consumer, pytest.raises(openai.InternalServerError) as info:
            consumer.chat.completions.create(model=BRIDGE_MODEL, messages=ask("while drained"))
        assert info.value.status_code == 503
        undrained = httpx.post(url + "/platform/undrain", timeout=15)
        assert undrained.status_code == 200 and undrained.json()["routing"]["draining"] is False
        with consumer_for(platform, key) as consumer:
            answer = consumer.chat.completions.create(model=BRIDGE_MODEL, messages=ask("after"))
        assert answer.choices[0].message.content == BRIDGE_ANSWER
    # The link stopped with the app.
    assert events == ["bridge started", "bridge stopped"]
    platform.wait_health(lambda h: h["clients_connected"] == 0, "the mounted client gone")


def test_mounted_without_platform_integration_serves_a_disabled_status(tmp_path: Path) -> None:
    folder = bridge_folder(tmp_path, None)
    events: list[str] = []
    app = bridge_app(events, [])
    load_dropin(folder).mount(app)
    with TestClient(app) as client:
        health = client.get("/health").json()
        assert set(health) == SEED_HEALTH
        assert (health["enabled"], health["connected"]) == (False, False)
        assert client.get("/platform/status").json()["state"] == "disabled"
        assert client.post("/platform/register").status_code == 409
        assert client.post("/platform/drain").status_code == 409
        assert client.post("/platform/undrain").status_code == 409
        assert events == ["bridge started"]
    assert events == ["bridge started", "bridge stopped"]


def test_mount_refuses_twice_and_non_apps(tmp_path: Path) -> None:
    dropin = load_dropin(bridge_folder(tmp_path, None))
    app = bridge_app([], [])
    dropin.mount(app)
    with pytest.raises(ValueError, match="already serves /health"):
        dropin.mount(app)
    with pytest.raises(TypeError, match="FastAPI or Starlette app"):
        dropin.mount(object())


def test_mounted_into_a_fastapi_app(tmp_path: Path) -> None:
    fastapi = pytest.importorskip("fastapi")  # not an arenahub dependency; LMArenaBridge's app is one
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        events.append("bridge started")
        yield
        events.append("bridge stopped")

    app = fastapi.FastAPI(lifespan=lifespan)
    app.get("/v1/models")(lambda: {"object": "list", "data": []})
    load_dropin(bridge_folder(tmp_path, None)).mount(app)
    with TestClient(app) as client:
        assert set(client.get("/health").json()) == SEED_HEALTH
        assert client.get("/v1/models").json() == {"object": "list", "data": []}
    assert events == ["bridge started", "bridge stopped"]
