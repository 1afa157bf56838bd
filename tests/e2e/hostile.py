"""A hostile client: the real tunnel protocol (``arenahub.protocol.frames``) in the hands of a stranger
who says whatever pays. Tests drive it trick by trick against a real platform process.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from arenahub.protocol import frames

from .harness import Platform, Stack


class HostileClient:
    """One tunnel connection. It answers only when told to, keeps every frame the platform sends
    (requests, window grants, notices), and counts what it sends."""

    def __init__(self, platform: Platform, client_id: str, api_key: str) -> None:
        self.url = platform.api_url.replace("http://", "ws://") + "/ws"
        self.client_id, self.api_key = client_id, api_key
        self.requests: asyncio.Queue[frames.Request] = asyncio.Queue()
        self.received: list[frames.Frame] = []
        self.granted: dict[str, int] = {}
        self.sent_bytes = 0
        self.closed = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    @classmethod
    async def register(cls, stack: Stack, platform: Platform, name: str = "hostile", **options: str) -> HostileClient:
        extra = [item for k, v in options.items() for item in (f"--{k.replace('_', '-')}", v)]
        account = await asyncio.to_thread(stack.admin, "create-client", "--name", name, *extra,
                                          database_url=platform.database_url)
        return cls(platform, account["client_id"], account["api_key"])

    async def connect(self, models: list[str], *, heartbeats: bool = True, **hello: Any) -> frames.Welcome:
        """Say hello and read the welcome; then (``heartbeats``) send a heartbeat every second, as
        the hello announces, so that the platform keeps it (unless a test wants to be dropped)."""
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, max_msg_size=256 * 1024 * 1024)
        await self.send(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=self.client_id,
                                     api_key=self.api_key, models=models, max_concurrent_requests=64,
                                     heartbeat_interval_seconds=hello.pop("heartbeat_interval_seconds", 1.0),
                                     **hello))
        msg = await self._ws.receive(timeout=10)
        welcome = frames.decode(msg.data)
        assert isinstance(welcome, frames.Welcome), welcome
        self._reader = asyncio.create_task(self._read())
        if heartbeats:
            self._heartbeats = asyncio.create_task(self._beat())
        return welcome

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                await self.heartbeat()
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                return

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                continue
            frame = frames.decode(msg.data)
            self.received.append(frame)
            if isinstance(frame, frames.Request):
                await self.requests.put(frame)
            elif isinstance(frame, frames.Window):
                self.granted[frame.id] = self.granted.get(frame.id, 0) + frame.bytes
        self.closed.set()

    @property
    def close_code(self) -> int | None:
        return None if self._ws is None else self._ws.close_code

    async def send(self, frame: frames.Frame | bytes) -> None:
        assert self._ws is not None
        data = frame if isinstance(frame, bytes) else frames.encode(frame)
        self.sent_bytes += len(data)
        await self._ws.send_bytes(data)

    async def next_request(self, timeout: float = 10.0) -> frames.Request:
        return await asyncio.wait_for(self.requests.get(), timeout)

    async def answer(self, request: frames.Request, text: str, usage: dict[str, Any] | None = None,
                     pieces: int = 1) -> None:
        step = max(1, -(-len(text) // pieces))
        for i in range(0, len(text), step):
            await self.send(chunk(request.id, text[i:i + step]))
        await self.send(frames.End(id=request.id, usage=usage))

    async def heartbeat(self, **fields: Any) -> None:
        await self.send(frames.Heartbeat(stats=frames.ClientStats(), **fields))

    async def close(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._http is not None:
            await self._http.close()


def chunk(request_id: str, text: str) -> frames.Chunk:
    return frames.Chunk(id=request_id, events=[[{"index": 0, "delta": {"content": text}}]])
