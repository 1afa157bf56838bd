"""The demo's programs as processes of its own: started with their output in a log file each, watched,
and stopped (what the platforms stand on, PostgreSQL and Redis, after them)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp


class Interrupted(Exception):
    """A program the demo started stopped as asked (a signal to the whole group): the demo stops too, quietly."""


class Programs:
    """The processes of one demo, with their logs in ``dir``; ``stop`` ends every one and runs ``cleanups``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        # What the platforms stand on (PostgreSQL, Redis): stopped after them, and out of reach of the
        # terminal's Ctrl-C (a session of their own), so that the platforms can finish their books first.
        self.services: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cleanups: list[Callable[[], None]] = []

    def spawn(self, name: str, *argv: str, env: dict[str, str] | None = None) -> None:
        """An ``arenahub`` command."""
        self.run(name, [sys.executable, "-m", "arenahub", *argv], env=env)

    def run(self, name: str, argv: list[str], env: dict[str, str] | None = None, user: str | None = None,
            service: bool = False) -> None:
        """Any program, as ``user`` when given (the demo runs as root); ``service``: see ``services``."""
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, user=user, start_new_session=service)
        (self.services if service else self.procs).append((name, proc))

    def stop(self) -> None:
        for group in (self.procs, self.services):
            for _, proc in reversed(group):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for _, proc in group:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for cleanup in self.cleanups:
            cleanup()

    def check_alive(self) -> None:
        for name, proc in self.procs + self.services:
            if proc.poll() is not None:
                if proc.returncode in (0, -signal.SIGINT, -signal.SIGTERM):
                    # Stopped as asked: Ctrl-C in the terminal reaches the whole group, and a child may have
                    # finished before the demo itself sees it.
                    raise Interrupted(name)
                raise RuntimeError(f"the {name} stopped (exit code {proc.returncode}), so the demo stops everything "
                                   f"it started; its log: {self.dir / (name + '.log')}")


async def wait_for(programs: Programs, http: aiohttp.ClientSession, url: str, ready: Callable[[Any], bool], what: str,
                   timeout: float = 30, headers: dict[str, str] | None = None) -> Any:
    """Poll ``url`` until it answers 200 with JSON that is ``ready``; fail at once when a program stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        programs.check_alive()
        try:
            # ssl=False: the simulator's self-signed certificate (only ever on this machine's loopback)
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=2), ssl=False, headers=headers) as resp:
                if resp.status == 200:
                    data = await resp.json()
                    if ready(data):
                        return data
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
