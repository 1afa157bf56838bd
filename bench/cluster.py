"""The cluster arm of the benchmark: what a request costs when its client is on another instance.

Two platform instances (east, west) on one PostgreSQL database and one redis-server, a local upstream
and one client connected to west. The same requests go to west (the client is on the same instance:
"same") and to east (it must cross to west over the peer link: "cross"), in alternating rounds:

- at concurrency 1, the added median latency of crossing (target: at most 1 ms);
- at concurrency 32, the throughput of crossing as a share of staying (target: at least 70%).

On this 2-core machine the instances, the client, the upstream, Redis, PostgreSQL and the load share
two cores: the figures bound the cost of the hop, they cannot show scaling. Needs redis-server and a
PostgreSQL role that may create databases: ``ARENAHUB_BENCH_PG_URL`` (else ``ARENAHUB_TEST_PG_URL``),
e.g. postgresql+asyncpg://arenahub:arenahub@127.0.0.1:5432/arenahub_test.

    .venv/bin/python bench/cluster.py [--requests 1000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.engine import make_url

import load
from arenahub.platform.storage.db import execute_on_server
from stack import MODEL, Program, Stack, StackError, _get_json, free_port

MAX_ADDED_P50_MS = 1.0
MIN_THROUGHPUT_SHARE = 0.70


class ClusterStack(Stack):
    """Redis, two instances (east, west) and a client on west."""

    pg_base: str = ""
    database: str = ""
    redis_port: int = 0
    ports: dict[str, int]

    @property
    def database_url(self) -> str:
        return make_url(self.pg_base).set(database=self.database).render_as_string(hide_password=False)

    def url_of(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self) -> None:
        redis_server = shutil.which("redis-server", path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
        if redis_server is None:
            raise StackError("redis-server is not installed (apt-get install redis-server)")
        self.database = f"bench_{secrets.token_hex(6)}"
        asyncio.run(execute_on_server(self.pg_base, f'CREATE DATABASE "{self.database}"'))
        self.redis_port, self.upstream_port = free_port(), free_port()
        self.ports = {"east": free_port(), "west": free_port()}
        self.programs.append(_program("redis", [redis_server, "--port", str(self.redis_port), "--save", "",
                                                "--appendonly", "no", "--bind", "127.0.0.1"], self.data_dir))
        upstream = self._spawn("upstream", ["local-upstream", "--port", str(self.upstream_port), "--models", MODEL])
        env_redis = f"redis://127.0.0.1:{self.redis_port}/0"
        for name in ("west", "east"):
            self._spawn(name, ["platform", "--port", str(self.ports[name]), "--database-url", self.database_url,
                               "--log-level", "warning", "--redis-url", env_redis, "--instance-id", name])
            program = next(p for p in self.programs if p.name == name)
            self._wait("answering /api/health", program, lambda n=name: _get_json(self.url_of(n) + "/api/health"))
        self.platform_port = self.ports["west"]
        account = self._admin("create-client", "--name", "bench-client", "--max-concurrent", "256")
        self.consumer_key = self._admin("create-key", "--name", "bench-consumer")["key"]
        config = {"platform_integration": {"enabled": True, "platform_url": self.url_of("west") + "/api",
                                           "client_id": account["client_id"], "api_key": account["api_key"],
                                           "heartbeat_interval_seconds": 5, "log_level": "WARNING"},
                  "lmarena_bridge_url": self.upstream_url, "platform_features": {"max_concurrent_requests": 256}}
        config_path = self.data_dir / "config.jsonc"
        config_path.write_text(json.dumps(config))
        self._wait("answering /health", upstream, lambda: _get_json(self.upstream_url + "/health") is not None)
        self.client_port = free_port()
        client = self._spawn("client", ["client", "--config", str(config_path), "--port", str(self.client_port)])
        self._wait("connecting", client, lambda: _get_json(
            f"http://127.0.0.1:{self.client_port}/health").get("connected") is True)  # type: ignore[union-attr]
        auth = {"Authorization": f"Bearer {self.consumer_key}"}
        east = next(p for p in self.programs if p.name == "east")
        self._wait(f"east listing {MODEL}", east, lambda: any(
            m.get("id") == MODEL for m in _get_json(self.url_of("east") + "/v1/models", auth)["data"]))  # type: ignore[index]
        time.sleep(2)  # east's dispatcher reads the cluster's client cards every second

    def close(self) -> None:
        super().close()
        if self.database:
            asyncio.run(execute_on_server(self.pg_base, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))


def _program(name: str, argv: list[str], data_dir: Path) -> Program:
    log_path = data_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return Program(name, proc, log_path)


async def measure(stack: ClusterStack, args: argparse.Namespace) -> dict[str, object]:
    targets = {"same": load.Target("same", stack.url_of("west"), stack.consumer_key),
               "cross": load.Target("cross", stack.url_of("east"), stack.consumer_key)}
    out: dict[str, object] = {}
    for concurrency, requests in ((1, args.c1_requests), (32, args.requests)):
        sessions = {name: load.open_session(concurrency) for name in targets}
        rounds: dict[str, list[load.PassResult]] = {name: [] for name in targets}
        try:
            for name, target in targets.items():  # warm-up
                await load.run_pass(sessions[name], target, model=MODEL, stream=False, requests=50,
                                    concurrency=concurrency, words=16)
            for _ in range(args.rounds):
                for name, target in targets.items():
                    result = await load.run_pass(sessions[name], target, model=MODEL, stream=False,
                                                 requests=requests, concurrency=concurrency, words=16)
                    rounds[name].append(result)
                    print(f"  {name:5} c={concurrency:<3} {result.throughput:8.1f} req/s, p50 "
                          f"{result.latency(50) or 0:6.2f} ms, errors {result.error_count}", file=sys.stderr)
        finally:
            for http in sessions.values():
                await http.close()
        same, cross = load.pool(rounds["same"]), load.pool(rounds["cross"])
        out[f"c{concurrency}"] = {"same": same.summary(), "cross": cross.summary(),
                                  "added_p50_ms": round((cross.latency(50) or 0) - (same.latency(50) or 0), 3),
                                  "throughput_share": round(cross.throughput / same.throughput, 3)
                                  if same.throughput else None,
                                  "errors": same.error_count + cross.error_count}
    c1, c32 = out["c1"], out["c32"]
    assert isinstance(c1, dict) and isinstance(c32, dict)
    out["targets"] = {"added_p50_ms_at_c1": {"value": c1["added_p50_ms"], "target": MAX_ADDED_P50_MS,
                                             "met": c1["added_p50_ms"] <= MAX_ADDED_P50_MS},
                      "throughput_share_at_c32": {"value": c32["throughput_share"], "target": MIN_THROUGHPUT_SHARE,
                                                  "met": (c32["throughput_share"] or 0) >= MIN_THROUGHPUT_SHARE}}
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/cluster.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1000, help="requests per round at concurrency 32 (default 1000)")
    p.add_argument("--c1-requests", type=int, default=300, help="requests per round at concurrency 1 (default 300)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per arm (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args()
    pg = os.environ.get("ARENAHUB_BENCH_PG_URL") or os.environ.get("ARENAHUB_TEST_PG_URL")
    if not pg:
        print("bench/cluster.py needs ARENAHUB_BENCH_PG_URL (a PostgreSQL role that may create databases)",
              file=sys.stderr)
        return 2
    stack = ClusterStack()
    stack.pg_base = pg
    try:
        stack.start()
        report = asyncio.run(measure(stack, args))
    finally:
        stack.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    c1, c32, targets = report["c1"], report["c32"], report["targets"]
    assert isinstance(c1, dict) and isinstance(c32, dict) and isinstance(targets, dict)
    print(f"cluster arm (nonstream, 16 words; client on west; 'cross' asks east):\n"
          f"  c=1:  added p50 {c1['added_p50_ms']:+.2f} ms (target <= {MAX_ADDED_P50_MS} ms: "
          f"{'met' if targets['added_p50_ms_at_c1']['met'] else 'MISSED'})\n"
          f"  c=32: cross/same throughput {c32['throughput_share']} (target >= {MIN_THROUGHPUT_SHARE}: "
          f"{'met' if targets['throughput_share_at_c32']['met'] else 'MISSED'}); errors "
          f"{c1['errors'] + c32['errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
