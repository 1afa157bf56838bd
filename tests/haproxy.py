"""A real HAProxy for the tests, run from deploy/haproxy.cfg (arenahub/tools/haproxy.py renders it) on a
free loopback port, in front of the servers a test names. Missing locally: the tests that need it are
skipped; under CI they fail, as they must run there (``.ci/run`` installs Debian's ``haproxy``).

    lb = HAProxy([("east", "127.0.0.1", 8081), ("west", "127.0.0.1", 8082)], workdir).start()
    lb.url                       # http://127.0.0.1:PORT: a client's platform_url is lb.url + "/api"
    lb.states()                  # {"east": "UP", "west": "DOWN"}: HAProxy's view of each server
    lb.wait_states({"east": "UP", "west": "DOWN"})   # or lb.wait_up({"east"})
    lb.ask("disable health platform/west")           # any command of its stats socket
    lb.stop()
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from arenahub.tools import haproxy
from tests.ports import free_port
from tests.system import required


def haproxy_binary() -> str:
    return required(haproxy.binary(), "haproxy", "HAProxy")


class HAProxy:
    """``start``, ``stop``; ``url``, ``states`` and the stats socket (``ask``, ``stats``)."""

    def __init__(self, servers: Sequence[tuple[str, str, int]], workdir: Path) -> None:
        self.binary = haproxy_binary()
        self.servers = list(servers)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A Unix socket's path has at most 107 bytes: a deep pytest folder gets a short one in /tmp instead.
        self.socket = workdir / "haproxy.sock"
        self._short: Path | None = None
        if len(str(self.socket)) > 100:
            self._short = Path(tempfile.mkdtemp(prefix="haproxy-"))
            self.socket = self._short / "stats.sock"
        self.config = workdir / "haproxy.cfg"
        self.log_path = workdir / "haproxy.log"
        self.config.write_text(haproxy.render(haproxy.TEMPLATE.read_text(), self.servers,
                                              bind=f"127.0.0.1:{self.port}", stats_socket=self.socket))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        """Start it (-db: in the foreground) and wait until it listens and its stats socket answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([self.binary, "-db", "-f", str(self.config)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                self.states()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"haproxy did not listen on port {self.port}:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # HAProxy's hard stop: its connections close now
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)

    def ask(self, command: str) -> str:
        return haproxy.ask(self.socket, command)

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of each server (see ``arenahub.tools.haproxy.server_stats``)."""
        return haproxy.server_stats(self.socket)

    def states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it: ``UP``, ``UP 1/2`` (going down), ``DOWN``, ``MAINT``..."""
        return {name: row["status"] for name, row in self.stats().items()}

    def up(self) -> set[str]:
        """The servers that get new requests."""
        return {name for name, status in self.states().items() if haproxy.up(status)}

    def wait_up(self, names: set[str], timeout: float = 10.0) -> None:
        """Until exactly ``names`` get new requests."""
        self._wait(lambda: self.up() == names, timeout, f"servers up: {sorted(names)}")

    def wait_states(self, states: dict[str, str], timeout: float = 10.0) -> None:
        """Until the named servers are in these states (the others: any)."""
        self._wait(lambda: all(self.states().get(n) == s for n, s in states.items()), timeout, f"states {states}")

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {timeout:g} s waiting for HAProxy's {what} "
                                   f"(now {self.states()})")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
