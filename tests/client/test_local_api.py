"""/platform/drain, /platform/undrain and the routing state at /platform/status, over a fake tunnel.

The link runs for real (its connection loop, reconnects and request handling); only the platform's
end of the WebSocket is a fake that answers the hello with a welcome and, like the platform, a
drain with a Routing frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
import httpx
import msgspec
import pytest
from starlette.applications import Starlette

from arenahub.client import local_api
from arenahub.client.config import ClientConfig, disabled_client_config
from arenahub.client.link import PlatformLink
from arenahub.client.stats import Stats
from arenahub.protocol import frames

SEED_HEALTH = {"enabled", "connected", "healthy", "platform_url", "client_id", "stats"}
NORMAL = {"draining": False, "drained_by": None, "drain_reason": None, "maintenance": None, "breaker": "closed"}
CONFIG = ClientConfig(path=Path("config.jsonc"), enabled=True, platform_url="http://platform", client_id="cl_1",
                      api_key="ck-secret", reconnect_max_delay_seconds=0.05)
CHAT = msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


class FakeTunnel:
    """The platform's end of one connection. ``log`` holds ("in", frame) for what the client
    received and ("out", frame) for what it sent, in order."""

    def __init__(self, platform: FakePlatform) -> None:
        self.platform = platform
        self.log: list[tuple[str, frames.Frame]] = []
        self.closed = False
        self.close_code: int | None = None
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.messages = 0  # what the client sent, in WebSocket messages
        self.push(frames.Welcome(version=frames.PROTOCOL_VERSION, connection_id="c1", client_name="fake",
                                 max_concurrent_requests=4,
                                 capabilities=[frames.BATCHES] if platform.batches else []))

    @property
    def sent(self) -> list[frames.Frame]:
        return [frame for way, frame in self.log if way == "out"]

    def push(self, frame: frames.Frame | bytes) -> None:
        self._inbox.put_nowait(frame if isinstance(frame, bytes) else frames.encode(frame))

    def drop(self) -> None:
        """The connection breaks (the platform restarts, the network goes)."""
        self._inbox.put_nowait(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> bool:
        return False

    async def send_bytes(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("closed")
        self.messages += 1
        for frame, _ in frames.decode_message(data):
            assert not isinstance(frame, frames.FrameError)
            self._sent(frame)

    def _sent(self, frame: frames.Frame) -> None:
        self.log.append(("out", frame))
        if isinstance(frame, frames.Drain):  # the platform answers every drain with the routing it now applies
            self.push(frames.Routing(draining=frame.draining or self.platform.admin_draining,
                                     drain_reason=frame.reason if frame.draining else
                                     ("drained by an administrator" if self.platform.admin_draining else "")))

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:
        return await self.__anext__()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> aiohttp.WSMessage:
        data = await self._inbox.get()
        if data is None:
            self.closed, self.close_code = True, 1006
            raise StopAsyncIteration
        try:
            self.log += [("in", frame) for frame, _ in frames.decode_message(data)
                         if not isinstance(frame, frames.FrameError)]
        except frames.FrameError:
            pass
        return aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, data, None)

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        self.closed, self.close_code = True, code
        self._inbox.put_nowait(None)


class FakePlatform:
    """Stands in for the link's aiohttp session: each ``ws_connect`` is a new tunnel (or fails while down)."""

    def __init__(self, batches: bool = False) -> None:
        self.tunnels: list[FakeTunnel] = []
        self.down = False
        self.admin_draining = False
        self.batches = batches  # it says it reads batches of frames

    async def ws_connect(self, url: str, **kwargs: Any) -> FakeTunnel:
        if self.down:
            raise aiohttp.ClientConnectionError("connection refused")
        self.tunnels.append(FakeTunnel(self))
        return self.tunnels[-1]


class FakeRelay:
    """A bridge whose answers wait for ``release``."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def model_list(self) -> tuple[list[str], set[str] | None]:
        return ["m"], None

    async def session_status(self) -> frames.SessionStatus:
        return frames.SessionStatus()

    async def answer(self, body: bytes) -> AsyncIterator[tuple[list[list[dict[str, Any]]], dict[str, Any] | None]]:
        await self.release.wait()
        yield [[{"index": 0, "delta": {"content": "done"}}]], None


async def eventually(probe: Callable[[], Any], what: str, timeout: float = 3.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := probe()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return result


@dataclass
class Local:
    link: PlatformLink
    platform: FakePlatform
    relay: FakeRelay
    http: httpx.AsyncClient

    async def connection(self, n: int) -> FakeTunnel:
        """The n-th connection (1-based), once the link is connected on it."""
        await eventually(lambda: len(self.platform.tunnels) >= n and self.link.connected
                         and self.link.connections == n, f"connection {n}")
        return self.platform.tunnels[n - 1]

    async def status(self) -> dict[str, Any]:
        resp = await self.http.get("/platform/status")
        assert resp.status_code == 200
        return resp.json()


@pytest.fixture(params=[False, True], ids=["single-frames", "batches"])
async def local(request: pytest.FixtureRequest) -> AsyncIterator[Local]:
    platform, relay = FakePlatform(batches=request.param), FakeRelay()
    link = PlatformLink(CONFIG, relay, platform, Stats(False))  # type: ignore[arg-type]
    app = Starlette(routes=local_api.routes)
    app.state.link = link
    link.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://client") as http:
            yield Local(link, platform, relay, http)
    finally:
        relay.release.set()
        await link.stop()


async def test_drain_and_undrain_send_the_frames_and_answer_with_the_new_routing(local: Local) -> None:
    tunnel = await local.connection(1)

    resp = await local.http.post("/platform/drain", json={"reason": "upgrading the bridge"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["applied"] is True and "no new work" in body["message"]
    assert body["drain"] == {"requested": True, "reason": "upgrading the bridge"}
    # The answer waited for the platform's Routing frame.
    drained = {**NORMAL, "draining": True, "drained_by": "client", "drain_reason": "upgrading the bridge"}
    assert body["routing"] == drained
    assert tunnel.sent[1:] == [frames.Drain(draining=True, reason="upgrading the bridge")]
    status = await local.status()
    assert status["routing"] == drained and status["drain"]["requested"] is True
    health = (await local.http.get("/health")).json()
    assert set(health) == SEED_HEALTH and health["healthy"] is True  # the seed's contract, drained or not

    resp = await local.http.post("/platform/undrain")
    assert resp.status_code == 200
    assert resp.json()["routing"] == NORMAL and resp.json()["drain"] == {"requested": False, "reason": None}
    assert tunnel.sent[2:] == [frames.Drain(draining=False)]
    assert (await local.status())["routing"] == NORMAL


async def test_drain_without_a_body_has_no_reason(local: Local) -> None:
    tunnel = await local.connection(1)
    resp = await local.http.post("/platform/drain")
    assert resp.status_code == 200 and resp.json()["routing"]["drain_reason"] is None
    assert tunnel.sent[1:] == [frames.Drain(draining=True, reason="")]


async def test_undrain_while_an_admin_drains_says_so(local: Local) -> None:
    local.platform.admin_draining = True
    tunnel = await local.connection(1)
    await local.http.post("/platform/drain", json={"reason": "mine"})
    resp = await local.http.post("/platform/undrain")
    assert resp.status_code == 200 and "administrator" in resp.json()["message"]
    assert resp.json()["routing"]["drained_by"] == "admin"
    assert tunnel.sent[-1] == frames.Drain(draining=False)


@pytest.mark.parametrize("body, says", [
    (b"{not json", "not valid JSON"),
    (b'["upgrading"]', "must be"),
    (b'{"reason": 42}', "$.reason"),
    (b'{"why": "typo"}', "why"),
    (b'{"reason": "' + b"x" * 201 + b'"}', "at most 200"),
])
async def test_bad_bodies_are_refused_and_nothing_is_sent(local: Local, body: bytes, says: str) -> None:
    tunnel = await local.connection(1)
    resp = await local.http.post("/platform/drain", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid_body" and says in resp.json()["error"]
    assert [type(f) for f in tunnel.sent] == [frames.Hello]
    assert (await local.status())["drain"]["requested"] is False


async def test_a_drain_survives_reconnects_until_undrained(local: Local) -> None:
    first = await local.connection(1)
    await local.http.post("/platform/drain", json={"reason": "upgrading"})

    first.drop()
    second = await local.connection(2)
    await eventually(lambda: len(second.sent) == 2, "the drain sent again")
    # Hello, then the welcome, then the drain again: the new connection is drained from its start.
    assert [(way, type(f)) for way, f in second.log[:3]] == [
        ("out", frames.Hello), ("in", frames.Welcome), ("out", frames.Drain)]
    assert second.sent[1] == frames.Drain(draining=True, reason="upgrading")
    status = await eventually(lambda: local.link.status()["routing"]["draining"] and local.link.status(),
                              "the platform's routing after the reconnect")
    assert status["routing"]["drained_by"] == "client"

    await local.http.post("/platform/undrain")
    second.drop()
    third = await local.connection(3)
    await asyncio.sleep(0.05)
    assert [type(f) for f in third.sent] == [frames.Hello]  # undrained stays undrained
    assert (await local.status())["routing"] == NORMAL


async def test_a_drain_asked_for_while_disconnected_is_applied_on_connect(local: Local) -> None:
    first = await local.connection(1)
    local.platform.down = True
    first.drop()
    await eventually(lambda: not local.link.connected, "the link down")

    resp = await local.http.post("/platform/drain", json={"reason": "while away"})
    assert resp.status_code == 202
    body = resp.json()
    assert body["applied"] is False and "sent to the platform on connect" in body["message"]
    assert body["drain"] == {"requested": True, "reason": "while away"}
    assert [type(f) for f in first.sent] == [frames.Hello]

    local.platform.down = False
    second = await local.connection(2)
    await eventually(lambda: len(second.sent) == 2, "the drain sent on connect")
    assert second.sent[1] == frames.Drain(draining=True, reason="while away")


async def test_routing_frames_show_in_status_and_reset_on_a_new_connection(
        local: Local, caplog: pytest.LogCaptureFixture) -> None:
    first = await local.connection(1)
    assert (await local.status())["routing"] == NORMAL

    with caplog.at_level(logging.INFO, logger="arenahub.client"):
        first.push(frames.Routing(maintenance="dropped 6 requests in the last hour", breaker="open"))
        status = await eventually(lambda: local.link.status()["routing"]["breaker"] == "open" and local.link.status(),
                                  "the routing frame")
    assert status["routing"] == {**NORMAL, "maintenance": "dropped 6 requests in the last hour", "breaker": "open"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "maintenance: dropped 6 requests in the last hour" in warnings[0] and "breaker open" in warnings[0]
    assert not any("ck-secret" in r.getMessage() for r in caplog.records)

    first.push(frames.Routing(draining=True, drain_reason="drained by an administrator", breaker="half_open"))
    await eventually(lambda: local.link.status()["routing"]["breaker"] == "half_open", "the next routing frame")
    assert (await local.status())["routing"] == {**NORMAL, "draining": True, "drained_by": "admin",
                                                 "drain_reason": "drained by an administrator",
                                                 "breaker": "half_open"}

    first.drop()
    await local.connection(2)
    assert (await local.status())["routing"] == NORMAL


async def test_unknown_and_unexpected_frames_are_skipped(local: Local) -> None:
    tunnel = await local.connection(1)
    tunnel.push(b'{"type": "from_a_newer_platform", "x": 1}')
    tunnel.push(b"not even json")
    tunnel.push(frames.Heartbeat(stats=frames.ClientStats()))  # a frame only clients send
    tunnel.push(frames.Routing(draining=True, drain_reason="drained by an administrator"))
    await eventually(lambda: local.link.status()["routing"]["draining"], "the routing frame after the others")
    assert local.link.connected and local.link.connections == 1


async def test_requests_in_flight_finish_while_drained(local: Local) -> None:
    tunnel = await local.connection(1)
    tunnel.push(frames.Request(id="r1", body=msgspec.Raw(CHAT)))
    await eventually(lambda: local.link.stats.active == 1, "the request in flight")

    assert (await local.http.post("/platform/drain")).status_code == 200
    local.relay.release.set()
    await eventually(lambda: any(isinstance(f, frames.End) for f in tunnel.sent), "the request's end")
    assert [type(f) for f in tunnel.sent] == [frames.Hello, frames.Drain, frames.Chunk, frames.End]
    assert (local.link.stats.processed, local.link.stats.failed) == (1, 0)


async def test_drain_with_the_integration_disabled_is_a_conflict(tmp_path: Path) -> None:
    link = PlatformLink(disabled_client_config(tmp_path / "config.jsonc"), FakeRelay(), FakePlatform(),  # type: ignore[arg-type]
                        Stats(False))
    app = Starlette(routes=local_api.routes)
    app.state.link = link
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://client") as http:
        for path in ("/platform/drain", "/platform/undrain"):
            resp = await http.post(path)
            assert resp.status_code == 409 and "enabled is false" in resp.json()["error"]
        assert (await http.get("/platform/status")).json()["routing"] == NORMAL


def test_every_local_endpoint_is_documented_in_the_client_section() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    client_section = readme.split("## The client", 1)[1].split("\n## ", 1)[0]
    for route in local_api.routes:
        assert f"`{next(iter(route.methods - {'HEAD'}))} {route.path}`" in client_section, route.path
    for field in NORMAL:
        assert f"| `{field}` |" in client_section, field


async def test_a_move_connects_again_at_once_while_the_answers_in_flight_finish_on_the_old_connection(
        local: Local) -> None:
    old = await local.connection(1)
    old.push(frames.Request(id="r1", body=msgspec.Raw(CHAT)))
    await eventually(lambda: local.link.stats.active == 1, "the request in flight")

    old.push(frames.Move(reason="instance i-1 is shutting down", grace_seconds=30))
    new = await local.connection(2)  # at once: no backoff
    assert not old.closed  # its answer is not done yet
    # Routing said by the connection being left is not the client's routing now.
    old.push(frames.Routing(draining=True, drain_reason="the platform instance is shutting down"))
    new.push(frames.Request(id="r2", body=msgspec.Raw(CHAT)))
    await eventually(lambda: local.link.stats.active == 2, "the second request")
    assert (await local.status())["routing"] == NORMAL

    local.relay.release.set()
    await eventually(lambda: old.closed, "the old connection closed once its answer was done")
    await eventually(lambda: any(isinstance(f, frames.End) for f in new.sent), "the new request's end")
    assert [type(f) for f in old.sent] == [frames.Hello, frames.Chunk, frames.End]
    assert [f.id for f in new.sent if isinstance(f, frames.End)] == ["r2"]
    assert old.close_code == 1000
    assert local.link.connected and (local.link.stats.processed, local.link.stats.failed) == (2, 0)


async def test_a_cancel_on_the_connection_being_left_still_reaches_its_answer(local: Local) -> None:
    old = await local.connection(1)
    old.push(frames.Request(id="r1", body=msgspec.Raw(CHAT)))
    await eventually(lambda: local.link.stats.active == 1, "the request in flight")
    old.push(frames.Move(reason="shutting down"))
    await local.connection(2)
    old.push(frames.Cancel(id="r1"))
    await eventually(lambda: old.closed, "the old connection closed once its answer was cancelled")
    assert local.link.stats.active == 0 and local.link.stats.processed == 0


async def test_an_idle_client_told_to_move_keeps_its_old_connection_until_it_serves_on_a_new_one(
        local: Local) -> None:
    old = await local.connection(1)
    local.platform.down = True  # the other instances cannot be reached yet
    old.push(frames.Move(reason="instance i-1 is shutting down", grace_seconds=10))
    await eventually(lambda: local.link.state != "connected", "the link looking for another instance")
    await asyncio.sleep(0.3)
    assert not old.closed  # the cluster waits for this client's new connection meanwhile
    local.platform.down = False
    await local.connection(2)
    await eventually(lambda: old.closed, "the old connection closed once the new one serves")
    assert old.close_code == 1000


@pytest.fixture
async def batching() -> AsyncIterator[Local]:
    platform, relay = FakePlatform(batches=True), FakeRelay()
    link = PlatformLink(CONFIG, relay, platform, Stats(False))  # type: ignore[arg-type]
    link.start()
    try:
        yield Local(link, platform, relay, httpx.AsyncClient())
    finally:
        relay.release.set()
        await link.stop()


async def test_answers_ready_together_go_in_one_message_to_a_platform_that_reads_batches(batching: Local) -> None:
    tunnel = await batching.connection(1)
    hello = tunnel.sent[0]
    assert isinstance(hello, frames.Hello) and frames.BATCHES in hello.capabilities
    before = tunnel.messages
    tunnel.push(frames.batch([frames.encode(frames.Request(id=f"r{i}", body=msgspec.Raw(CHAT), window=1 << 20))
                              for i in range(3)]))
    await eventually(lambda: len(batching.link._tunnel._requests) == 3, "three requests running")  # type: ignore[union-attr]
    batching.relay.release.set()
    await eventually(lambda: sum(isinstance(f, frames.End) for f in tunnel.sent) == 3, "three ends")
    answers = [f for f in tunnel.sent if isinstance(f, frames.Chunk | frames.End)]
    assert [type(f).__name__ for f in answers if f.id == "r1"] == ["Chunk", "End"]
    assert tunnel.messages - before < len(answers)  # fewer messages than frames


async def test_the_frames_after_a_move_in_its_batch_still_reach_the_answers_in_flight(batching: Local) -> None:
    tunnel = await batching.connection(1)
    tunnel.push(frames.Request(id="r1", body=msgspec.Raw(CHAT), window=1 << 20))
    await eventually(lambda: batching.link._tunnel is not None and batching.link._tunnel.active == 1, "r1 running")
    tunnel.push(frames.batch([frames.encode(frames.Move(reason="restart")),
                              frames.encode(frames.Cancel(id="r1", reason="consumer left"))]))
    await batching.connection(2)
    # r1 was cancelled on the old connection, which then closed (its answers done) instead of waiting.
    await eventually(lambda: tunnel.closed, "the old connection closed")
    assert not any(isinstance(f, frames.Chunk | frames.End) and f.id == "r1" for f in tunnel.sent)
