"""``arenahub demo``: the whole system on this machine, then a streamed answer.

The real path: consumer -> platform -> client (inside the bridge) -> bridge -> the userscript in a
headless Chromium tab on https://arena.ai -> the arena.ai simulator (served under that name by
Chromium's host rules, over HTTPS with its own certificate); the bridge reads its models from the
page with ``arenahub bridge update-models``, as a person would. Each program runs as its own process, as it would
be deployed; their logs go to ``.arenahub/demo/*.log``. ``--upstream local`` swaps the bridge,
browser and simulator for the fast local upstream (no browser needed). ``--instances N`` runs the
platform as a cluster behind HAProxy (arenahub/tools/demo_cluster.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

from arenahub.platform.admin.token import new_admin_token
from arenahub.platform.storage import accounts
from arenahub.platform.storage.db import create_engine, migrate
from arenahub.tools import browser, demo_cluster
from arenahub.tools.demo_programs import Interrupted, Programs, free_port, port_free, wait_for

PROMPT = "Hello from the arenahub demo: this answer travelled from the consumer to the platform and back."


class Demo(Programs):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(Path(os.environ.get("ARENAHUB_DEMO_DIR", ".arenahub/demo")).resolve())
        self.args = args
        self.db_url = f"sqlite+aiosqlite:///{self.dir / 'arenahub.db'}"
        self.platform_url = f"http://127.0.0.1:{args.port}"
        self.stopping = False


async def _credentials(db_url: str) -> tuple[str, str, str]:
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        client_id, api_key = await accounts.create_client(engine, name="demo client", max_concurrent=8)
        _, key = await accounts.create_key(engine, name="demo consumer")
    finally:
        await engine.dispose()
    return client_id, api_key, key


async def _stream_once(http: aiohttp.ClientSession, platform_url: str, key: str, model: str, prompt: str) -> str:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    text = []
    async with http.post(platform_url + "/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key}"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"the platform answered {resp.status}: {await resp.text()}")
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            for choice in chunk.get("choices", []):
                piece = (choice.get("delta") or {}).get("content") or ""
                text.append(piece)
                print(piece, end="", flush=True)
    print()
    return "".join(text)


def _integration(demo: Demo, client_id: str, api_key: str) -> dict[str, Any]:
    return {"enabled": True, "platform_url": demo.platform_url + "/api", "client_id": client_id,
            "api_key": api_key, "heartbeat_interval_seconds": 5, "capabilities": ["chat", "models", "images"]}


async def _start_local(demo: Demo, http: aiohttp.ClientSession, client_id: str, api_key: str) -> tuple[str, str]:
    args = demo.args
    demo.spawn("upstream", "local-upstream", "--port", str(args.upstream_port), "--models", "arena-echo")
    config = {"platform_integration": _integration(demo, client_id, api_key),
              "lmarena_bridge_url": f"http://127.0.0.1:{args.upstream_port}",
              "platform_features": {"max_concurrent_requests": 8}}
    path = demo.dir / "config.jsonc"
    path.write_text("// written by `arenahub demo --upstream local`\n" + json.dumps(config, indent=2) + "\n")
    demo.spawn("client", "client", "--config", str(path), "--port", str(args.client_port))
    return "arena-echo", PROMPT + " [[delay_ms=40]]"


async def _start_real(demo: RealDemo, http: aiohttp.ClientSession, client_id: str, api_key: str) -> tuple[str, str]:
    """The 2026 flow: the simulator as https://arena.ai, a tab on it, models read from its page."""
    args = demo.args
    bridge_url = f"http://127.0.0.1:{args.bridge_port}"
    demo.spawn("simulator", "simulate-lmarena", "--port", str(args.simulator_port), "--tls")
    await wait_for(demo, http, f"https://127.0.0.1:{args.simulator_port}/__sim/state", lambda j: True,
                   "the arena.ai simulator")
    bridge_dir = demo.dir / "bridge"
    bridge_dir.mkdir()
    config_path = bridge_dir / "config.jsonc"
    config = {"arena_mode": "direct", "stream_response_timeout_seconds": 120,
              "platform_integration": _integration(demo, client_id, api_key)}
    config_path.write_text("// written by `arenahub demo`: the bridge's config, with the platform integration on\n"
                           + json.dumps(config, indent=2) + "\n")
    demo.spawn("bridge", "bridge", "--config", str(config_path), "--port", str(args.bridge_port))
    await wait_for(demo, http, bridge_url + "/bridge/status", lambda j: True, "the bridge")
    await demo.open_tab(args.simulator_port, f"ws://127.0.0.1:{args.bridge_port}/ws")
    await wait_for(demo, http, bridge_url + "/bridge/status",
                   lambda j: any(t["usable"] and t["models_in_page"] for t in j["tabs"]),
                   "the arena.ai tab to connect to the bridge")
    update = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arenahub", "bridge", "update-models", "--config", str(config_path),
        "--bridge-url", bridge_url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await update.communicate()
    (demo.dir / "update-models.log").write_bytes(out)
    if update.returncode != 0:
        raise RuntimeError(f"`arenahub bridge update-models` failed: {out.decode(errors='replace').strip()}")
    models = json.loads((bridge_dir / "models.json").read_text())
    text_models = [name for name, value in models.items() if ":" not in value]
    await wait_for(demo, http, bridge_url + "/v1/models", lambda j: len(j["data"]) == len(models),
                   "the bridge to pick up models.json")
    return text_models[0], PROMPT


async def _main(demo: RealDemo) -> None:
    args = demo.args
    async with aiohttp.ClientSession() as http:
        # Given to the platform, so that it is not printed into the platform's log file.
        admin_token = new_admin_token()
        cluster = None
        if args.instances > 1:
            cluster = await demo_cluster.start(demo, http, port=args.port, count=args.instances,
                                               admin_token=admin_token)
            demo.db_url = cluster.database_url
        else:
            demo.spawn("platform", "platform", "--port", str(args.port), "--database-url", demo.db_url,
                       env={"ARENAHUB_ADMIN_TOKEN": admin_token})
            await wait_for(demo, http, demo.platform_url + "/api/health", lambda j: True, "the platform")
        client_id, api_key, key = await _credentials(demo.db_url)
        start = _start_local if args.upstream == "local" else _start_real
        model, prompt = await start(demo, http, client_id, api_key)
        await wait_for(demo, http, demo.platform_url + "/api/health", lambda j: model in j.get("models", []),
                       "the client to connect to the platform", headers={"Authorization": f"Bearer {admin_token}"})
        if cluster is not None:
            await demo_cluster.wait_served_everywhere(demo, http, cluster, model, key)
        path = ("platform -> client -> local upstream" if args.upstream == "local" else
                "platform -> client -> bridge -> userscript in headless Chromium on arena.ai -> arena.ai simulator")
        print(f"platform  {demo.platform_url}   (client {client_id} connected"
              + (f"; HAProxy in front of {args.instances} instances)" if cluster else ")"))
        print(f"streaming an answer through {path}:\n")
        await _stream_once(http, demo.platform_url, key, model, prompt)
        if args.once:  # everything stops now: no address below would answer
            print(f"\n--once: the answer came through; everything is stopped now (logs: {demo.dir}/*.log)")
            return
        print(f"\ndashboard:    {demo.platform_url}/dashboard   (sign in with the admin token below)")
        print(f"consumer key: {key}")
        print(f"admin token:  {admin_token}   (admin API: {demo.platform_url}/api/admin, "
              f"OpenAPI at {demo.platform_url}/api/admin/openapi.json)")
        print("try it yourself:\n")
        print(f"  curl -N {demo.platform_url}/v1/chat/completions \\\n"
              f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
              f"    -d '{{\"model\": \"{model}\", \"stream\": true, \"messages\": "
              f"[{{\"role\": \"user\", \"content\": \"Hi there\"}}]}}'\n")
        local = args.client_port if args.upstream == "local" else args.bridge_port
        print(f"admin CLI:    ARENAHUB_PLATFORM_URL={demo.platform_url} ARENAHUB_ADMIN_TOKEN={admin_token} "
              f"{_command_path()} admin COMMAND")
        print(f"              (or on its database: ARENAHUB_DATABASE_URL={demo.db_url} {_command_path()} admin "
              "COMMAND)")
        print(f"client status: curl http://127.0.0.1:{local}/platform/status")
        if cluster is not None:
            print("\n".join(cluster.lines))
        print(f"logs: {demo.dir}/*.log")
        print("\nrunning; press Ctrl-C (or send SIGTERM) to stop everything.", flush=True)
        while True:
            demo.check_alive()
            await asyncio.sleep(1)


class RealDemo(Demo):
    """The demo with a headless browser tab (Playwright driving Debian's Chromium)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self._playwright: Any = None
        self._browser: Any = None

    async def open_tab(self, simulator_port: int, bridge_ws_url: str) -> None:
        """A tab on https://arena.ai (the simulator, by Chromium's host rules) running the userscript."""
        from playwright.async_api import async_playwright

        from arenahub.bridge.userscript import render
        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=browser.CHROMIUM, args=[*browser.CHROMIUM_ARGS, browser.host_rules(simulator_port)],
            headless=True)
        context = await self._browser.new_context(ignore_https_errors=True)  # the simulator's own certificate
        page = await context.new_page()
        await page.add_init_script(script=render(bridge_ws_url))
        await page.goto("https://arena.ai/")

    async def close_browser(self) -> None:
        # Ctrl-C may have stopped the browser and Playwright's driver already (they share the terminal).
        with contextlib.suppress(Exception):
            if self._browser is not None:
                await self._browser.close()
            if self._playwright is not None:
                await self._playwright.stop()


async def _run(demo: RealDemo) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(functools.partial(_quiet_when_stopping, demo))
    # Ctrl-C: asyncio.run's own handler stops the demo; first note that a stop was asked for, so that an
    # instance the same Ctrl-C stopped (it reaches the whole group) is not taken for a rolling restart.
    interrupt = signal.getsignal(signal.SIGINT)
    if callable(interrupt):
        def _interrupted(signum: int, frame: FrameType | None) -> None:
            demo.stop_requested = True
            interrupt(signum, frame)

        signal.signal(signal.SIGINT, _interrupted)
    try:
        await _main(demo)
    finally:
        demo.stopping = True
        if callable(interrupt):
            signal.signal(signal.SIGINT, interrupt)
        await demo.close_browser()


def _quiet_when_stopping(demo: Demo, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Once the demo stops, what breaks on the way is expected: Ctrl-C reaches the browser and its driver
    too (one process group), and their unread errors ("Future exception was never retrieved") are noise."""
    if demo.stopping and "exception" in context:
        return
    loop.default_exception_handler(context)


def _command_path() -> str:
    """How to call ``arenahub`` from here: its name when it is on PATH, else its path (.venv/bin/arenahub)."""
    beside = Path(sys.executable).with_name("arenahub")
    if shutil.which("arenahub") == str(beside) or not beside.exists():
        return "arenahub"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


def _free_ports_from(count: int) -> int:
    """A free port with the ``count`` - 1 ports after it free too."""
    while True:
        first = free_port()
        if first + count - 1 <= 65535 and all(port_free(first + n) for n in range(1, count)):
            return first


def run_demo(args: argparse.Namespace) -> int:
    if args.upstream == "real" and (why := browser.missing()):
        print(f"arenahub demo: the real path needs a headless browser: {why}. "
              "Or run `arenahub demo --upstream local`.", file=sys.stderr)
        return 2
    if args.instances > 1 and (why := demo_cluster.cannot_run(args.port, args.instances)):
        print(f"arenahub demo: {why}", file=sys.stderr)
        return 2
    demo = RealDemo(args)
    flags = {"--port": args.port, **({"--client-port": args.client_port, "--upstream-port": args.upstream_port}
                                     if args.upstream == "local" else
                                     {"--bridge-port": args.bridge_port, "--simulator-port": args.simulator_port})}
    # A cluster's instances listen on the ports after --port (HAProxy's).
    after = args.instances if args.instances > 1 else 0
    ports = {flag: list(range(p, p + 1 + (after if flag == "--port" else 0))) for flag, p in flags.items()}
    busy = {flag: taken for flag, wanted in ports.items() if (taken := [p for p in wanted if not port_free(p)])}
    if busy:
        others = " ".join(f"{flag} {_free_ports_from(len(ports[flag]))}" for flag in busy)
        print(f"arenahub demo: port(s) {', '.join(str(p) for taken in busy.values() for p in taken)} already in use "
              f"(another demo or platform running?); stop what uses them, or pick others: {_command_path()} demo "
              f"{others}" + (f" --instances {args.instances}" if args.instances > 1 else "")
              + (" --upstream local" if args.upstream == "local" else ""),
              file=sys.stderr)
        return 2
    shutil.rmtree(demo.dir, ignore_errors=True)
    demo.dir.mkdir(parents=True)

    def _stop(signum: int, _frame: object) -> None:  # SIGTERM or SIGHUP: stop everything, as Ctrl-C does
        demo.stop_requested = True
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        asyncio.run(_run(demo))
        return 0
    except (KeyboardInterrupt, Interrupted):
        return 0
    except RuntimeError as exc:
        print(f"arenahub demo: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
