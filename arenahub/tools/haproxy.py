"""HAProxy in front of platform instances: deploy/haproxy.cfg made concrete, and what HAProxy says
about its servers.

``render`` keeps the example config whole (its timeouts, health checks, retries) and replaces only
what belongs to one machine: the ``bind`` address, the stats socket, the ``server`` lines, and the
``user``/``group`` lines (the demo and the tests run HAProxy as whoever starts it). ``arenahub demo
--instances N`` and tests/haproxy.py both use it, so the file operators copy is the file that is tested.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

# In a clone (where `make demo-cluster` and the tests run); an installed wheel has no deploy/.
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
BACKEND = "platform"
# HAProxy's own rule for proxy and server names.
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


class TemplateError(ValueError):
    """The config does not have the lines ``render`` replaces."""


def binary() -> str | None:
    """Debian's haproxy is in /usr/sbin, which is not on a user's PATH."""
    return shutil.which("haproxy", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")


def render(template: str, servers: Sequence[tuple[str, str, int]], bind: str, stats_socket: Path) -> str:
    """``template`` with ``bind`` (``127.0.0.1:8080``), a stats socket at ``stats_socket`` and one
    ``server NAME HOST:PORT`` line per instance in place of the example's."""
    if not servers:
        raise TemplateError("at least one server is needed")
    for name, _, _ in servers:
        if not _NAME.fullmatch(name):
            raise TemplateError(f"{name!r} is not a server name HAProxy takes (letters, digits, '_.:-')")
    out: list[str] = []
    found = {"bind": 0, "stats socket": 0, "server": 0}
    in_servers = False
    for line in template.splitlines():
        words = line.split()
        indent = line[: len(line) - len(line.lstrip())]
        first = words[0] if words else ""
        if first == "server":
            if not in_servers:
                found["server"] += 1
                out.extend(f"{indent}server {name} {_address(host, port)}" for name, host, port in servers)
            in_servers = True
            continue
        in_servers = False
        if first == "bind":
            found["bind"] += 1
            out.append(f"{indent}bind {bind}")
        elif words[:2] == ["stats", "socket"]:
            found["stats socket"] += 1
            out.append(f"{indent}stats socket {stats_socket} mode 600 level admin")
        elif first not in ("user", "group"):
            out.append(line)
    if any(count != 1 for count in found.values()):
        raise TemplateError(f"expected one bind line, one stats socket line and one run of server lines; found {found}")
    return "\n".join(out) + "\n"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ask(stats_socket: Path, command: str, timeout: float = 5.0) -> str:
    """One command on HAProxy's stats socket (``show stat``, ``disable health platform/east``); its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(stats_socket))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def server_stats(stats_socket: Path, backend: str = BACKEND) -> dict[str, dict[str, str]]:
    """``show stat`` of the backend's servers, by name: ``status`` (``UP``, ``UP 1/2`` going down,
    ``DOWN``, ``DOWN 1/2`` coming up, ``MAINT``), ``check_status`` (``L7OK``, ``L7STS``: a status not
    expected, ``L4CON``: refused), ``stot`` (requests sent), ``wretr``/``wredis`` (retried, redispatched)."""
    text = ask(stats_socket, "show stat").lstrip("# ")
    return {row["svname"]: row for row in csv.DictReader(text.splitlines())
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")}


def up(status: str) -> bool:
    """Whether HAProxy sends new requests to a server in this ``status``: ``UP 1/2`` is still up, and so is
    a server whose checks an operator disabled (``no check``)."""
    return status.split(" ")[0] == "UP" or status == "no check"
