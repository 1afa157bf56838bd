"""A real ``redis-server`` for the tests: one process per test worker, on a free loopback port, with no
persistence (as a Redis restart that loses its data), and ``RedisClients`` to open clients of it. Missing
locally: the Redis tests are skipped; under CI they fail, as they must run there (``.ci/run`` installs
Debian's ``redis-server``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.ports import free_port
from tests.system import required


def redis_binary() -> str:
    return required(shutil.which("redis-server", path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin"),
                    "redis-server", "Redis")


class RedisServer:
    """``start``, ``stop`` (kill: the data is gone), ``restart``; ``url`` stays the same throughout."""

    def __init__(self, directory: Path) -> None:
        self.binary = redis_binary()
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--protected-mode", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} (port {self.port})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        """Kill it and start it again on the same port, empty: what a restart without persistence leaves."""
        self.stop()
        self.start()

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(16).startswith(b"+OK")


class RedisClients:
    """Opens clients of one Redis (several clients: several platform instances) and closes them all
    (``aclose``, or at the end of ``async with``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._open: list[Redis] = []

    def __call__(self, **options: Any) -> Redis:
        client = Redis.from_url(self.url, **options)
        self._open.append(client)
        return client

    async def aclose(self) -> None:
        while self._open:
            await self._open.pop().aclose()

    async def __aenter__(self) -> RedisClients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
