"""``/api/cluster/peer``: the other instances' requests for the clients whose tunnels this instance holds
(protocol/peer.py; the requesting side is cluster/peers.py).

Each ``Forward`` is opened on the client's session here as a request of this instance would be, and
its frames are relayed back as the requester grants room for them (its ``Window`` frames), so the
requester's consumer holds the client back as it would on one instance. A request this instance
cannot place now (the client left, is drained, out of rotation or busy) is answered ``NotHere`` at
once. Only an instance that knows the cluster's secret (kept in the database) may connect.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from arenahub.platform.flow import Inbox
from arenahub.platform.tunnel_session import ClientGone, ClientSession
from arenahub.protocol import frames, peer

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

log = logging.getLogger("arenahub.platform.cluster")

CLOSE_UNAUTHORIZED = 4401
MAX_FORWARDS = 10_000  # requests one peer may have open here at once


class _Relay:
    __slots__ = ("credit", "id", "room", "session", "task")

    def __init__(self, request_id: str, session: ClientSession, window: int) -> None:
        self.id = request_id
        self.session = session
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
    why = None
    if session is None or session.closed:
        why = "the client is not connected here"
    elif not session.available or session.draining:
        why = "the client takes no requests now"
    elif session.active >= session.max_concurrent:
        why = "the client is busy"
    elif frame.id in relays or len(relays) >= MAX_FORWARDS:
        why = "too many requests from one instance"
    if why is not None or session is None:
        outbox.put_nowait(peer.encode(peer.NotHere(id=frame.id, reason=why or "")))
        return
    relay = _Relay(frame.id, session, frame.window)
    relays[frame.id] = relay
    inbox = session.open(frame.id, bytes(frame.body), frame.kind)
    relay.task = asyncio.create_task(_pump(relay, inbox, relays, outbox), name=f"relay-{frame.id}")


async def _pump(relay: _Relay, inbox: Inbox, relays: dict[str, _Relay], outbox: asyncio.Queue[bytes | None]) -> None:
    """The client's frames to the requesting instance, as it grants room for them."""
    try:
        while True:
            item = await inbox.get()
            if isinstance(item, ClientGone):
                outbox.put_nowait(peer.encode(peer.Gone(id=relay.id, reason=item.reason)))
                return
            data = msgspec.json.encode(item)
            if isinstance(item, frames.Chunk):
                while relay.credit <= 0:
                    relay.room.clear()
                    await relay.room.wait()
                relay.credit -= len(data)
            outbox.put_nowait(data)
            if not isinstance(item, frames.Chunk):
                relay.session.finish(relay.id)
                return
    finally:
        relays.pop(relay.id, None)
