"""``arenahub demo --instances N``: the demo's platform as a cluster on this machine.

A private PostgreSQL cluster (arenahub/tools/local_postgres.py) and a redis-server, N platform instances
on them (ports ``--port``+1 to ``--port``+N), and HAProxy on ``--port`` in front of them, run from
deploy/haproxy.cfg. The rest of the demo (client, bridge, browser tab, simulator) is the one-instance
demo's, and reaches the platform only through HAProxy: the client's platform_url and the consumer's URL
are HAProxy's. Debian's packages for them are installed when missing and the demo runs as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import aiohttp

from arenahub.tools import haproxy, local_postgres
from arenahub.tools.demo_programs import Programs, free_port, wait_for

# Each program the cluster needs, by the Debian package that has it.
PACKAGES = ("haproxy", "redis-server", "postgresql")


def redis_binary() -> str | None:
    return shutil.which("redis-server", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/bin")


def missing_packages() -> list[str]:
    found = {"haproxy": haproxy.binary() is not None, "redis-server": redis_binary() is not None,
             "postgresql": local_postgres.bin_dir() is not None}
    return [package for package in PACKAGES if not found[package]]


def ensure_packages(is_root: bool | None = None) -> str | None:
    """Install the missing packages with apt-get when root; else, or when that fails, what to do (a
    sentence), or None when everything is there."""
    missing = missing_packages()
    if not missing:
        return None
    names = " ".join(missing)
    if not (os.geteuid() == 0 if is_root is None else is_root):
        return (f"the cluster demo needs Debian's {', '.join(missing)}: sudo apt-get install {names} "
                "(or run the demo without --instances)")
    print(f"arenahub demo: installing {names} (apt-get)", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            return f"`{' '.join(argv)}` failed: {done.stderr.strip()[-500:]}"
    still = missing_packages()
    return f"{', '.join(still)} still missing after apt-get install" if still else None


def cannot_run(port: int, count: int) -> str | None:
    """Why ``count`` instances after ``port`` cannot run here (after installing what they need, as root), or None."""
    if port + count > 65535:
        return f"--port {port} leaves no room for {count} instances after it (ports up to 65535)"
    if not haproxy.TEMPLATE.exists():
        return (f"--instances runs HAProxy from the repository's deploy/haproxy.cfg, which is not at "
                f"{haproxy.TEMPLATE}: run the demo from a clone")
    return ensure_packages()


@dataclass
class Cluster:
    """What runs: its database, each instance's name and port, and what to tell about it."""

    database_url: str
    instances: list[tuple[str, int]]
    lines: list[str]


async def start(programs: Programs, http: aiohttp.ClientSession, *, port: int, count: int,
                admin_token: str) -> Cluster:
    """PostgreSQL and Redis, ``count`` instances on the ports after ``port``, and HAProxy on ``port``."""
    postgres = local_postgres.LocalPostgres(programs.dir / "postgres", free_port())
    programs.cleanups.append(postgres.close)
    postgres.init()
    programs.run("postgres", postgres.argv(), user=postgres.user, service=True)
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    programs.run("redis", [redis_binary() or "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", str(programs.dir)], service=True)
    await postgres.create_database()
    instances = [(f"platform-{n}", port + n) for n in range(1, count + 1)]
    for name, own in instances:
        programs.spawn(name, "platform", "--port", str(own), "--database-url", postgres.url, "--redis-url", redis_url,
                       "--instance-id", name,
                       env={"ARENAHUB_ADMIN_TOKEN": admin_token, "ARENAHUB_DATA_DIR": str(programs.dir)},
                       restart=True)  # SIGTERM to one: started again, for a rolling restart
    for name, own in instances:
        await wait_for(programs, http, f"http://127.0.0.1:{own}/api/health", lambda j: True, f"the {name} instance",
                       timeout=60)
    config, stats_socket = programs.dir / "haproxy.cfg", programs.dir / "haproxy.sock"
    config.write_text(haproxy.render(haproxy.TEMPLATE.read_text(), [(n, "127.0.0.1", p) for n, p in instances],
                                     bind=f"127.0.0.1:{port}", stats_socket=stats_socket))
    programs.run("haproxy", [haproxy.binary() or "haproxy", "-db", "-f", str(config)])
    await wait_for(programs, http, f"http://127.0.0.1:{port}/api/health", lambda j: True, "HAProxy")
    listed = ", ".join(f"{name} http://127.0.0.1:{own}" for name, own in instances)
    return Cluster(postgres.url, instances, [
        f"instances:    {listed}",
        f"              on PostgreSQL {postgres.url} and Redis {redis_url}",
        f"HAProxy:      {config} (from deploy/haproxy.cfg); its stats socket {stats_socket}"])


async def wait_served_everywhere(programs: Programs, http: aiohttp.ClientSession, cluster: Cluster, model: str,
                                 key: str) -> None:
    """Until every instance offers ``model`` to the consumer with ``key`` (its ``/v1/models``), wherever the
    client is connected: the first answer may come from any of them. An instance reads the others' clients
    once a second, and a client announces its models after it connects: seeing the client is not enough."""
    for name, port in cluster.instances:
        await wait_for(programs, http, f"http://127.0.0.1:{port}/v1/models",
                       lambda j: model in {m["id"] for m in j["data"]}, f"the {name} instance to offer {model}",
                       headers={"Authorization": f"Bearer {key}"})
