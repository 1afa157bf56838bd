"""Clients held by other instances, as this instance's dispatcher sees them (protocol/peer.py).

Every second ``RemoteClients.sync`` turns the cluster's client cards (cluster/clients.py) into
``RemoteSession`` objects: a ``ClientSession`` whose frames go over the ``PeerLink`` to the instance that
holds the client's tunnel, instead of over a tunnel of its own. The dispatcher routes to them as to
its own clients: the same strategies, queue, leases, retries before the first byte, in-band errors
after it, cancel on the consumer's disconnect and flow control. The instance that holds the client
is the one that decides whether it takes the request (``NotHere`` when it cannot: A then routes around
that client for a second, as for a client's 429).

One ``PeerLink`` per other instance: a WebSocket, authenticated with the cluster's secret, that every
request to that instance's clients shares. When it breaks, every request on it ends as a client that
went away does (retried elsewhere before the first byte, an error event after it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import aiohttp
import msgspec

from arenahub.platform.cluster.clients import ClientCard
from arenahub.platform.flow import DEFAULT_WINDOW, Inbox
from arenahub.platform.registry import served_models
from arenahub.platform.tunnel_session import ClientGone, ClientSession
from arenahub.protocol import frames, peer

log = logging.getLogger("arenahub.platform.cluster")


class PeerLink:
    """The WebSocket to one other instance, shared by every request to its clients."""

    def __init__(self, instance: str, url: str, secret: str, http: aiohttp.ClientSession, me: str) -> None:
        self.instance = instance
        self.url = url.rstrip("/")
        self._secret = secret
        self._http = http
        self._me = me
        self._requests: dict[str, RemoteSession] = {}
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-{self.instance}")

    def send(self, frame: peer.PeerFrame, session: RemoteSession | None = None) -> None:
        if session is not None and isinstance(frame, peer.Forward):
            self._requests[frame.id] = session
        if isinstance(frame, frames.Cancel):
            self._requests.pop(frame.id, None)
        if not self.closed:
            self._outbox.put_nowait(peer.encode(frame))

    def forget(self, request_id: str) -> None:
        self._requests.pop(request_id, None)

    async def close(self, reason: str) -> None:
        self._end(reason)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _end(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._outbox.put_nowait(None)
        requests, self._requests = self._requests, {}
        for request_id, session in requests.items():
            session.gone(request_id, reason)

    async def _run(self) -> None:
        reason = f"the link to platform instance {self.instance} ended"
        try:
            async with self._http.ws_connect(self.url + peer.PATH, heartbeat=15.0,
                                             max_msg_size=4 * frames.MAX_FRAME_BYTES,
                                             headers={peer.TOKEN_HEADER: self._secret,
                                                      peer.INSTANCE_HEADER: self._me}) as ws:
                writer = asyncio.create_task(self._write(ws))
                try:
                    async for message in ws:
                        if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                            break
                        self._received(message.data)
                finally:
                    writer.cancel()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = f"platform instance {self.instance} is unreachable ({type(exc).__name__})"
            log.warning("%s", reason)
        finally:
            self._end(reason)

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while (data := await self._outbox.get()) is not None:
            await ws.send_bytes(data)
        await ws.close()

    def _received(self, data: bytes | str) -> None:
        try:
            frame = peer.decode(data)
        except frames.FrameError:
            log.warning("platform instance %s sent a frame that does not decode; ignored", self.instance)
            return
        if isinstance(frame, peer.Forward | frames.Window | frames.Cancel):
            return  # frames for the other direction
        session = self._requests.get(frame.id)
        if session is None:
            return  # its request ended here already
        if isinstance(frame, peer.Gone):
            self._requests.pop(frame.id, None)
            session.gone(frame.id, frame.reason)
        elif isinstance(frame, peer.NotHere):
            self._requests.pop(frame.id, None)
            session.gone(frame.id, f"platform instance {self.instance}: {frame.reason}", busy=True,
                         wait=frame.retry_after)
        else:
            if not isinstance(frame, frames.Chunk):
                self._requests.pop(frame.id, None)
            session.deliver(frame, len(data))


class _Channel:
    """What a remote session has in place of a WebSocket: nothing is ever sent on it directly."""

    async def send_bytes(self, data: bytes) -> None:
        return None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        return None


class RemoteSession(ClientSession):
    """A client another instance holds, as a session of this one (see the module docstring)."""

    def __init__(self, card: ClientCard, link: PeerLink, *, window: int, slow_consumer_seconds: float) -> None:
        hello = frames.Hello(version=frames.PROTOCOL_VERSION, client_id=card.client_id, api_key="",
                             models=card.models, capabilities=card.capabilities,
                             max_concurrent_requests=card.max_concurrent)
        super().__init__(_Channel(), client_id=card.client_id, name=card.name,  # type: ignore[arg-type]
                         connection_id=card.connection_id, hello=hello, max_concurrent=card.max_concurrent,
                         window=window, slow_consumer_seconds=slow_consumer_seconds)
        self.link = link
        self.platform_instance = card.instance  # the platform instance holding its tunnel
        self.instance = ""  # which copy of the client it is: known where it is connected
        self.card = card
        self.connected_at = card.connected_at
        self.update(card)  # drained there: drained here too

    def update(self, card: ClientCard) -> None:
        self.card = card
        self.models = set(card.models)
        self.offered = set(card.models)
        self.capabilities = list(card.capabilities)
        self.max_concurrent = max(1, card.max_concurrent)
        self.self_draining = card.draining
        self.moving = card.moving

    @property
    def active(self) -> int:
        """Its load as its instance last said (which counts this instance's requests too), or what this
        instance has sent it since, whichever is more."""
        return max(self.card.active, len(self._requests))

    @property
    def available(self) -> bool:
        return not self.closed and not self.link.closed and self.card.available and not self.card.kept_out

    def send_nowait(self, frame: frames.Frame) -> None:
        if self.closed:
            return
        if isinstance(frame, frames.Request):
            self.link.send(peer.Forward(id=frame.id, client_id=self.client_id, body=frame.body, kind=frame.kind,
                                        window=frame.window or DEFAULT_WINDOW), self)
        elif isinstance(frame, frames.Window | frames.Cancel):
            self.link.send(frame)

    def finish(self, request_id: str) -> None:
        super().finish(request_id)
        self.link.forget(request_id)

    def gone(self, request_id: str, reason: str, busy: bool = False, wait: float | None = None) -> None:
        """Its request ended without an answer's end: the client, or the instance holding it, went away; or
        (``busy``) that instance would not place it now."""
        self._requests.fail(request_id, ClientGone(reason, busy=busy, wait=wait))

    def deliver(self, frame: frames.Chunk | frames.End | frames.Error, size: int = 0) -> Inbox | None:
        return super().deliver(frame, size or len(msgspec.json.encode(frame)))


class RemoteClients:
    """The remote sessions, kept in step with the cluster's cards, and the links they use."""

    def __init__(self, me: str, secret: Callable[[], str], instance_url: Callable[[str], str | None], *,
                 window: Callable[[], int], slow_consumer_seconds: Callable[[], float]) -> None:
        self._me = me
        self._secret = secret
        self._instance_url = instance_url
        self._window = window
        self._slow = slow_consumer_seconds
        self._links: dict[str, PeerLink] = {}
        self._sessions: dict[str, RemoteSession] = {}
        self._http: aiohttp.ClientSession | None = None
        self.synced_at = 0.0

    def sessions(self) -> Iterator[RemoteSession]:
        return iter(list(self._sessions.values()))

    def get(self, client_id: str) -> RemoteSession | None:
        return self._sessions.get(client_id)

    def models(self) -> set[str]:
        return served_models(self._sessions.values())

    def sync(self, cards: list[ClientCard]) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        wanted = {c.client_id: c for c in cards if c.instance != self._me}
        for client_id in list(self._sessions):
            gone = self._sessions[client_id]
            card = wanted.get(client_id)
            if card is None or card.connection_id != gone.connection_id or gone.link.closed:
                del self._sessions[client_id]  # no new work goes there
                if gone.link.closed or not gone.request_ids():
                    gone.mark_closed(f"the client left platform instance {gone.platform_instance}")
                # Else its answers in flight go on over the link: the instance that held the client lets them
                # finish (a client that moves keeps its old tunnel until they are done), or says Gone for each.
        for client_id, card in wanted.items():
            known = self._sessions.get(client_id)
            if known is not None:
                known.update(card)
                continue
            link = self._link(card.instance)
            if link is not None:
                self._sessions[client_id] = RemoteSession(card, link, window=self._window(),
                                                          slow_consumer_seconds=self._slow())
        for instance in [i for i, link in self._links.items() if link.closed]:
            del self._links[instance]
        self.synced_at = time.monotonic()

    def _link(self, instance: str) -> PeerLink | None:
        link = self._links.get(instance)
        if link is not None and not link.closed:
            return link
        url = self._instance_url(instance)
        if url is None or self._http is None:
            return None
        link = self._links[instance] = PeerLink(instance, url, self._secret(), self._http, self._me)
        link.start()
        return link

    async def close(self) -> None:
        for link in list(self._links.values()):
            await link.close("this platform instance is shutting down")
        if self._http is not None:
            await self._http.close()
