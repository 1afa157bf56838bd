"""arenahub.serving: the connection limits, on a real uvicorn (uvloop + httptools) over loopback
sockets, and the log formatter that keeps what a peer sent on one bounded line.

Linux routes all of 127.0.0.0/8 to loopback: a socket bound to 127.0.0.2 before it connects is
another client address to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from arenahub import connections, logs, serving
from arenahub.connections import ServerLimits, address_key
from arenahub.logs import printable
from tests.servers import read_all

FAST = ServerLimits(header_timeout_seconds=0.6, body_timeout_seconds=0.6, body_min_bytes_per_second=0,
                    max_connections_per_address=8, max_connections=40)


class Recorder:
    """A small ASGI app: answers every request with what it read, after reading its whole body;
    keeps what each request's receive() saw last; accepts WebSockets and echoes."""

    def __init__(self) -> None:
        self.ends: list[str] = []
        self.delay = 0.0  # seconds to wait before reading a body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while (message := await receive())["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": message.get("text") or ""})
            return
        if self.delay:
            await asyncio.sleep(self.delay)
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.ends.append("disconnect")
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.ends.append("complete")
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class Served:
    def __init__(self, app: Recorder, port: int, srv: serving.DrainingServer) -> None:
        self.app, self.port, self.srv = app, port, srv

    @property
    def guard(self) -> connections.ConnectionGuard:
        assert isinstance(self.srv.config, connections.GuardedConfig)
        return self.srv.config.guard

    def connect(self, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
        sock = socket.socket()
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", self.port))
        return sock

    def get(self, source: str = "127.0.0.1") -> bytes:
        with self.connect(source) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return read_all(sock)



def wait_until(probe: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@contextlib.contextmanager
def served(limits: ServerLimits | None = FAST) -> Iterator[Served]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = Recorder()
    srv = serving.server(app, "127.0.0.1", port, "warning", limits=limits)  # type: ignore[arg-type]
    thread = threading.Thread(target=srv.run, name="serving-test", daemon=True)
    thread.start()
    wait_until(lambda: srv.started, 10)
    try:
        yield Served(app, port, srv)
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture
def server() -> Iterator[Served]:
    with served() as s:
        yield s


# -- header timeout ---------------------------------------------------------------------------
def test_a_connection_that_sends_nothing_is_closed_within_the_header_timeout(server: Served) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        answer = read_all(sock)
    assert 0.5 <= time.monotonic() - started < 2.0
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_headers_that_trickle_in_are_cut_at_the_header_timeout(server: Served) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        while not select.select([sock], [], [], 0.1)[0]:  # a byte every 0.1 s: never idle, never done (slowloris)
            sock.sendall(b"X")
            assert time.monotonic() - started < 5
        answer = read_all(sock)
    assert time.monotonic() - started < 2.0
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert server.guard.events["headers timed out"] == 1
    assert server.app.ends == []  # the app never saw it


def test_the_header_timeout_of_a_kept_alive_request_runs_from_its_first_byte() -> None:
    with served(ServerLimits(header_timeout_seconds=1.0)) as server, server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.7)  # within uvicorn's keep-alive (5 s); this request's header clock has not started
        sock.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.5)  # 1.2 s since the connection opened, 0.5 s since this request began
        sock.sendall(b"Host: t\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_headers_larger_than_the_limit_are_answered_431(server: Served) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        with contextlib.suppress(OSError):
            for _ in range(200):
                sock.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")


# -- body timeout ------------------------------------------------------------------------------
def test_a_body_that_stops_gets_408_and_the_app_sees_the_client_leave(server: Served) -> None:
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        started = time.monotonic()
        answer = read_all(sock)
    assert 0.5 <= time.monotonic() - started < 2.0
    assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer
    wait_until(lambda: server.app.ends == ["disconnect"])
    assert server.guard.events["body timed out"] == 1


def test_a_body_below_the_minimum_rate_gets_408() -> None:
    limits = ServerLimits(header_timeout_seconds=5, body_timeout_seconds=0.5, body_min_bytes_per_second=20)
    with served(limits) as server, server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        while not select.select([sock], [], [], 0.1)[0]:  # 10 bytes/s: never silent for long, but too slow
            sock.sendall(b"x")
            assert time.monotonic() - started < 5
        answer = read_all(sock)
    assert time.monotonic() - started < 2.0  # 0.5 s + (bytes received) / 20 bytes/s: about 1 s
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_slow_but_steady_body_is_read_in_full() -> None:
    limits = ServerLimits(header_timeout_seconds=5, body_timeout_seconds=0.4, body_min_bytes_per_second=1000)
    with served(limits) as server, server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\n")
        for _ in range(15):  # 1.5 s in all, 2000 bytes/s
            sock.sendall(b"x" * 200)
            time.sleep(0.1)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert server.app.ends == ["complete"]


def test_a_body_the_app_is_slow_to_read_is_not_the_peers_delay(server: Served) -> None:
    server.app.delay = 1.5  # uvicorn stops reading the socket after 64 KiB until the app reads
    with server.connect() as sock:
        body = b"x" * (1024 * 1024)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert server.app.ends == ["complete"]


# -- connection caps ---------------------------------------------------------------------------
def test_a_flood_from_one_address_leaves_others_served(server: Served) -> None:
    flood: list[socket.socket] = []
    try:
        for _ in range(30):  # 8 are admitted (and stall); the rest are refused at once
            flood.append(server.connect("127.0.0.2"))
        wait_until(lambda: server.guard.by_address.get("127.0.0.2") == 8)
        refused = [read_all(s) for s in flood[8:]]
        assert all(r.startswith(b"HTTP/1.1 503 ") and b"your address" in r for r in refused)

        assert server.get("127.0.0.3").startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in flood:
            sock.close()
    wait_until(lambda: server.guard.open == 0)
    assert server.guard.by_address == {}
    assert server.get("127.0.0.2").startswith(b"HTTP/1.1 200 ")  # its slots came back


def test_the_trusted_proxys_address_is_not_capped(server: Served) -> None:
    held = [server.connect("127.0.0.1") for _ in range(12)]  # uvicorn trusts 127.0.0.1 as a proxy
    try:
        wait_until(lambda: server.guard.open == 12)
        assert server.get("127.0.0.1").startswith(b"HTTP/1.1 200 ")
        assert server.guard.by_address == {}
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("trusted, inside, outside", [
    ("127.0.0.1,::1", ["127.0.0.1", "::1"], ["127.0.0.2", "10.0.0.1"]),
    (["10.0.0.0/8", "2001:db8::/32"], ["10.1.2.3", "2001:db8::7"], ["11.0.0.1", "2001:db9::1"]),
    ("*", ["1.2.3.4", "::2"], []),
    ("", [], ["127.0.0.1"]),
])
def test_proxies(trusted: Any, inside: list[str], outside: list[str]) -> None:
    proxies = connections.Proxies(trusted)
    assert all(host in proxies for host in inside)
    assert not any(host in proxies for host in outside)


def test_the_total_cap_refuses_new_connections_from_anyone() -> None:
    limits = ServerLimits(max_connections_per_address=0, max_connections=5)
    with served(limits) as server:
        held = [server.connect(f"127.0.0.{n}") for n in range(2, 7)]
        wait_until(lambda: server.guard.open == 5)
        answer = server.get("127.0.0.9")
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too many open connections" in answer
        held.pop().close()
        wait_until(lambda: server.guard.open == 4)
        assert server.get("127.0.0.9").startswith(b"HTTP/1.1 200 ")
        for sock in held:
            sock.close()


def test_refusals_are_logged_at_most_once_a_minute(server: Served, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "arenahub.serving"):
        flood = [server.connect("127.0.0.2") for _ in range(20)]
        wait_until(lambda: server.guard.events["refused: too many from one address"] == 12)
        for sock in flood:
            sock.close()
    lines = [r for r in caplog.records if r.name == "arenahub.serving"]
    assert len(lines) == 1 and "too many from one address" in lines[0].getMessage()


# -- WebSockets ----------------------------------------------------------------------------------
def test_a_websocket_outlives_the_timeouts_and_holds_its_slot_until_it_closes(server: Served) -> None:
    sock = server.connect("127.0.0.4")
    with ws_connect(f"ws://127.0.0.1:{server.port}/", sock=sock) as ws:
        time.sleep(1.5)  # longer than both timeouts
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
        assert server.guard.by_address == {"127.0.0.4": 1}
    wait_until(lambda: server.guard.open == 0)
    assert server.guard.by_address == {}


def test_the_websocket_counts_against_its_address() -> None:
    limits = ServerLimits(max_connections_per_address=1)
    with served(limits) as server:
        with ws_connect(f"ws://127.0.0.1:{server.port}/", sock=server.connect("127.0.0.5")):
            assert server.get("127.0.0.5").startswith(b"HTTP/1.1 503 ")
        wait_until(lambda: server.guard.open == 0)
        assert server.get("127.0.0.5").startswith(b"HTTP/1.1 200 ")


# -- pieces ------------------------------------------------------------------------------------
@pytest.mark.parametrize("peer, key", [
    (("10.0.0.7", 1234), "10.0.0.7"),
    (("2001:db8:1:2:3:4:5:6", 1), "2001:db8:1:2::/64"),
    (("::ffff:10.0.0.7", 1), "10.0.0.7"),
    (None, ""),
])
def test_address_key(peer: tuple[str, int] | None, key: str) -> None:
    assert address_key(peer) == key


@pytest.mark.parametrize("bad", [dict(header_timeout_seconds=0), dict(body_timeout_seconds=-1),
                                 dict(max_connections_per_address=-1), dict(max_connections=-5)])
def test_limits_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ServerLimits(**bad)


def test_the_automatic_total_cap_follows_the_open_file_limit() -> None:
    assert connections.fd_connection_cap(1024) == 768
    assert connections.fd_connection_cap(1_048_576) == 10_000


def test_without_limits_the_server_is_stock_uvicorn() -> None:
    srv = serving.server(Recorder(), "127.0.0.1", 1, limits=None)  # type: ignore[arg-type]
    assert not isinstance(srv.config, connections.GuardedConfig)


# -- log lines -----------------------------------------------------------------------------------
def formatted(msg: str, *args: object, exc_info: Any = None) -> str:
    record = logging.LogRecord("arenahub.platform.tunnel", logging.INFO, __file__, 1, msg, args, exc_info)
    return logs.SafeFormatter(logs.LOG_FORMAT).format(record)


def test_a_newline_in_an_argument_cannot_forge_a_log_line() -> None:
    line = formatted("client %s is draining: %s", "cl_1", "bye\n2026-01-01 00:00:00 WARNING admin token reset")
    assert "\n" not in line
    assert line.endswith("draining: bye\\n2026-01-01 00:00:00 WARNING admin token reset")


def test_control_characters_are_escaped() -> None:
    assert printable("a\x1b[31mred\r\t\x00\x7f\x85\u2028z") == "a\\x1b[31mred\\r\\t\\x00\\x7f\\x85\\u2028z"
    assert printable("plain text, ünïcödé and emoji 🙂") == "plain text, ünïcödé and emoji 🙂"


def test_a_long_argument_is_cut_with_its_length() -> None:
    line = formatted("drain reason: %s", "x" * 100_093)
    message = line.split(": ", 2)[2]
    assert message.endswith("… (100,107 characters)")  # "drain reason: " + 100,093
    assert len(message) < logs.MAX_LOG_CHARS + 30


def test_a_traceback_still_prints_but_its_exception_message_is_escaped() -> None:
    try:
        raise ValueError("bad frame\nWARNING forged")
    except ValueError:
        line = formatted("tunnel failed", exc_info=sys.exc_info())
    lines = line.splitlines()
    assert lines[0].endswith("tunnel failed")
    assert lines[1] == "Traceback (most recent call last):"
    assert any(__file__ in x for x in lines)
    assert lines[-1] == "ValueError: bad frame\\nWARNING forged"


def test_configure_logging_installs_the_formatter_and_uvicorn_logs_through_it() -> None:
    code = ("import logging; from arenahub import logs; logs.configure_logging('info'); "
            "logging.getLogger('arenahub.x').warning('reason: %s', 'a\\nWARNING forged'); "
            "logging.getLogger('uvicorn.error').info('from uvicorn %s', 'b\\x1b')")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stderr
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].endswith("arenahub.x: reason: a\\nWARNING forged")
    assert lines[1].endswith("uvicorn.error: from uvicorn b\\x1b")


@pytest.mark.parametrize("command", [["local-upstream"], ["simulate-lmarena"]])
def test_ctrl_c_stops_a_server_without_a_traceback(command: list[str]) -> None:
    """Ctrl-C (SIGINT) in the terminal: uvicorn shuts down gracefully, then raises KeyboardInterrupt again
    for its caller; the command ends there, without printing it."""
    import os
    import signal

    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    proc = subprocess.Popen([sys.executable, "-m", "arenahub", *command, "--port", str(number)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", number), timeout=1):
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out


class _Wire:
    """A transport that records each write (each would be one system call)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


async def test_a_whole_response_goes_out_in_one_write_and_a_head_alone_at_the_end_of_the_turn() -> None:
    loop = asyncio.get_running_loop()
    wire = _Wire()
    whole = connections.HeadWithBody(wire, loop)  # type: ignore[arg-type]
    whole.write(b"HTTP/1.1 200 OK\r\n\r\n")
    whole.write(b"body")
    whole.write(b"more")
    assert wire.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]
    await asyncio.sleep(0)
    assert len(wire.writes) == 2  # nothing was left to flush

    wire = _Wire()
    streamed = connections.HeadWithBody(wire, loop)  # type: ignore[arg-type]
    streamed.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # a head that waits for nothing: out at the turn's end
    assert wire.writes == []
    await asyncio.sleep(0)
    assert wire.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert streamed.get_extra_info("peername") == "extra peername"

    wire = _Wire()
    closing = connections.HeadWithBody(wire, loop)  # type: ignore[arg-type]
    closing.write(b"HTTP/1.1 500 x\r\n\r\n")
    closing.close()
    assert wire.writes == [b"HTTP/1.1 500 x\r\n\r\n"] and wire.closed
