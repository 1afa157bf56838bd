"""The three programs under test, started as real processes on free loopback ports.

``Stack`` owns them: it starts a local upstream, the platform and one client, registers the
client and a consumer key with the admin CLI, waits until a request can go all the way through,
and stops every process it started (and only those) when it is closed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

MODEL = "arena-echo"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class StackError(RuntimeError):
    """A program did not start, did not get ready, or a CLI step failed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def arenahub_command() -> list[str]:
    """The ``arenahub`` entry point of the interpreter running the bench (the project's venv)."""
    script = Path(sys.executable).with_name("arenahub")
    return [str(script)] if script.exists() else [sys.executable, "-m", "arenahub"]


@dataclass
class Program:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _get_json(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> object:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Stack:
    keep_dir: bool = False
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="arenahub-bench-")))
    programs: list[Program] = field(default_factory=list)
    upstream_port: int = 0
    platform_port: int = 0
    client_port: int = 0
    consumer_key: str = ""

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'arenahub.db'}"

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def platform_url(self) -> str:
        return f"http://127.0.0.1:{self.platform_port}"

    def pid(self, name: str) -> int:
        return next(p.pid for p in self.programs if p.name == name)

    # -- starting ------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARENAHUB_")}
        env["ARENAHUB_DATA_DIR"] = str(self.data_dir)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, name: str, args: list[str]) -> Program:
        log_path = self.data_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            # A session of its own: a Ctrl-C in the terminal reaches the bench, which then stops
            # the programs in order, instead of every process at once mid-request.
            proc = subprocess.Popen([*arenahub_command(), *args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self._env(), cwd=self.data_dir,
                                    start_new_session=True)
        program = Program(name, proc, log_path)
        self.programs.append(program)
        return program

    def _admin(self, *args: str) -> dict[str, str]:
        cmd = [*arenahub_command(), "admin", *args, "--database-url", self.database_url, "--json"]
        done = subprocess.run(cmd, check=False, capture_output=True, env=self._env(), cwd=self.data_dir, timeout=60,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise StackError(f"`arenahub admin {args[0]}` failed ({done.returncode}): "
                             f"{done.stderr.decode(errors='replace').strip()[-800:]}")
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    def _wait(self, what: str, program: Program, probe: Callable[[], object]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        last = "no answer yet"
        while time.monotonic() < deadline:
            if program.proc.poll() is not None:
                raise StackError(f"{program.name} exited with {program.proc.returncode} before {what}:\n"
                                 f"{program.log_tail()}")
            try:
                if probe():
                    return
                last = "not ready"
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise StackError(f"{program.name}: {what} did not happen within {READY_TIMEOUT_SECONDS:g} s "
                         f"({last}):\n{program.log_tail()}")

    def start(self) -> None:
        self.upstream_port, self.platform_port, self.client_port = free_port(), free_port(), free_port()
        upstream = self._spawn("upstream", ["local-upstream", "--port", str(self.upstream_port), "--models", MODEL])
        # The platform makes its database; the admin commands then register the client and the key in it
        # (an admin command never makes a database), which the running platform takes at once.
        platform = self._spawn("platform", ["platform", "--port", str(self.platform_port),
                                            "--database-url", self.database_url, "--log-level", "warning"])
        self._wait("answering /api/health", platform, lambda: _get_json(self.platform_url + "/api/health"))
        client_account = self._admin("create-client", "--name", "bench-client", "--max-concurrent", "256",
                                     "--bridge-url", self.upstream_url)
        self.consumer_key = self._admin("create-key", "--name", "bench-consumer")["key"]
        config = {
            "platform_integration": {
                "enabled": True, "platform_url": f"{self.platform_url}/api",
                "client_id": client_account["client_id"], "api_key": client_account["api_key"],
                "heartbeat_interval_seconds": 5, "log_level": "WARNING",
            },
            "lmarena_bridge_url": self.upstream_url,
            "platform_features": {"max_concurrent_requests": 256},
        }
        config_path = self.data_dir / "config.jsonc"
        config_path.write_text(json.dumps(config, indent=2))
        self._wait("answering /health", upstream, lambda: _get_json(self.upstream_url + "/health") is not None)
        auth = {"Authorization": f"Bearer {self.consumer_key}"}
        self._wait("answering /v1/models", platform, lambda: _get_json(self.platform_url + "/v1/models", auth))
        client = self._spawn("client", ["client", "--config", str(config_path), "--port", str(self.client_port)])
        self._wait("connecting to the platform", client, lambda: _get_json(
            f"http://127.0.0.1:{self.client_port}/health").get("connected") is True)  # type: ignore[union-attr]
        self._wait(f"listing {MODEL}", platform, lambda: any(
            m.get("id") == MODEL for m in _get_json(self.platform_url + "/v1/models", auth)["data"]))  # type: ignore[index]

    # -- stopping ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the programs (client first, upstream last), by pid; SIGKILL whatever hangs."""
        for program in reversed(self.programs):
            if program.proc.poll() is None:
                try:
                    program.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for program in reversed(self.programs):
            try:
                program.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                program.proc.kill()
                program.proc.wait(5)
        self.programs.clear()
        if not self.keep_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
