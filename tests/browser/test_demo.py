"""The README's first command: `arenahub demo` streams an answer over the whole real path."""

import json
import os
import subprocess
import sys

from tests.e2e.harness import free_port


def run_demo(*extra):
    return subprocess.run([sys.executable, "-m", "arenahub", "demo", "--once", "--port", str(free_port()), *extra],
                          capture_output=True, text=True, timeout=120)


def test_demo_real_path(tmp_path, monkeypatch):
    monkeypatch.setenv("ARENAHUB_DEMO_DIR", str(tmp_path / "demo"))
    done = run_demo("--bridge-port", str(free_port()), "--simulator-port", str(free_port()))
    assert done.returncode == 0, done.stderr
    assert "userscript in headless Chromium on arena.ai -> arena.ai simulator" in done.stdout
    assert "Hello from the arenahub demo" in done.stdout and "everything is stopped now" in done.stdout
    assert "curl -N" not in done.stdout  # with --once nothing is left to try it on
    assert (tmp_path / "demo" / "bridge" / "config.jsonc").exists()
    models = (tmp_path / "demo" / "bridge" / "models.json").read_text()
    assert "gpt-5-high" in models, "update-models read them from the page"


def test_demo_local_path(tmp_path, monkeypatch):
    monkeypatch.setenv("ARENAHUB_DEMO_DIR", str(tmp_path / "demo"))
    done = run_demo("--upstream", "local", "--client-port", str(free_port()), "--upstream-port", str(free_port()))
    assert done.returncode == 0, done.stderr
    assert "Echo: Hello from the arenahub demo" in done.stdout


def test_sigterm_stops_the_demo_and_everything_it_started(tmp_path, monkeypatch):
    import signal

    import psutil

    monkeypatch.setenv("ARENAHUB_DEMO_DIR", str(tmp_path / "demo"))
    demo = subprocess.Popen([sys.executable, "-m", "arenahub", "demo", "--upstream", "local",
                             "--port", str(free_port()), "--client-port", str(free_port()),
                             "--upstream-port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in demo.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("running;"):
                break
        # The admin CLI as the demo says to run it: through the platform's admin API, and on its database.
        command = next((line for line in lines if line.startswith("admin CLI:    ARENAHUB_PLATFORM_URL=")), None)
        assert command, "".join(lines)
        on_database = next(line for line in lines if "(or on its database: ARENAHUB_DATABASE_URL=" in line)
        for said in (command.removeprefix("admin CLI:"), on_database.split("on its database:")[1].rstrip(")\n")):
            env = dict(word.split("=", 1) for word in said.split() if word.startswith("ARENAHUB_"))
            listed = subprocess.run([sys.executable, "-m", "arenahub", "admin", "list-keys", "--json"],
                                    env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
            assert listed.returncode == 0, listed.stderr
            assert [k["name"] for k in json.loads(listed.stdout)] == ["demo consumer"]
            assert "arenahub admin: using " in listed.stderr
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 3, "".join(lines)  # upstream, platform, client
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(30) == 0
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], f"left running: {alive}"
    finally:
        if demo.poll() is None:
            demo.kill()
