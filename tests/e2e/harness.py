"""The real ``arenahub`` programs as processes, on free loopback ports, for end-to-end tests.

A ``Stack`` owns the programs of one test (or one module): it starts them in a work folder,
waits for each to answer on HTTP (bounded), keeps their stdout/stderr in files there, and stops
them with SIGTERM, then SIGKILL. Nothing here knows about pytest; ``conftest.py`` wires it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from arenahub import cli
from arenahub.platform.storage.schema import ledger_entries, request_records
from tests.ports import free_port

# What every local upstream serves unless a test asks for other models.
MODELS = ["e2e-alpha", "e2e-beta"]
# The shared stack's body limit: small, so that a 413 needs no large upload.
SHARED_MAX_BODY_BYTES = 64 * 1024
READY_SECONDS = 30.0
E2E_ADMIN_TOKEN = "adm-e2e-platform"
STOP_SECONDS = 15.0
T = TypeVar("T")


class ProgramFailed(AssertionError):
    """A program exited when it should be running, or never became ready."""


def wait_until(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout`` s.

    A refused or broken HTTP connection counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except httpx.TransportError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class Program:
    """One ``python -m arenahub ...`` process. ``start`` may be called again after ``stop``."""

    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.workdir = workdir
        self.env = env or {}
        self.stdout_path = workdir / f"{name}.stdout.log"
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def start(self) -> Program:
        assert not self.running, f"{self.name} is already running"
        # The test's own ARENAHUB_* settings must not leak into the programs; each passes its own.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARENAHUB_")}
        env.update(PYTHONUNBUFFERED="1", **self.env)
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            err.write(f"---- start: arenahub {' '.join(self.args)}\n".encode())
            err.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "arenahub", *self.args], cwd=self.workdir,
                                         env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        self.paused = False
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProgramFailed(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")

    def wait_http(self, url: str, accept: Callable[[httpx.Response], Any] = lambda r: r.status_code == 200,
                  timeout: float = READY_SECONDS, what: str | None = None,
                  headers: dict[str, str] | None = None) -> Any:
        """Poll ``url`` until ``accept(response)`` is truthy; fail at once if the program exits."""
        seen: list[str] = []

        def probe() -> Any:
            self.check_running()
            resp = httpx.get(url, timeout=2.0, headers=headers)
            seen[:] = [f"HTTP {resp.status_code} {resp.text[:500]}"]
            return accept(resp)

        try:
            return wait_until(probe, timeout, what or f"{self.name} at {url}")
        except TimeoutError as exc:
            raise ProgramFailed(f"{exc}\nlast answer: {seen[0] if seen else None}\n{self.tail()}") from None

    # -- signals ------------------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        if self.running:
            self.signal(signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(STOP_SECONDS)

    def terminate(self) -> None:
        """Ask to stop (SIGTERM) without waiting; a paused program is woken so it can."""
        if self.running:
            if self.paused:
                self.resume()
            self.signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = STOP_SECONDS) -> int:
        """Wait for the exit; SIGKILL after ``timeout``. Returns the exit code."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_SECONDS)
            with open(self.stderr_path, "ab") as err:
                err.write(f"---- harness: no exit {timeout:g} s after SIGTERM; killed\n".encode())
            return self.proc.returncode

    def stop(self, timeout: float = STOP_SECONDS) -> int | None:
        if self.proc is None:
            return None
        self.terminate()
        return self.wait_stopped(timeout)

    # -- logs ---------------------------------------------------------------------------------
    def log(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.stderr_path, self.stdout_path) if p.exists()]
        return "".join(parts)

    def tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.stderr_path, self.stdout_path):
            if path.exists() and path.stat().st_size:
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"== {path.name} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(out) or f"== {self.name}: no output"


class Upstream(Program):
    def __init__(self, workdir: Path, name: str, models: list[str]) -> None:
        self.port = free_port()
        self.models = models
        super().__init__(name, ["local-upstream", "--host", "127.0.0.1", "--port", str(self.port),
                                "--models", ",".join(models), "--name", name], workdir)
        self._ready = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> Upstream:
        if not self._ready:
            self.wait_http(self.url + "/health")
            self._ready = True
        return self

    def stream_stats(self) -> dict[str, int]:
        """What became of the streamed answers it started: started, active, completed, cancelled."""
        resp = httpx.get(self.url + "/__stats", timeout=5.0)
        resp.raise_for_status()
        return resp.json()


class Platform(Program):
    def __init__(self, workdir: Path, name: str, database_url: str, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.database_url = database_url
        # Set, not generated: /api/health tells its details only to the admin (a test's env may set its own).
        self.admin_token = (env or {}).get("ARENAHUB_ADMIN_TOKEN") or E2E_ADMIN_TOKEN
        super().__init__(name, ["platform", "--host", "127.0.0.1", "--port", str(self.port),
                                "--database-url", database_url], workdir,
                         {"ARENAHUB_ADMIN_TOKEN": self.admin_token, **(env or {})})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The clients' ``platform_url``."""
        return self.url + "/api"

    @property
    def v1(self) -> str:
        """The consumers' OpenAI base URL."""
        return self.url + "/v1"

    def wait_ready(self) -> Platform:
        self.wait_http(self.url + "/api/health", lambda r: r.status_code == 200 and r.json()["status"] == "ok")
        return self

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def health(self) -> dict[str, Any]:
        """``/api/health`` as the admin sees it (clients, requests in flight, models)."""
        resp = httpx.get(self.url + "/api/health", headers=self.admin_headers, timeout=5.0)
        resp.raise_for_status()
        return resp.json()

    def wait_health(self, accept: Callable[[dict[str, Any]], bool], what: str, timeout: float = 10.0) -> dict:
        return self.wait_http(self.url + "/api/health", lambda r: r.status_code in (200, 503) and accept(r.json())
                              and r.json(), timeout=timeout, what=f"platform health: {what}",
                              headers=self.admin_headers)


class Client(Program):
    def __init__(self, workdir: Path, name: str, config_path: Path, client_id: str, api_key: str) -> None:
        self.port = free_port()
        self.client_id = client_id
        self.api_key = api_key
        self.config_path = config_path
        super().__init__(name, ["client", "--config", str(config_path), "--host", "127.0.0.1",
                                "--port", str(self.port)], workdir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, Any]:
        resp = httpx.get(self.url + "/platform/status", timeout=5.0)
        resp.raise_for_status()
        return resp.json()

    def health(self) -> dict[str, Any]:
        resp = httpx.get(self.url + "/health", timeout=5.0)
        resp.raise_for_status()
        return resp.json()

    def wait_status(self, accept: Callable[[dict[str, Any]], bool], what: str, timeout: float = 15.0) -> dict:
        return self.wait_http(self.url + "/platform/status",
                              lambda r: r.status_code == 200 and accept(r.json()) and r.json(),
                              timeout=timeout, what=f"{self.name} status: {what}")

    def wait_state(self, state: str, timeout: float = 15.0) -> dict[str, Any]:
        return self.wait_status(lambda s: s["state"] == state, f"state {state!r}", timeout)


def write_client_config(path: Path, *, platform_url: str | list[str], client_id: str, api_key: str, bridge_url: str,
                        heartbeat_interval_seconds: float = 1.0, reconnect_max_delay_seconds: float = 1.0,
                        max_concurrent_requests: int = 8, capabilities: list[str] | None = None) -> Path:
    """A config.jsonc as a client owner writes it: the seed's sections, a comment, a trailing comma."""
    integration = {
        "enabled": True, "platform_url": platform_url, "client_id": client_id, "api_key": api_key,
        "heartbeat_interval_seconds": heartbeat_interval_seconds,
        "reconnect_max_delay_seconds": reconnect_max_delay_seconds,
        **({"capabilities": capabilities} if capabilities is not None else {}),
    }
    body = json.dumps({"platform_integration": integration, "lmarena_bridge_url": bridge_url,
                       "platform_features": {"max_concurrent_requests": max_concurrent_requests}}, indent=2)
    path.write_text("// written by tests/e2e/harness.py\n" + body[:-2] + ",\n}\n")
    return path


class Stack:
    """The programs one test runs; ``stop_all`` ends every one still running."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.programs: list[Program] = []

    def _name(self, base: str) -> str:
        taken = {p.name for p in self.programs}
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    def admin(self, *args: str, database_url: str) -> dict[str, Any]:
        """Run ``arenahub admin ... --json`` and return what it printed.

        The command's own code (``arenahub.cli.main``) runs in this process, in a thread of its own (it
        runs an event loop; the caller's thread may have one): a new Python for each call would cost
        about a second. tests/test_cli.py and tests/platform/test_admin_cli.py run it as a process.
        """
        argv = ["admin", *args, "--database-url", database_url, "--json"]
        out, err = io.StringIO(), io.StringIO()
        done: dict[str, Any] = {}

        def run() -> None:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    done["code"] = cli.main(argv)
                except SystemExit as exc:  # argparse refused the arguments
                    done["code"] = exc.code
                except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                    done["error"] = exc

        thread = threading.Thread(target=run, name="arenahub-admin")
        thread.start()
        thread.join(60)
        if thread.is_alive() or "error" in done or done.get("code") != 0:
            why = "still running after 60 s" if thread.is_alive() else done.get("error") or done.get("code")
            raise ProgramFailed(f"arenahub admin {' '.join(args)} failed ({why}):\n{err.getvalue()}")
        return json.loads(out.getvalue())

    def create_key(self, platform: Platform, name: str = "e2e-consumer") -> dict[str, Any]:
        return self.admin("create-key", "--name", name, database_url=platform.database_url)

    def upstream(self, models: list[str], name: str = "upstream") -> Upstream:
        """Start a local upstream; ``wait_ready`` is left to its first user so starts overlap."""
        program = Upstream(self.workdir, self._name(name), models)
        self.programs.append(program)
        return program.start()  # type: ignore[return-value]

    def platform(self, database_url: str, env: dict[str, str] | None = None, port: int | None = None,
                 name: str = "platform") -> Platform:
        program = Platform(self.workdir, self._name(name), database_url, env, port)
        self.programs.append(program)
        program.start()
        return program.wait_ready()

    def client(self, platform: Platform, upstream: Upstream, *, name: str = "client", api_key: str | None = None,
               max_concurrent: int | None = None, rpm: int | None = None, heartbeat_interval_seconds: float = 1.0,
               max_concurrent_requests: int = 8, expect_state: str | None = "connected",
               capabilities: list[str] | None = None) -> Client:
        """Register a client with ``arenahub admin create-client``, start it and wait for ``expect_state``.

        ``api_key`` replaces the key the platform issued (to test a wrong key); ``capabilities``, those the
        config lists (else the default).
        """
        name = self._name(name)
        extra = ["--max-concurrent", str(max_concurrent)] if max_concurrent else []
        extra += ["--rpm", str(rpm)] if rpm else []
        account = self.admin("create-client", "--name", name, *extra, database_url=platform.database_url)
        config = write_client_config(
            self.workdir / f"{name}.config.jsonc", platform_url=platform.api_url, client_id=account["client_id"],
            api_key=api_key or account["api_key"], bridge_url=upstream.url,
            heartbeat_interval_seconds=heartbeat_interval_seconds, max_concurrent_requests=max_concurrent_requests,
            capabilities=capabilities)
        program = Client(self.workdir, name, config, account["client_id"], api_key or account["api_key"])
        self.programs.append(program)
        upstream.wait_ready()
        program.start()
        program.wait_http(program.url + "/health")
        if expect_state:
            program.wait_state(expect_state)
        return program

    def stop_all(self) -> None:
        """SIGTERM to all at once (clients first), then wait; SIGKILL whatever lingers."""
        order = sorted(self.programs, key=lambda p: {Client: 0, Platform: 1}.get(type(p), 2))
        for program in order:
            program.terminate()
        for program in order:
            if program.proc is not None:
                program.wait_stopped()

    def tails(self, lines: int = 40) -> list[tuple[str, str]]:
        return [(p.name, p.tail(lines)) for p in self.programs]


class Shared:
    """A platform with one client serving MODELS, and a consumer; for tests that change nothing."""

    def __init__(self, stack: Stack, platform: Platform, client: Client, key: str) -> None:
        self.stack, self.platform, self.client, self.key = stack, platform, client, key
        self.consumer = consumer_for(platform, key)


# -- consumers ---------------------------------------------------------------------------------
def consumer_for(platform: Platform, key: str, timeout: float = 30.0) -> openai.OpenAI:
    """The official openai package pointed at the platform. No retries: the tests look at the
    platform's first answer (and a retried 503 is not an answer "at once")."""
    return openai.OpenAI(base_url=platform.v1, api_key=key, max_retries=0, timeout=timeout)


def ask(text: str) -> list[dict[str, str]]:
    """The messages of a chat request whose last user message is ``text``."""
    return [{"role": "user", "content": text}]


def served_by(consumer: openai.OpenAI, messages: list[dict[str, str]], headers: dict[str, str] | None = None, *,
              model: str = MODELS[0], stream: bool = False) -> tuple[str, str]:
    """(client id from x-arenahub-client, answer text) of one request."""
    raw = consumer.chat.completions.with_raw_response.create(model=model, messages=messages, stream=stream,
                                                             extra_headers=headers)
    parsed = raw.parse()
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)  # type: ignore[union-attr]
    else:
        text = parsed.choices[0].message.content or ""  # type: ignore[union-attr]
    return raw.headers["x-arenahub-client"], text


# -- the platform's database, read directly ----------------------------------------------------
def read_table(database_url: str, table: sa.Table) -> list[dict[str, Any]]:
    """Every row of ``table``, oldest first."""
    async def read() -> list[dict[str, Any]]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.select(table).order_by(table.c.created_at))
                return [dict(r._mapping) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def read_records(database_url: str) -> list[dict[str, Any]]:
    return read_table(database_url, request_records)


def read_ledger(database_url: str) -> list[dict[str, Any]]:
    return read_table(database_url, ledger_entries)
