"""How `arenahub demo` ends: Ctrl-C in its terminal (SIGINT to the whole process group, browser and
Playwright's driver included) stops everything quietly, and a child that dies stops the demo with a
message naming it and its log, leaving nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.e2e.harness import free_port


def start_demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """The demo in a session of its own (as in a terminal), once it says it is running."""
    demo = subprocess.Popen([sys.executable, "-m", "arenahub", "demo", "--port", str(free_port()), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "ARENAHUB_DEMO_DIR": str(tmp_path / "demo")})
    lines = []
    for line in demo.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if line.startswith("running;"):
            return demo, lines
    demo.wait(10)
    raise AssertionError("the demo did not start:\n" + "".join(lines))


def test_ctrl_c_stops_the_real_demo_quietly(tmp_path: Path) -> None:
    demo, _ = start_demo(tmp_path, "--bridge-port", str(free_port()), "--simulator-port", str(free_port()))
    try:
        children = psutil.Process(demo.pid).children(recursive=True)
        assert any("chromium" in (c.name() or "") for c in children)
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rest = demo.stdout.read()  # type: ignore[union-attr]
        assert demo.wait(30) == 0, rest
        assert "never retrieved" not in rest and "Traceback" not in rest, rest
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], f"left running: {alive}"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)


def test_a_child_that_dies_stops_the_demo_with_its_name(tmp_path: Path) -> None:
    demo, _ = start_demo(tmp_path, "--upstream", "local", "--client-port", str(free_port()),
                         "--upstream-port", str(free_port()))
    try:
        children = psutil.Process(demo.pid).children(recursive=True)
        platform = next(c for c in children if "platform" in c.cmdline())
        platform.kill()
        started = time.monotonic()
        rest = demo.stdout.read()  # type: ignore[union-attr]
        assert demo.wait(30) == 1
        assert time.monotonic() - started < 15
        assert "arenahub demo: the platform stopped (exit code -9), so the demo stops everything it started" in rest
        assert str(tmp_path / "demo" / "platform.log") in rest
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], f"left running: {alive}"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)


def test_busy_ports_are_named_with_a_command_that_picks_free_ones(tmp_path: Path) -> None:
    import re
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "arenahub", "demo", "--upstream", "local", "--port", str(port),
                               "--client-port", str(free_port()), "--upstream-port", str(free_port())],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "ARENAHUB_DEMO_DIR": str(tmp_path / "demo")})
    assert done.returncode == 2
    said = re.fullmatch(rf"arenahub demo: port\(s\) {port} already in use \(another demo or platform running\?\); "
                        r"stop what uses them, or pick others: \S*arenahub demo --port (\d+) --upstream local\n",
                        done.stderr)
    assert said and int(said.group(1)) != port, done.stderr
