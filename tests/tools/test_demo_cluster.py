"""`arenahub demo --instances 3`: PostgreSQL, Redis, three platform instances and HAProxy on this machine,
the rest of the demo behind HAProxy; SIGTERM to one instance starts it again (a rolling restart), SIGTERM
to the demo stops everything it started. Before its first request the demo waits until every instance
offers the model. And what it says when it cannot run."""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import httpx
import openai
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from arenahub.cli import build_parser
from arenahub.tools import demo, demo_cluster, haproxy
from arenahub.tools.demo_programs import Programs
from tests.conftest import in_ci
from tests.e2e.harness import free_port


def _needs_the_cluster_packages() -> None:
    missing = demo_cluster.missing_packages()
    if missing:
        message = f"the cluster demo needs {', '.join(missing)} (sudo apt-get install {' '.join(missing)})"
        if in_ci():
            pytest.fail(f"the cluster demo must run in CI: {message}", pytrace=False)
        pytest.skip(message)


def _base_port(count: int) -> int:
    """A free block of ``count + 1`` ports below the kernel's ephemeral range (32768 on): ports handed out by
    bind(0), to this worker or another, never land there; each pytest-xdist worker searches its own slice."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    start = 20_000 + (worker % 8) * 1_500
    for first in range(start, start + 1_500 - count, count + 1):
        if all(_free(first + n) for n in range(count + 1)):
            return first
    raise AssertionError(f"no {count + 1} free ports in a row from {start}")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Output:
    """The demo's output, read by a thread of its own: a line it never prints fails the test, not hangs it."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            self._queue.put(line)
        self._queue.put(None)

    def until(self, start: str, timeout: float = 180) -> str:
        """Everything said so far, once a line starts with ``start``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"the demo did not say {start!r}:\n" + "".join(self.lines))
            self.lines.append(line)
            if line.startswith(start):
                return "".join(self.lines)


def _until(ready: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll ``ready()`` until it is true; an error answering counts as not yet."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (httpx.HTTPError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} ({last})")


def test_the_cluster_demo_serves_through_haproxy_restarts_an_instance_and_sigterm_stops_everything(
        tmp_path: Path) -> None:
    _needs_the_cluster_packages()
    port = _base_port(3)
    proc = subprocess.Popen([sys.executable, "-m", "arenahub", "demo", "--instances", "3", "--upstream", "local",
                             "--port", str(port), "--client-port", str(free_port()),
                             "--upstream-port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "ARENAHUB_DEMO_DIR": str(tmp_path / "demo")})
    try:
        out = Output(proc)
        said = out.until("running;")
        assert "Echo: Hello from the arenahub demo" in said, said
        assert f"http://127.0.0.1:{port}" in said and "HAProxy in front of 3 instances" in said
        children = psutil.Process(proc.pid).children(recursive=True)
        names = {" ".join(c.cmdline()) for c in children}
        for program in ("haproxy", "redis-server", "postgres", "platform-1", "platform-2", "platform-3"):
            assert any(program in name for name in names), (program, names)

        # HAProxy checks all three; the client's tunnel and a consumer go through it.
        stats_socket = tmp_path / "demo" / "haproxy.sock"
        stats = haproxy.server_stats(stats_socket)
        assert {name: row["status"] for name, row in stats.items()} == {f"platform-{n}": "UP" for n in (1, 2, 3)}
        client_port = re.search(r"client status: curl http://127.0.0.1:(\d+)/platform/status", said)
        assert client_port, said
        status = httpx.get(f"http://127.0.0.1:{client_port.group(1)}/platform/status", timeout=5).json()
        assert status["platform_url"] == f"http://127.0.0.1:{port}/api"
        key = re.search(r"consumer key: (\S+)", said)
        admin_token = re.search(r"admin token:  (\S+)", said)
        assert key and admin_token, said
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key.group(1), max_retries=0) as consumer:
            done = consumer.chat.completions.create(model="arena-echo", messages=[{"role": "user", "content": "hi"}])
            assert done.choices[0].message.content == "Echo: hi"

            # A rolling restart's step: SIGTERM to one instance, and the demo starts it again, as it was.
            instance = next(c for c in children if "platform-2" in c.cmdline())
            instance.send_signal(signal.SIGTERM)
            said = out.until("platform-2 stopped")
            assert said.endswith("platform-2 stopped (SIGTERM): starting it again\n"), said
            assert proc.poll() is None, said
            own = f"http://127.0.0.1:{port + 2}/api/health"
            _until(lambda: httpx.get(own, headers={"Authorization": f"Bearer {admin_token.group(1)}"},
                                     timeout=2).json().get("instance") == "platform-2",
                   "platform-2 to answer its health check again, with its own name")
            _until(lambda: haproxy.server_stats(stats_socket)["platform-2"]["status"] == "UP",
                   "HAProxy to take platform-2 back")
            assert not instance.is_running()
            for n in range(6):
                done = consumer.chat.completions.create(model="arena-echo",
                                                        messages=[{"role": "user", "content": f"after {n}"}])
                assert done.choices[0].message.content == f"Echo: after {n}"

        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(out.lines)
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], f"left running: {alive}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


async def test_the_first_request_waits_until_every_instance_offers_the_model(tmp_path: Path) -> None:
    """A client announces its models to one instance, and the others read them within a second: the demo's
    first request waits until each instance's /v1/models lists the model (asked with the consumer's key)."""
    asked: dict[str, list[str]] = {"platform-1": [], "platform-2": []}

    def instance(name: str, listed_from: int) -> web.Application:
        async def models(request: web.Request) -> web.Response:
            asked[name].append(request.headers.get("Authorization", ""))
            offered = ["arena-echo"] if len(asked[name]) >= listed_from else []
            return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in offered]})

        app = web.Application()
        app.router.add_get("/v1/models", models)
        return app

    servers = [TestServer(instance("platform-1", 1), host="127.0.0.1"),
               TestServer(instance("platform-2", 3), host="127.0.0.1")]
    for server in servers:
        await server.start_server()
    try:
        cluster = demo_cluster.Cluster("", [("platform-1", servers[0].port), ("platform-2", servers[1].port)], [])
        async with aiohttp.ClientSession() as http:
            await demo_cluster.wait_served_everywhere(Programs(tmp_path), http, cluster, "arena-echo", "sk-demo")
    finally:
        for server in servers:
            await server.close()
    assert asked == {"platform-1": ["Bearer sk-demo"], "platform-2": ["Bearer sk-demo"] * 3}


@pytest.mark.parametrize("value, said", [("0", "0 instances: the demo runs 1 to 9"),
                                         ("10", "10 instances: the demo runs 1 to 9"), ("x", "'x' is not a number")])
def test_instances_are_one_to_nine(value: str, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["demo", "--instances", value])
    assert info.value.code == 2 and said in capsys.readouterr().err


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["demo", "--upstream", "local", *argv])


def test_no_room_for_the_instances_after_the_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.run_demo(_args("--port", "65534", "--instances", "3")) == 2
    assert "--port 65534 leaves no room for 3 instances after it" in capsys.readouterr().err


def test_without_root_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(haproxy, "binary", lambda: None)
    monkeypatch.setattr(demo_cluster, "redis_binary", lambda: None)
    said = demo_cluster.ensure_packages(is_root=False)
    assert said is not None and "sudo apt-get install haproxy redis-server" in said


def test_a_busy_instance_port_is_named_with_a_port_that_has_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo_cluster, "ensure_packages", lambda: None)
    monkeypatch.setenv("ARENAHUB_DEMO_DIR", str(tmp_path / "demo"))
    port = _base_port(3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 2))  # the second instance's
        taken.listen()
        code = demo.run_demo(_args("--port", str(port), "--instances", "3", "--client-port", str(free_port()),
                                   "--upstream-port", str(free_port())))
    assert code == 2
    err = capsys.readouterr().err
    said = re.fullmatch(rf"arenahub demo: port\(s\) {port + 2} already in use \(another demo or platform running\?\); "
                        r"stop what uses them, or pick others: \S*arenahub demo --port (\d+) --instances 3 "
                        r"--upstream local\n", err)
    assert said, err
    other = int(said.group(1))
    assert all(_free(other + n) for n in range(4))
