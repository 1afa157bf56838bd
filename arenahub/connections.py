"""What a peer may hold of the HTTP server: uvicorn's protocols with connection caps (per address
and in all), header and body timeouts, a bound on header size, and a way for the app to drop a
connection at once (the ASGI extension ``arenahub.abort``)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from arenahub.asgi import ABORT_EXTENSION

log = logging.getLogger("arenahub.serving")

@dataclass(frozen=True)
class ServerLimits:
    """What a peer may hold of the server. Stock uvicorn waits for a request's headers and body as
    long as the peer likes, and accepts every connection until the process runs out of files."""

    # From a connection's opening (or a request's first byte, on a kept-alive one) to the end of the headers.
    header_timeout_seconds: float = 10.0
    # Longest silence while a request body arrives; then 408 and the connection closes.
    body_timeout_seconds: float = 30.0
    # A body may take body_timeout_seconds plus one second per this many bytes received; 0: no floor.
    body_min_bytes_per_second: int = 1024
    # Open connections per client address (IPv6: per /64), WebSockets included; 0: no cap. A trusted
    # reverse proxy's address is not capped (uvicorn's forwarded_allow_ips: 127.0.0.1 and ::1 by default).
    max_connections_per_address: int = 64
    # Open connections in all; 0: from the process's file-descriptor limit (see fd_connection_cap).
    max_connections: int = 0
    # A request's headers (request line included) may be this large; 431 beyond.
    max_header_bytes: int = 64 * 1024
    # The largest WebSocket message a peer may send (a client's tunnel frame); beyond it the socket
    # closes with 1009 (message too big).
    max_message_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("header_timeout_seconds", "body_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0, got {getattr(self, name)}")
        for name in ("body_min_bytes_per_second", "max_connections_per_address", "max_connections"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")


# Connections the automatic total cap allows at most, and the share of the file-descriptor limit it
# may use (the rest is for the database, log files and outgoing sockets).
AUTO_MAX_CONNECTIONS = 10_000
FD_SHARE = 0.75


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards ``wanted`` (never above the hard limit, as Go's
    runtime does at start); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d to %d", soft, target)
    return soft


def fd_connection_cap(soft_limit: int) -> int:
    if soft_limit == resource.RLIM_INFINITY:
        return AUTO_MAX_CONNECTIONS
    return max(1, min(AUTO_MAX_CONNECTIONS, int(soft_limit * FD_SHARE)))


def address_key(peer: tuple[str, int] | None) -> str:
    """Whose connection this is, for the per-address cap: the IP address; an IPv6 address by its /64
    (one host usually holds a whole /64); "" when unknown (a Unix socket), which no cap counts."""
    if peer is None:
        return ""
    host = peer[0]
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class Proxies:
    """The reverse proxies the server trusts (uvicorn's ``forwarded_allow_ips``: addresses, networks,
    or "*"). Each carries many clients' connections, so the per-address cap does not count them."""

    def __init__(self, trusted: list[str] | str) -> None:
        items = [t.strip() for t in (trusted.split(",") if isinstance(trusted, str) else trusted) if t.strip()]
        self.everyone = "*" in items
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in items:
            with contextlib.suppress(ValueError):
                if "/" in item:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.hosts.add(str(ipaddress.ip_address(item)))

    def __contains__(self, host: str) -> bool:
        if self.everyone or host in self.hosts:
            return True
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)


class ConnectionGuard:
    """Counts the open connections, per address and in all, admits or refuses each new one, and
    reports refusals and timeouts in the log, one line a minute at most."""

    REPORT_EVERY = 60.0

    def __init__(self, limits: ServerLimits, max_connections: int, proxies: Proxies | None = None) -> None:
        self.limits = limits
        self.max_connections = max_connections
        self.proxies = proxies or Proxies([])
        self.open = 0
        self.by_address: dict[str, int] = {}
        self.events: Counter[str] = Counter()  # since start, for tests and metrics
        self._unreported: Counter[str] = Counter()
        self._reported_at: float | None = None
        self._report_due = False
        self._last_refused = ""

    def key(self, peer: tuple[str, int] | None) -> str:
        """The address a connection from ``peer`` counts against ("": none, see address_key)."""
        return "" if peer is None or peer[0] in self.proxies else address_key(peer)

    def admit(self, key: str) -> bool:
        if self.open >= self.max_connections:
            self.note("refused: server at its connection limit", key)
            return False
        per_address = self.limits.max_connections_per_address
        if key and per_address:
            held = self.by_address.get(key, 0)
            if held >= per_address:
                self.note("refused: too many from one address", key)
                return False
            self.by_address[key] = held + 1
        self.open += 1
        return True

    def release(self, key: str) -> None:
        self.open -= 1
        if key and self.limits.max_connections_per_address:
            held = self.by_address.get(key, 0) - 1
            if held > 0:
                self.by_address[key] = held
            else:
                self.by_address.pop(key, None)

    def note(self, event: str, key: str) -> None:
        self.events[event] += 1
        self._unreported[event] += 1
        if event.startswith("refused"):
            self._last_refused = key
        if self._report_due:
            return
        wait = 0.0 if self._reported_at is None else self._reported_at + self.REPORT_EVERY - time.monotonic()
        if wait <= 0:
            self._report()
        else:
            self._report_due = True
            asyncio.get_running_loop().call_later(wait, self._report)

    def _report(self) -> None:
        self._report_due = False
        self._reported_at = time.monotonic()
        counts = ", ".join(f"{event} x{n}" for event, n in sorted(self._unreported.items()))
        refused = any(event.startswith("refused") for event in self._unreported)
        self._unreported.clear()
        log.log(logging.WARNING if refused else logging.INFO,
                "connection limits: %s (since the last such line); %d connections open, from %d addresses; "
                "last refused: %s", counts, self.open, len(self.by_address), self._last_refused or "-")


def _response(status: str, message: str, extra: str = "") -> bytes:
    body = message.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\n\r\n").encode() + body


REFUSED_FULL = _response("503 Service Unavailable", "The server has too many open connections; retry shortly.",
                         "retry-after: 1\r\n")
REFUSED_ADDRESS = _response("503 Service Unavailable", "Too many open connections from your address.",
                            "retry-after: 1\r\n")
TIMED_OUT = _response("408 Request Timeout", "The request did not arrive in time.")
HEADERS_TOO_LARGE = _response("431 Request Header Fields Too Large", "The request's headers are too large.")

_UNSTAMPED = -1.0
# Where a connection's current request is, as far as reading it goes: not reading one (idle on a
# kept-alive connection, or the whole request is in and the app answers it), headers, body.
_IDLE, _HEADERS, _BODY = 0, 1, 2


class GuardedConfig(uvicorn.Config):
    """uvicorn's config with the guarded protocols below and the guard that they share."""

    def __init__(self, app: ASGIApp, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, ws=GuardedWebSocketProtocol, **kwargs)
        wanted = limits.max_connections or AUTO_MAX_CONNECTIONS
        soft = raise_fd_limit(int(wanted / FD_SHARE) + 1)
        self.guard = ConnectionGuard(limits, limits.max_connections or fd_connection_cap(soft),
                                     Proxies(self.forwarded_allow_ips))


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard's caps and the header and body timeouts.

    The timeouts cost a request nothing while it arrives in one read: a timer is armed only when
    a read ends inside a request's headers or body, and it is never cancelled on time but checks,
    when it fires, whether the connection is still late (then re-arms for the rest).
    """

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, GuardedConfig)
        self.guard = config.guard
        self.limits = config.guard.limits
        self._key: str | None = None  # the guard's slot this connection holds (None: none)
        self._phase = _IDLE
        self._since = 0.0  # when the phase began (or the body's rate window, see _expire)
        self._last = 0.0  # the last body bytes
        self._received = 0  # body bytes since _since
        self._header_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        key = self.guard.key(get_remote_addr(transport))
        if not self.guard.admit(key):
            full = self.guard.open >= self.guard.max_connections
            transport.write(REFUSED_FULL if full else REFUSED_ADDRESS)
            transport.close()  # uvicorn never sees it: no parser state, no task, one write
            return
        self._key = key
        super().connection_made(transport)
        self._phase = _HEADERS
        self._since = self.loop.time()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:  # refused in connection_made
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._key is not None:
            self.guard.release(self._key)
            self._key = None
        super().connection_lost(exc)

    # The parser's callbacks only mark where the request is; the clock is read once, after the
    # read, and only when the read ends inside a request (``_UNSTAMPED``: the phase began in it).
    def data_received(self, data: bytes) -> None:
        before = self._phase
        HttpToolsProtocol.data_received(self, data)
        phase = self._phase
        if phase == _IDLE:
            return
        now = self.loop.time()
        if self._since == _UNSTAMPED:
            self._since = now
        if phase == _BODY:
            self._last = now
        elif before == _HEADERS:  # the whole read belongs to headers not yet complete
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._cut("headers too large", HEADERS_TOO_LARGE)
                return
        self._arm()

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        # The app may drop this connection at once (a consumer that reads too slowly: data left unsent).
        self.scope["extensions"] = {ABORT_EXTENSION: {"abort": self._abort}}
        if self._phase != _HEADERS:  # on a fresh connection the headers' time runs from its opening
            self._phase = _HEADERS
            self._since = _UNSTAMPED
            self._header_bytes = 0

    def on_headers_complete(self) -> None:
        before = self.cycle
        HttpToolsProtocol.on_headers_complete(self)
        if self.cycle is not before:  # a request (not a WebSocket upgrade): its response is written through this
            self.cycle.transport = HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]
        self._phase = _BODY
        self._since = _UNSTAMPED
        self._received = 0

    def on_body(self, body: bytes) -> None:
        HttpToolsProtocol.on_body(self, body)
        self._received += len(body)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        self._phase = _IDLE

    def handle_websocket_upgrade(self) -> None:
        # The connection becomes a WebSocket (a client's tunnel: long-lived, no timeouts): its slot
        # goes with it, and the WebSocket protocol releases it when it closes.
        key, self._key = self._key, None
        self._phase = _IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if isinstance(protocol, GuardedWebSocketProtocol):
            protocol.guard_key = key
        elif key is not None:
            self.guard.release(key)

    def _deadline(self) -> float:
        if self._phase == _HEADERS:
            return self._since + self.limits.header_timeout_seconds
        timeout = self.limits.body_timeout_seconds
        deadline = self._last + timeout
        rate = self.limits.body_min_bytes_per_second
        if rate:
            deadline = min(deadline, self._since + timeout + self._received / rate)
        return deadline

    def _arm(self) -> None:
        deadline = self._deadline()
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # it fires first and re-arms for the rest
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._phase == _IDLE or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # we stopped reading (the app is behind): not the peer's delay
            self._since = self._last = now
            self._received = 0
        if now < self._deadline():
            self._arm()
        elif self._phase == _HEADERS:
            self._cut("headers timed out", TIMED_OUT)
        else:
            self._cut("body timed out", TIMED_OUT)

    def _abort(self) -> None:
        """Drop the connection now, with what is left to send: its cycle sees the client leave."""
        self.guard.note("dropped: the peer read too slowly", self._key or "")
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # at once: the app returns before the loop reports the loss
            cycle.message_event.set()
        if not self.transport.is_closing():
            # A reset, not a close: the kernel would otherwise go on sending what it holds (megabytes)
            # to a peer that reads a few kilobytes a second.
            sock = self.transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

    def _cut(self, event: str, response: bytes) -> None:
        """Answer ``response`` if no answer is under way, and close the connection; the app, if it
        is reading this request, sees the client leave."""
        self.guard.note(event, self._key or "")
        cycle = self.cycle
        pending = cycle is not None and not cycle.response_complete
        if self._phase == _BODY:
            answer = cycle is None or not cycle.response_started
        else:  # a new request's headers: the previous request's answer must be complete
            answer = not pending
        if answer:
            self.transport.write(response)
        if pending:
            cycle.disconnected = True  # its sends are dropped from now on; its receive says disconnect
            cycle.message_event.set()
        self._phase = _IDLE
        self.transport.close()


class HeadWithBody:
    """The connection as one response writes to it: the response's head (its first write) waits until
    the first write of its body or the end of the event loop's turn, whichever comes first, so that a
    whole answer goes out in one write (one system call and one TCP segment instead of two: the
    consumer then reads it once). Everything else passes straight through."""

    __slots__ = ("_held", "_loop", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif not self._started:
            self._started = True
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, releasing the guard's slot that the upgrade handed it."""

    guard_key: str | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.guard_key is not None:
            assert isinstance(self.config, GuardedConfig)
            self.config.guard.release(self.guard_key)
            self.guard_key = None
