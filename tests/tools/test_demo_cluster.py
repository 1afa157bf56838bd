"""`arenahub demo --instances 3`: PostgreSQL, Redis, three platform instances and HAProxy on this machine,
the rest of the demo behind HAProxy; SIGTERM stops everything it started. And what it says when it cannot
run."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from arenahub.cli import build_parser
from arenahub.tools import demo, demo_cluster, haproxy
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
    while True:
        first = free_port()
        if first + count < 65535 and all(_free(first + n) for n in range(1, count + 1)):
            return first


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_the_cluster_demo_serves_through_haproxy_and_sigterm_stops_everything(tmp_path: Path) -> None:
    _needs_the_cluster_packages()
    port = _base_port(3)
    proc = subprocess.Popen([sys.executable, "-m", "arenahub", "demo", "--instances", "3", "--upstream", "local",
                             "--port", str(port), "--client-port", str(free_port()),
                             "--upstream-port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "ARENAHUB_DEMO_DIR": str(tmp_path / "demo")})
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("running;"):
                break
        said = "".join(lines)
        assert "Echo: Hello from the arenahub demo" in said, said
        assert f"http://127.0.0.1:{port}" in said and "HAProxy in front of 3 instances" in said
        children = psutil.Process(proc.pid).children(recursive=True)
        names = {" ".join(c.cmdline()) for c in children}
        for program in ("haproxy", "redis-server", "postgres", "platform-1", "platform-2", "platform-3"):
            assert any(program in name for name in names), (program, names)

        # HAProxy checks all three; the client's tunnel and a consumer go through it.
        stats = haproxy.server_stats(tmp_path / "demo" / "haproxy.sock")
        assert {name: row["status"] for name, row in stats.items()} == {f"platform-{n}": "UP" for n in (1, 2, 3)}
        client_port = re.search(r"client status: curl http://127.0.0.1:(\d+)/platform/status", said)
        assert client_port, said
        status = httpx.get(f"http://127.0.0.1:{client_port.group(1)}/platform/status", timeout=5).json()
        assert status["platform_url"] == f"http://127.0.0.1:{port}/api"
        key = re.search(r"consumer key: (\S+)", said)
        assert key, said
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key.group(1), max_retries=0) as consumer:
            done = consumer.chat.completions.create(model="arena-echo", messages=[{"role": "user", "content": "hi"}])
            assert done.choices[0].message.content == "Echo: hi"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], f"left running: {alive}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


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
