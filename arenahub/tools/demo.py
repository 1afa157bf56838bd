"""``arenahub demo``: the platform, one client and a local upstream on this machine, then a streamed answer.

Each program runs as its own process, exactly as it would be deployed; their logs go to
``.arenahub/demo/*.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from arenahub.platform.storage import accounts
from arenahub.platform.storage.db import create_engine, migrate

MODEL = "arena-echo"
PROMPT = "Hello from the arenahub demo: this answer travelled consumer, platform, client, upstream and back."


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(os.environ.get("ARENAHUB_DEMO_DIR", ".arenahub/demo")).resolve()
        self.db_url = f"sqlite+aiosqlite:///{self.dir / 'arenahub.db'}"
        self.platform_url = f"http://127.0.0.1:{args.port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, *argv: str) -> None:
        log = open(self.dir / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen([sys.executable, "-m", "arenahub", *argv], stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def check_alive(self) -> None:
        for proc, name in zip(self.procs, ("upstream", "platform", "client")):
            if proc.poll() is not None:
                raise RuntimeError(f"the {name} exited with code {proc.returncode}; see {self.dir / (name + '.log')}")


async def _wait_for(demo: Demo, http: aiohttp.ClientSession, url: str, ready, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        demo.check_alive()
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200 and ready(await resp.json()):
                    return
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


async def _credentials(db_url: str) -> tuple[str, str, str]:
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        client_id, api_key = await accounts.create_client(engine, name="demo client", max_concurrent=8)
        _, key = await accounts.create_key(engine, name="demo consumer")
    finally:
        await engine.dispose()
    return client_id, api_key, key


async def _stream_once(http: aiohttp.ClientSession, platform_url: str, key: str) -> str:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": PROMPT + " [[delay_ms=40]]"}]}
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


async def _main(demo: Demo) -> None:
    args = demo.args
    async with aiohttp.ClientSession() as http:
        demo.spawn("upstream", "local-upstream", "--port", str(args.upstream_port), "--models", MODEL)
        demo.spawn("platform", "platform", "--port", str(args.port), "--database-url", demo.db_url)
        await _wait_for(demo, http, demo.platform_url + "/api/health", lambda j: True, "the platform")
        client_id, api_key, key = await _credentials(demo.db_url)
        config = {"platform_integration": {
            "enabled": True, "platform_url": demo.platform_url + "/api", "client_id": client_id,
            "api_key": api_key, "heartbeat_interval_seconds": 30, "capabilities": ["chat", "models"]},
            "lmarena_bridge_url": f"http://127.0.0.1:{args.upstream_port}",
            "platform_features": {"max_concurrent_requests": 8}}
        config_path = demo.dir / "config.jsonc"
        config_path.write_text("// written by `arenahub demo`\n" + json.dumps(config, indent=2) + "\n")
        demo.spawn("client", "client", "--config", str(config_path), "--port", str(args.client_port))
        await _wait_for(demo, http, demo.platform_url + "/api/health",
                        lambda j: MODEL in j.get("models", []), "the client to connect")
        print(f"platform  {demo.platform_url}   (client {client_id} connected, upstream on :{args.upstream_port})")
        print("streaming an answer through platform -> client -> upstream:\n")
        await _stream_once(http, demo.platform_url, key)
        print(f"\nconsumer key: {key}")
        print("try it yourself:\n")
        print(f"  curl -N {demo.platform_url}/v1/chat/completions \\\n"
              f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
              f"    -d '{{\"model\": \"{MODEL}\", \"stream\": true, \"messages\": "
              f"[{{\"role\": \"user\", \"content\": \"Hi there\"}}]}}'\n")
        print(f"client status: curl http://127.0.0.1:{args.client_port}/platform/status")
        print(f"logs: {demo.dir}/*.log")
        if args.once:
            return
        print("\nrunning; press Ctrl-C to stop.")
        while True:
            demo.check_alive()
            await asyncio.sleep(1)


def run_demo(args: argparse.Namespace) -> int:
    demo = Demo(args)
    busy = [p for p in (args.port, args.client_port, args.upstream_port) if not _port_free(p)]
    if busy:
        print(f"arenahub demo: port(s) {', '.join(map(str, busy))} already in use; pick others with "
              "--port / --client-port / --upstream-port", file=sys.stderr)
        return 2
    shutil.rmtree(demo.dir, ignore_errors=True)
    demo.dir.mkdir(parents=True)
    try:
        asyncio.run(_main(demo))
        return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"arenahub demo: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
