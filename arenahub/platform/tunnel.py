"""The platform's end of the tunnel: clients connect out to ``/api/ws`` and take requests over it."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Protocol

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from arenahub.logs import printable
from arenahub.platform.accounting import credentials
from arenahub.platform.storage import accounts
from arenahub.platform.tunnel_session import ClientSession
from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from arenahub.platform.catalogue import ModelCatalogue
    from arenahub.platform.cluster.presence import Presence
    from arenahub.platform.dispatch import Dispatcher
    from arenahub.platform.metrics import PlatformMetrics
    from arenahub.platform.registry import LocalClientRegistry
    from arenahub.platform.settings import PlatformSettings
    from arenahub.platform.throttle import CredentialThrottle

log = logging.getLogger("arenahub.platform.tunnel")


class TunnelHost(Protocol):
    """What the tunnel uses of the platform (``runtime.Platform`` is one; a Protocol, as runtime.py imports
    this module)."""

    shutting_down: bool
    engine: AsyncEngine
    settings: PlatformSettings
    registry: LocalClientRegistry
    presence: Presence
    dispatcher: Dispatcher
    catalogue: ModelCatalogue
    metrics: PlatformMetrics
    credential_throttle: CredentialThrottle

    async def client_connected(self, session: ClientSession, hello: frames.Hello) -> None: ...

    def client_heartbeat(self, session: ClientSession, hb: frames.Heartbeat) -> None: ...

    def client_routing_changed(self, client_id: str) -> None: ...

    def client_refused(self, client_id: str, code: str, message: str) -> None: ...

    def client_disconnected(self, session: ClientSession) -> None: ...


HELLO_TIMEOUT_SECONDS = 10.0
# The largest frame a client may send (the server closes the socket with 1009 beyond it): a heartbeat
# with every bound at its maximum is about 300 KB, an answer's chunk far less.
MAX_FRAME_BYTES = frames.MAX_FRAME_BYTES
MAX_BAD_FRAMES = 20


def _where(address: str, instance: str) -> str:
    """Where a copy of a client runs, as the dashboard says it: its address, and its own name for itself."""
    return f"{address} ({instance})" if instance else address


async def _refuse(ws: WebSocket, code: str, message: str, close_code: int, retry: bool = False) -> None:
    log.info("refusing a client: %s (%s)", code, message)
    try:
        await ws.send_bytes(frames.encode(frames.Refused(code=code, message=message, retry=retry)))
        await ws.close(code=close_code, reason=message[:120])
    except (RuntimeError, OSError, WebSocketDisconnect):
        pass  # the peer left first; nothing more to tell it


async def _receive_frame(ws: WebSocket) -> frames.Frame | None:
    """The next frame, or None when the socket closed. Raises FrameError on garbage (or a batch: a client
    sends the hello alone)."""
    data = await _receive_message(ws)
    return None if data is None else frames.decode(data)


async def _receive_message(ws: WebSocket) -> bytes | str | None:
    """The next message, or None when the socket closed (a message over the server's size limit closes
    it with 1009 first)."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        if message.get("code") == 1009:
            raise FrameTooLarge()
        return None
    data = message.get("bytes")
    if data is None:
        data = message.get("text") or ""
    if len(data) > MAX_FRAME_BYTES:  # the server's own limit is larger in a cluster (its peer links)
        await ws.close(code=1009, reason="frame too large")
        raise FrameTooLarge()
    return data


class FrameTooLarge(Exception):
    """The client sent a frame over the tunnel's size limit; the server closed the socket (1009)."""


async def tunnel_endpoint(ws: WebSocket) -> None:
    platform: TunnelHost = ws.app.state.platform
    if platform.shutting_down:
        # Refused before the upgrade, as plain HTTP: a load balancer sends the connection on to another instance
        # (retry-on 503); a client given this instance's own URL tries its next URL, or again shortly.
        log.info("refusing a client's connection: this instance is shutting down")
        await ws.send_denial_response(JSONResponse(
            {"error": {"code": "shutting_down", "message": "this platform instance is shutting down; connect to "
                       "another instance, or again shortly"}}, status_code=503, headers={"Retry-After": "1"}))
        return
    await ws.accept()
    try:
        hello = await asyncio.wait_for(_receive_frame(ws), HELLO_TIMEOUT_SECONDS)
    except TimeoutError:
        await _refuse(ws, "hello_timeout", "no hello frame within 10 s", frames.CLOSE_PROTOCOL_ERROR, retry=True)
        return
    except frames.FrameError as exc:
        await _refuse(ws, "protocol_error", f"the first frame must be a valid hello: {exc}",
                      frames.CLOSE_PROTOCOL_ERROR)
        return
    except FrameTooLarge:
        log.info("refusing a client: its hello was over %d bytes", MAX_FRAME_BYTES)
        return
    if hello is None:
        return
    if not isinstance(hello, frames.Hello):
        await _refuse(ws, "protocol_error", f"the first frame must be hello, got {type(hello).__name__.lower()}",
                      frames.CLOSE_PROTOCOL_ERROR)
        return
    if hello.version != frames.PROTOCOL_VERSION:
        await _refuse(ws, "unsupported_version",
                      f"protocol version {hello.version} is not supported; this platform speaks "
                      f"{frames.PROTOCOL_VERSION}: update the client", frames.CLOSE_UNSUPPORTED_VERSION)
        return
    address = ws.client.host if ws.client else "unknown"
    try:
        await platform.credential_throttle.check(address, "client_key")
    except ApiError as err:
        await _refuse(ws, err.code, err.message, frames.CLOSE_FORBIDDEN, retry=True)
        return
    account = await accounts.get_client(platform.engine, hello.client_id)
    if account is None or not credentials.matches(hello.api_key, account.api_key_hash):
        await platform.credential_throttle.failed(address, "client_key")
        message = ("client_id or api_key is wrong (was the key regenerated? download the client "
                   "package again)")
        if account is not None:  # a registered client with a wrong key: the admin sees why it is out
            platform.client_refused(account.id, "invalid_credentials",
                                    "the client offered an API key that is not its current one (was the key "
                                    "regenerated? download the client package again)")
        await _refuse(ws, "invalid_credentials", message, frames.CLOSE_INVALID_CREDENTIALS)
        return
    if account.disabled:
        platform.client_refused(account.id, "client_disabled", "this client is disabled by an administrator")
        await _refuse(ws, "client_disabled", "this client is disabled by an administrator",
                      frames.CLOSE_FORBIDDEN)
        return

    current = platform.registry.get(account.id)
    if hello.standby and current is not None and not current.closed:
        serving, waiting = current.where, _where(address, hello.instance)
        # Two copies of one client: the one that was replaced waits instead of taking the place back.
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(current.connected_at))
        platform.client_refused(account.id, "client_id_in_use",
                                f"two instances with this client id are running: the one from {serving} "
                                f"serves, the one from {waiting} stands by (stop one of them)")
        await _refuse(ws, "client_id_in_use",
                      f"another instance with this client id is connected, from {serving} since {since}; "
                      "this one stands by and connects when that one leaves", frames.CLOSE_REPLACED, retry=True)
        return

    elsewhere = await platform.presence.elsewhere(account.id)
    if elsewhere is not None:  # connected to another instance of the cluster
        waiting = _where(address, hello.instance)
        if hello.standby:
            platform.client_refused(account.id, "client_id_in_use",
                                    f"two instances with this client id are running: one serves on platform instance "
                                    f"{elsewhere.instance}, the one from {waiting} stands by (stop one of them)")
            await _refuse(ws, "client_id_in_use",
                          f"another instance with this client id is connected to platform instance "
                          f"{elsewhere.instance}; this one stands by and connects when that one leaves",
                          frames.CLOSE_REPLACED, retry=True)
            return
        await platform.presence.take_over(elsewhere, waiting)

    session = ClientSession(ws, client_id=account.id, name=account.name,
                            connection_id=secrets.token_hex(6), hello=hello,
                            max_concurrent=min(account.max_concurrent, hello.max_concurrent_requests),
                            rpm=account.rpm, rate_limits=platform.dispatcher.client_limits,
                            priority=account.priority, weight=account.weight, admin_draining=account.draining,
                            window=platform.settings.answer_window_bytes,
                            slow_consumer_seconds=platform.settings.slow_consumer_seconds,
                            catalogue=platform.catalogue)
    session.key_hash = account.api_key_hash  # a regenerated key ends this connection
    session.address = address
    health = platform.dispatcher.client_connecting(account)
    # The welcome is queued first: a routing frame for this client (an admin change read meanwhile) may be
    # queued while client_connected awaits the database, and a client reads a welcome first.
    session.send_nowait(frames.Welcome(version=frames.PROTOCOL_VERSION, connection_id=session.connection_id,
                                       client_name=account.name, max_concurrent_requests=session.max_concurrent,
                                       capabilities=[frames.BATCHES]))
    await platform.client_connected(session, hello)
    session.start()
    if session.draining or health.maintenance or health.breaker(platform.dispatcher.clock()).value != "closed":
        platform.client_routing_changed(account.id)  # the client assumes normal routing unless told
    # The lower of the two limits applies: say which, so the number matches what the admin set or the client's config.
    limit = ("" if account.max_concurrent == hello.max_concurrent_requests else
             f" (the client's own limit; registered {account.max_concurrent})"
             if hello.max_concurrent_requests < account.max_concurrent else
             f" (as registered; the client's config allows {hello.max_concurrent_requests})")
    log.info("client %s (%s) connected: %d model(s), max %d concurrent%s, rpm %s", account.id, account.name,
             len(session.models), session.max_concurrent, limit, session.rpm or "unlimited")
    reason = "the client closed the connection"
    try:
        reason = await _read_loop(ws, session, platform)
    except WebSocketDisconnect:
        pass
    except FrameTooLarge:
        reason = f"a frame over the limit of {MAX_FRAME_BYTES:,} bytes"
        platform.metrics.client_event(account.id, "too_large")
        platform.client_refused(account.id, "frame_too_large",
                                f"the client sent a frame larger than {MAX_FRAME_BYTES:,} bytes; the connection "
                                "was closed (1009)")
    finally:
        if session.moving and reason == "the client closed the connection":
            reason = "it moved to another platform instance, its answers here done"
        session.mark_closed(reason)
        platform.client_disconnected(session)
        log.info("client %s disconnected: %s", account.id, reason)


async def _read_loop(ws: WebSocket, session: ClientSession, platform: TunnelHost) -> str:
    bad_frames = 0
    unknown = UnknownFrames(session.client_id)
    while True:
        data = await _receive_message(ws)
        if data is None:
            return session.close_reason or "the client closed the connection"
        try:
            received = frames.decode_message(data)
        except frames.FrameError as exc:
            received = [(exc, len(data))]
        for frame, size in received:
            if isinstance(frame, frames.FrameError):
                bad_frames += 1
                platform.metrics.client_event(session.client_id, "malformed")
                session.send_nowait(frames.Notice(code="bad_frame",
                                                  message=f"ignored a malformed frame: {frame}"[:1000]))
                if bad_frames > MAX_BAD_FRAMES:
                    platform.client_refused(session.client_id, "protocol_error", "too many malformed frames")
                    await session.close(frames.CLOSE_PROTOCOL_ERROR, "too many malformed frames")
                    return "too many malformed frames"
                continue
            await _on_frame(frame, size, session, platform, unknown)


async def _on_frame(frame: frames.Frame, size: int, session: ClientSession, platform: TunnelHost,
                    unknown: UnknownFrames) -> None:
    """One frame from a connected client (``size``: its bytes on the wire)."""
    if isinstance(frame, (frames.Chunk, frames.End, frames.Error)):
        inbox = session.deliver(frame, size)
        if inbox is None:  # a request already ended (cancelled, timed out) or never sent here
            platform.metrics.client_event(session.client_id, "unknown_request")
            unknown.note(frame)
        elif inbox.over_bound:
            # It sent past its window: read nothing more from it until this consumer catches up
            # (or is cut as too slow), so that the platform never holds more than the bound.
            platform.metrics.client_event(session.client_id, "held_back")
            await inbox.room()
    elif isinstance(frame, frames.Heartbeat):
        session.on_heartbeat(frame)
        platform.client_heartbeat(session, frame)
    elif isinstance(frame, frames.Drain):
        log.info("client %s %s", session.client_id,
                 f"drains: {frame.reason or 'no reason given'}" if frame.draining else "takes work again")
        platform.dispatcher.client_drain(session, frame.draining, frame.reason[:200])
    else:
        session.send_nowait(frames.Notice(code="unexpected_frame",
                                          message=f"a client does not send {type(frame).__name__.lower()} frames"))


class UnknownFrames:
    """Answer frames for requests not in flight: usually late ones for a request just cancelled, so
    they are dropped; counted, and logged at most once a minute per connection."""

    EVERY = 60.0

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.count = 0
        self._logged_at: float | None = None
        self._since_logged = 0

    def note(self, frame: frames.Chunk | frames.End | frames.Error) -> None:
        self.count += 1
        self._since_logged += 1
        now = time.monotonic()
        if self._logged_at is None or now - self._logged_at >= self.EVERY:
            log.info("client %s: dropped %d frame(s) for requests not in flight here (last: a %s frame for %s)",
                     self.client_id, self._since_logged, type(frame).__name__.lower(), printable(frame.id, 40))
            self._logged_at = now
            self._since_logged = 0


async def heartbeat_watchdog(platform: TunnelHost, period: float = 0.5) -> None:
    """Drop clients that missed too many heartbeats (their socket may still look open)."""
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        for session in platform.registry.sessions():
            if not session.closed and session.heartbeat_overdue(platform.settings.missed_heartbeats, now):
                log.warning("client %s missed %d heartbeats; dropping it", session.client_id,
                            platform.settings.missed_heartbeats)
                session.mark_closed("missed heartbeats")
                platform.client_refused(session.client_id, "missed_heartbeats",
                                        f"no heartbeat for {platform.settings.missed_heartbeats} intervals")
                platform.client_disconnected(session)
                asyncio.create_task(session.close(frames.CLOSE_HEARTBEAT_TIMEOUT, "missed heartbeats"))
