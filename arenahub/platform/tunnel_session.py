"""One connected client, as the platform sees it: its socket, its capacity, its requests in flight."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from arenahub.platform.accounting.limits import Limits, LimitState
from arenahub.platform.catalogue import ModelCatalogue
from arenahub.platform.flow import DEFAULT_WINDOW, Inbox
from arenahub.protocol import frames, mux

log = logging.getLogger("arenahub.platform.tunnel")


def bounded_status(status: frames.SessionStatus | None) -> frames.SessionStatus | None:
    """A client's session report, cut to what the platform keeps and shows (a client may send anything)."""
    if status is None:
        return None

    def cut(text: str | None, n: int) -> str | None:
        return None if text is None else text[:n]

    checks = [frames.SessionCheck(name=c.name[:40], ok=c.ok, detail=c.detail[:300], advice=c.advice[:300])
              for c in status.checks[:MAX_CHECKS]]
    return frames.SessionStatus(
        bridge_reachable=status.bridge_reachable, browser_connected=status.browser_connected,
        session_valid=status.session_valid, needs_verification=status.needs_verification,
        rate_limited_until=status.rate_limited_until, last_error=cut(status.last_error, 500),
        state=cut(status.state, 40), action=cut(status.action, 500), checks=checks)


MAX_CHECKS = 20


def _served(capabilities: list[str]) -> list[str]:
    """What a client declares it serves: its capabilities but the protocol's own (``batches``, read at hello)."""
    return [c for c in capabilities if c != frames.BATCHES]


class ClientGone:
    """Put into a request's queue when its client disconnects or is dropped. ``by_platform``: the platform
    itself ended the connection (it is shutting down), not the client: the client is not at fault."""

    __slots__ = ("busy", "by_platform", "reason", "wait")

    def __init__(self, reason: str, by_platform: bool = False, busy: bool = False, wait: float | None = None) -> None:
        self.reason = reason
        self.by_platform = by_platform
        # The instance holding the client would not place the request now (cluster/peers.py): not an
        # attempt, and not the client's fault; it is routed around for a moment (``wait`` seconds when that
        # instance knows how long: its rate limit, or its breaker's cool-down).
        self.busy = busy
        self.wait = wait


Incoming = frames.Chunk | frames.End | frames.Error | ClientGone


# Session states in which the client's bridge cannot answer until a person acts (a tab to open, a sign-in, a
# check to pass): the platform routes nothing there meanwhile (frames.SESSION_STATES).
NOT_SERVING = frozenset({"bridge_unreachable", "no_tab", "userscript_outdated", "blocked", "cloudflare_challenge",
                         "verification_required", "signed_out", "session_invalid"})


class ClientSession:
    def __init__(self, ws: WebSocket, *, client_id: str, name: str, connection_id: str,
                 hello: frames.Hello, max_concurrent: int, rpm: int | None = None,
                 rate_limits: LimitState | None = None, priority: int = 0, weight: int = 1,
                 admin_draining: bool = False, window: int = DEFAULT_WINDOW,
                 slow_consumer_seconds: float = 60.0, catalogue: ModelCatalogue | None = None) -> None:
        self.ws = ws
        self.client_id = client_id
        self.name = name
        self.connection_id = connection_id
        self.client_version = hello.client_version[:64]  # as stored: clients.client_version
        # What it serves (shown on the dashboard), and whether it reads frames batched in one message.
        self.capabilities = _served(hello.capabilities)
        self.batches = frames.BATCHES in hello.capabilities
        # What the client says it serves, and what it serves to consumers: the same unless the
        # operator's model catalogue is on (catalogue.py).
        self.offered: set[str] = set(hello.models)
        self._catalogue = catalogue or ModelCatalogue()
        self.models: set[str] = self._catalogue.served(client_id, self.offered)
        self.max_concurrent = max(1, max_concurrent)
        # The rate limit set at registration (None: none). The dispatcher admits each request placed
        # here in ``rate_limits`` (its state, shared for reading) under ``limit_subject``, which
        # stays apart from consumer key ids and survives reconnects.
        self.rpm = rpm
        self.limits = Limits(rpm=rpm)
        self.limit_subject = f"client:{client_id}"
        self._rate_limits = rate_limits
        # Routing: operator-set priority and weight; drain by an admin or by the client itself.
        self.priority = priority
        self.weight = max(1, weight)
        self.admin_draining = admin_draining
        self.self_draining = False
        self.drain_reason = ""
        self.preferred_strategy = hello.preferred_routing_strategy
        self.key_hash = ""  # the client's api key hash when it connected
        self.address = ""  # where it connected from (as the platform sees it)
        self.instance = hello.instance  # which copy, as it says (host name and process id)
        self.hello_max_concurrent = hello.max_concurrent_requests
        self.heartbeat_interval = max(0.2, hello.heartbeat_interval_seconds)
        self.session_status: frames.SessionStatus | None = bounded_status(hello.session)
        self._upstream_limited_until = 0.0  # monotonic: its upstream (arena.ai) rate limits it until then
        self._busy_until = 0.0  # monotonic: another instance would not place work on it until then
        self.stats: frames.ClientStats | None = None
        self.connected_at = time.time()
        self.last_heartbeat = time.monotonic()
        self.last_heartbeat_wall = time.time()
        self.closed = False
        self.close_reason = ""
        # Told to move (this instance shuts down): its answers in flight finish here, new work goes to its
        # connection on another instance.
        self.moving = False
        self._requests: mux.Mux[Inbox, Incoming] = mux.Mux()  # in flight here, by request id
        self.window = window
        self.slow_consumer_seconds = slow_consumer_seconds
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    # -- routing view -------------------------------------------------------------------------
    @property
    def active(self) -> int:
        return len(self._requests)

    @property
    def available(self) -> bool:
        """Connected and able to answer: the bridge is reachable and its upstream session usable."""
        if self.closed:
            return False
        s = self.session_status
        if s is None:
            return True
        return (s.bridge_reachable and s.session_valid is not False and not s.needs_verification
                and s.browser_connected is not False and s.state not in NOT_SERVING)

    @property
    def where(self) -> str:
        """Its address, and which copy it says it is: "127.0.0.1 (laptop pid 4242)"."""
        return f"{self.address} ({self.instance})" if self.instance else self.address

    def upstream_rate_limited(self, seconds: float) -> None:
        """Its upstream refused work for ``seconds`` (a 429's Retry-After, bounded to an hour)."""
        seconds = max(0.0, min(seconds, 3600.0))
        self._upstream_limited_until = max(self._upstream_limited_until, time.monotonic() + seconds)

    def routed_around(self, seconds: float) -> None:
        """The instance holding this (remote) client would not place a request on it now: skip it this long."""
        self._busy_until = max(self._busy_until, time.monotonic() + seconds)

    def busy_wait(self) -> float:
        return max(0.0, self._busy_until - time.monotonic())

    def upstream_wait(self) -> float:
        """Seconds until its upstream takes work again; 0 when it does now."""
        return max(0.0, self._upstream_limited_until - time.monotonic())

    @property
    def draining(self) -> bool:
        return self.admin_draining or self.self_draining

    def serves(self, model: str) -> bool:
        return model in self.models

    def requests_in_window(self) -> int | None:
        """Requests placed here in the last minute, as counted against its RPM; None without an RPM."""
        if self.rpm is None or self._rate_limits is None:
            return None
        status = self._rate_limits.status(self.limit_subject, self.limits, now=time.monotonic())
        assert status.limit_requests is not None and status.remaining_requests is not None
        return status.limit_requests - status.remaining_requests

    # -- sending ------------------------------------------------------------------------------
    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"tunnel-writer-{self.client_id}")

    def send_nowait(self, frame: frames.Frame) -> None:
        """Queue a frame for the client; never blocks, so it is safe in cleanup paths."""
        if not self.closed:
            self._outbox.put_nowait(frames.encode(frame))

    async def _write_loop(self) -> None:
        # The first message (the welcome) goes alone: a client reads it before it reads batches.
        batching, outbox = False, self._outbox
        while True:
            data = await outbox.get()
            if data is None:
                return
            last = False
            if batching and not outbox.empty():  # what was queued meanwhile goes in the same message
                parts, size = [data], len(data)
                while size < frames.BATCH_BYTES and len(parts) < frames.MAX_BATCH_FRAMES and not outbox.empty():
                    more = outbox.get_nowait()
                    if more is None:
                        last = True
                        break
                    parts.append(more)
                    size += len(more)
                data = frames.batch(parts)
            try:
                await self.ws.send_bytes(data)
            except (RuntimeError, OSError, WebSocketDisconnect) as exc:  # the reader notices and cleans up
                log.info("client %s: send failed (%s)", self.client_id, exc)
                return
            if last:
                return
            batching = self.batches

    # -- requests -----------------------------------------------------------------------------
    def open(self, request_id: str, body: bytes, kind: str = frames.CHAT) -> Inbox:
        def grant(n: int) -> None:
            self.send_nowait(frames.Window(id=request_id, bytes=n))

        inbox = Inbox(self.window, grant, slow_consumer_seconds=self.slow_consumer_seconds)
        self._requests.open(request_id, inbox)
        self.send_nowait(frames.Request(id=request_id, body=msgspec.Raw(body), window=self.window,
                                        kind=frames.IMAGES if kind == frames.IMAGES else frames.CHAT))
        return inbox

    def finish(self, request_id: str) -> None:
        self._requests.end(request_id)

    def cancel(self, request_id: str, reason: str) -> None:
        if self._requests.end(request_id) is not None:  # not after its answer ended it
            self.send_nowait(frames.Cancel(id=request_id, reason=reason))

    def deliver(self, frame: frames.Chunk | frames.End | frames.Error, size: int = 0) -> Inbox | None:
        """Hand a frame (``size`` bytes on the wire) to its request's inbox, and return that inbox;
        None when no such request is in flight here (it ended, or was never sent: counted)."""
        inbox = self._requests.route(frame.id)
        if inbox is None:
            return None
        inbox.put_frame(frame, size)
        if not isinstance(frame, frames.Chunk):
            self._requests.end(frame.id)
        return inbox

    @property
    def unknown_frames(self) -> int:
        """Answer frames for requests not in flight here (ended, or never sent)."""
        return self._requests.unknown

    # -- lifecycle ----------------------------------------------------------------------------
    def on_heartbeat(self, hb: frames.Heartbeat) -> None:
        self.last_heartbeat = time.monotonic()
        self.last_heartbeat_wall = time.time()
        self.stats = hb.stats
        if hb.session is not None:
            self.session_status = bounded_status(hb.session)
            until = hb.session.rate_limited_until
            if isinstance(until, float | int) and until > time.time():
                self.upstream_rate_limited(until - time.time())
        if hb.models is not None:
            self.offered = set(hb.models)
            self.models = self._catalogue.served(self.client_id, self.offered)
        if hb.client_version:
            self.client_version = hb.client_version[:64]
        if hb.capabilities is not None:
            self.capabilities = _served(hb.capabilities)

    def catalogue_changed(self, catalogue: ModelCatalogue) -> None:
        self._catalogue = catalogue
        self.models = catalogue.served(self.client_id, self.offered)

    def heartbeat_overdue(self, missed: int, now: float) -> bool:
        return now - self.last_heartbeat > missed * self.heartbeat_interval

    def mark_closed(self, reason: str, by_platform: bool = False) -> None:
        """Stop routing here and fail every request in flight at once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._requests.fail_all(ClientGone(reason, by_platform))
        self._outbox.put_nowait(None)

    def request_ids(self) -> list[str]:
        """The requests in flight here."""
        return self._requests.ids()

    async def close(self, code: int, reason: str, by_platform: bool = False) -> None:
        self.mark_closed(reason, by_platform)
        try:
            await self.ws.close(code=code, reason=reason[:120])
        except (RuntimeError, OSError, WebSocketDisconnect):
            pass  # already closed by the peer

    def snapshot(self) -> dict[str, Any]:
        """The client's live state for status pages; no secrets in it."""
        return {
            "client_id": self.client_id, "name": self.name, "connected": not self.closed,
            "healthy": self.available, "active_requests": self.active,
            "draining": self.draining, "drained_by": ("admin" if self.admin_draining else "client")
            if self.draining else None, "drain_reason": self.drain_reason or None,
            "priority": self.priority, "weight": self.weight, "preferred_strategy": self.preferred_strategy,
            "max_concurrent": self.max_concurrent, "rpm": self.rpm,
            "requests_in_window": self.requests_in_window(), "models": sorted(self.models),
            "capabilities": sorted(self.capabilities),
            "pending_models": self._catalogue.pending(self.client_id, self.offered),
            "client_version": self.client_version, "connected_at": self.connected_at, "address": self.address,
            "instance": self.instance,
            "last_heartbeat": self.last_heartbeat_wall,
            "stats": msgspec.to_builtins(self.stats) if self.stats else None,
            "session": msgspec.to_builtins(self.session_status) if self.session_status else None,
        }
