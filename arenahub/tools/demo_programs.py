"""The demo's programs as processes of its own: started with their output in a log file each, watched
(a cluster's instance that an operator stops with SIGTERM is started again), and stopped (what the
platforms stand on, PostgreSQL and Redis, after them)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


class Interrupted(Exception):
    """A program the demo started stopped as asked (a signal to the whole group): the demo stops too, quietly."""


@dataclass
class Program:
    """One process the demo started, and how to start it again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    user: str | None
    service: bool
    # Started again when it stops as asked (SIGTERM, or exit 0) while the demo runs: a cluster's instance,
    # so that an operator can try a rolling restart on the demo.
    restart: bool
    proc: subprocess.Popen[bytes] = field(init=False)

    def start(self, directory: Path) -> None:
        # Appended to: a restarted program's log keeps what it said before.
        with open(directory / f"{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **self.env}, user=self.user,
                                         start_new_session=self.service)


class Programs:
    """The processes of one demo, with their logs in ``dir``; ``stop`` ends every one and runs ``cleanups``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.procs: list[Program] = []
        # What the platforms stand on (PostgreSQL, Redis): stopped after them, and out of reach of the
        # terminal's Ctrl-C (a session of their own), so that the platforms can finish their books first.
        self.services: list[Program] = []
        self.cleanups: list[Callable[[], None]] = []
        # Set by the demo's own signal handlers (Ctrl-C, SIGTERM): from then on a program that stops was
        # stopped by that, and is never started again.
        self.stop_requested = False

    def spawn(self, name: str, *argv: str, env: dict[str, str] | None = None, restart: bool = False) -> None:
        """An ``arenahub`` command; ``restart``: see ``Program``."""
        self.run(name, [sys.executable, "-m", "arenahub", *argv], env=env, restart=restart)

    def run(self, name: str, argv: list[str], env: dict[str, str] | None = None, user: str | None = None,
            service: bool = False, restart: bool = False) -> None:
        """Any program, as ``user`` when given (the demo runs as root); ``service``: see ``services``."""
        program = Program(name, argv, env or {}, user, service, restart)
        program.start(self.dir)
        (self.services if service else self.procs).append(program)

    def stop(self) -> None:
        self.stop_requested = True
        for group in (self.procs, self.services):
            for program in reversed(group):
                if program.proc.poll() is None:
                    program.proc.send_signal(signal.SIGTERM)
            for program in group:
                try:
                    program.proc.wait(10)
                except subprocess.TimeoutExpired:
                    program.proc.kill()
        for cleanup in self.cleanups:
            cleanup()

    def check_alive(self) -> None:
        """Start a stopped instance again (``Program.restart``); raise when any other program stopped."""
        for program in self.procs + self.services:
            code = program.proc.poll()
            if code is None:
                continue
            name = program.name
            if program.restart and code in (0, -signal.SIGTERM) and not self.stop_requested:
                how = "SIGTERM" if code == -signal.SIGTERM else "exit code 0"
                print(f"{name} stopped ({how}): starting it again", flush=True)
                program.start(self.dir)
                continue
            if code in (0, -signal.SIGINT, -signal.SIGTERM):
                # Stopped as asked: Ctrl-C in the terminal reaches the whole group, and a child may have
                # finished before the demo itself sees it.
                raise Interrupted(name)
            raise RuntimeError(f"the {name} stopped (exit code {code}), so the demo stops everything "
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
