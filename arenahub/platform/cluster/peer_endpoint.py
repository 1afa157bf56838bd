"""``/api/cluster/peer``: the other instances' requests for the clients whose tunnels this instance holds
(protocol/peer.py; the requesting side is cluster/peers.py).

Each ``Forward`` is placed on the client's session here as a request of this instance would be (its
breaker, RPM and capacity are this instance's to keep: cluster/relayed.py), and its frames are relayed
back as the requester grants room for them (its ``Window`` frames), so the requester's consumer holds
the client back as it would on one instance. A request this instance cannot place now (the client
left, is drained, out of rotation, at its rate limit or busy) is answered ``NotHere`` at once. Only an
instance that knows the cluster's secret (kept in the database) may connect.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import TYPE_CHECKING

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from arenahub.platform.attempt import Placement
from arenahub.platform.cluster import relayed
from arenahub.platform.tunnel_session import ClientGone, ClientSession
from arenahub.protocol import frames, peer

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

log = logging.getLogger("arenahub.platform.cluster")

CLOSE_UNAUTHORIZED = 4401
MAX_FORWARDS = 10_000  # requests one peer may have open here at once


class _Relay:
    __slots__ = ("credit", "id", "placement", "room", "session", "task")

    def __init__(self, request_id: str, placement: Placement, window: int) -> None:
        self.id = request_id
        self.placement = placement
        self.session: ClientSession = placement.session
        self.credit = window
        self.room = asyncio.Event()
        self.room.set()
        self.task: asyncio.Task[None] | None = None


async def peer_endpoint(ws: WebSocket) -> None:
    platform: Platform = ws.app.state.platform
    secret = platform.cluster_secret
    offered = ws.headers.get(peer.TOKEN_HEADER, "")
    if not secret or not hmac.compare_digest(offered.encode(), secret.encode()):
        await ws.close(code=CLOSE_UNAUTHORIZED, reason="not an instance of this cluster")
        return
    await ws.accept()
    who = ws.headers.get(peer.INSTANCE_HEADER, "?")[:64]
    outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
    relays: dict[str, _Relay] = {}

    async def write() -> None:
        while (data := await outbox.get()) is not None:
            await ws.send_bytes(data)

    writer = asyncio.create_task(write())
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes") or message.get("text") or b""
            try:
                frame = peer.decode(data)
            except frames.FrameError:
                log.warning("platform instance %s sent a frame that does not decode; ignored", who)
                continue
            if isinstance(frame, peer.Forward):
                _forward(platform, frame, relays, outbox)
            elif isinstance(frame, frames.Window):
                relay = relays.get(frame.id)
                if relay is not None:
                    relay.credit += frame.bytes
                    relay.room.set()
            elif isinstance(frame, frames.Cancel):
                relay = relays.pop(frame.id, None)
                if relay is not None:
                    relay.session.cancel(frame.id, frame.reason)
                    if relay.task is not None:
                        relay.task.cancel()
    except WebSocketDisconnect:
        pass
    finally:
        for relay in list(relays.values()):
            relay.session.cancel(relay.id, f"platform instance {who} went away")
            if relay.task is not None:
                relay.task.cancel()
        outbox.put_nowait(None)
        writer.cancel()


def _forward(platform: Platform, frame: peer.Forward, relays: dict[str, _Relay],
             outbox: asyncio.Queue[bytes | None]) -> None:
    session = platform.registry.get(frame.client_id)
    placed: Placement | relayed.NotPlaced
    if session is None or session.closed:
        placed = relayed.NotPlaced("the client is not connected here")
    elif frame.id in relays or len(relays) >= MAX_FORWARDS:
        placed = relayed.NotPlaced("too many requests from one instance")
    else:
        placed = relayed.place(platform.dispatcher, session, frame.id, bytes(frame.body), frame.kind)
    if isinstance(placed, relayed.NotPlaced):
        wait = None if placed.retry_after is None else min(3600.0, max(0.0, placed.retry_after))
        outbox.put_nowait(peer.encode(peer.NotHere(id=frame.id, reason=placed.reason, retry_after=wait)))
        return
    relay = _Relay(frame.id, placed, frame.window)
    relays[frame.id] = relay
    relay.task = asyncio.create_task(_pump(platform, relay, relays, outbox), name=f"relay-{frame.id}")


async def _pump(platform: Platform, relay: _Relay, relays: dict[str, _Relay],
                outbox: asyncio.Queue[bytes | None]) -> None:
    """The client's frames to the requesting instance, as it grants room for them; then how it ended, in
    the client's health and RPM window here."""
    last: frames.End | frames.Error | ClientGone | None = None
    first_byte_at: float | None = None
    try:
        while True:
            item = await relay.placement.queue.get()
            if isinstance(item, ClientGone):
                last = item
                outbox.put_nowait(peer.encode(peer.Gone(id=relay.id, reason=item.reason)))
                return
            data = msgspec.json.encode(item)
            if isinstance(item, frames.Chunk):
                first_byte_at = first_byte_at or time.monotonic()
                while relay.credit <= 0:
                    relay.room.clear()
                    await relay.room.wait()
                relay.credit -= len(data)
            outbox.put_nowait(data)
            if not isinstance(item, frames.Chunk):
                last = item
                relay.session.finish(relay.id)
                return
    finally:
        relays.pop(relay.id, None)
        relayed.ended(platform.dispatcher, relay.placement, last, first_byte_at)
