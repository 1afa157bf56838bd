"""Free loopback ports for programs the tests start, handed out once each.

A port found free may be taken by the program that was handed it a moment ago and has not bound it
yet, so a port is never handed out twice in one test process. Under pytest-xdist each worker hands
out only its own share of the ports, so that two workers never pick the same one in that moment.
(Linux gives bind() even ports: hence ``port // 2``.)
"""

from __future__ import annotations

import os
import socket

_handed_out: set[int] = set()


def free_port() -> int:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    mine = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % workers
    for _ in range(5000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port // 2 % workers == mine and port not in _handed_out:
            break
    _handed_out.add(port)
    return port
