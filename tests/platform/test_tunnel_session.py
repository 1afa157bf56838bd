"""A client session's requests in flight (tunnel_session.ClientSession): opened with a Request frame, its
client's frames in the request's inbox in order, ended by End or Error, a Cancel only while it runs, and
every request failed with ClientGone when the connection goes."""

from __future__ import annotations

import asyncio

from arenahub.platform.tunnel_session import ClientGone, ClientSession
from arenahub.protocol import frames


class Socket:
    """What the session sends its client."""

    def __init__(self) -> None:
        self.sent: list[frames.Frame] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(frames.decode(data))


def session(window: int = 1000) -> tuple[ClientSession, Socket]:
    ws = Socket()
    hello = frames.Hello(version=frames.PROTOCOL_VERSION, client_id="c1", api_key="k", models=["m"])
    made = ClientSession(ws, client_id="c1", name="c1", connection_id="conn", hello=hello,  # type: ignore[arg-type]
                         max_concurrent=4, window=window)
    made.start()
    return made, ws


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def chunk(request_id: str, text: str = "x") -> frames.Chunk:
    return frames.Chunk(id=request_id, events=[[{"index": 0, "delta": {"content": text}}]])


async def test_a_request_is_sent_and_gets_its_own_frames_in_order_until_its_end() -> None:
    client, ws = session()
    a, b = client.open("a", b'{"model":"m"}'), client.open("b", b"{}", frames.IMAGES)
    assert client.active == 2 and client.request_ids() == ["a", "b"]
    assert client.deliver(chunk("a", "1"), 100) is a and client.deliver(chunk("b"), 100) is b
    assert client.deliver(chunk("a", "2"), 100) is a and client.deliver(frames.End(id="a")) is a
    assert [a.get_nowait(), a.get_nowait(), a.get_nowait()] == [chunk("a", "1"), chunk("a", "2"), frames.End(id="a")]
    assert client.request_ids() == ["b"] and client.deliver(frames.Error(id="b", code="x", message="no")) is b
    assert client.active == 0 and client.unknown_frames == 0
    await settle()
    sent = [(f.id, bytes(f.body), f.kind, f.window) for f in ws.sent if isinstance(f, frames.Request)]
    assert sent == [("a", b'{"model":"m"}', frames.CHAT, 1000), ("b", b"{}", frames.IMAGES, 1000)] and len(ws.sent) == 2
    client.mark_closed("test over")


async def test_frames_for_requests_not_in_flight_are_counted_and_dropped() -> None:
    client, _ = session()
    client.open("a", b"{}")
    client.finish("a")
    assert client.deliver(chunk("a")) is None and client.deliver(frames.End(id="never")) is None
    assert client.unknown_frames == 2 and client.active == 0
    client.mark_closed("test over")


async def test_the_window_is_granted_back_as_the_consumer_takes_the_answer() -> None:
    client, ws = session(window=100)
    inbox = client.open("a", b"{}")
    client.deliver(chunk("a"), 60)
    inbox.get_nowait()
    await settle()
    assert ws.sent[1:] == [frames.Window(id="a", bytes=60)]
    client.mark_closed("test over")


async def test_a_cancel_is_sent_only_while_the_request_runs() -> None:
    client, ws = session()
    client.open("ended", b"{}")
    client.open("finished", b"{}")
    client.open("running", b"{}")
    client.deliver(frames.End(id="ended"))
    client.finish("finished")
    for request_id in ("ended", "finished", "running", "running"):
        client.cancel(request_id, "consumer disconnected")
    await settle()
    assert [f for f in ws.sent if isinstance(f, frames.Cancel)] == [frames.Cancel(id="running")]
    assert client.active == 0
    client.mark_closed("test over")


async def test_when_the_connection_goes_every_request_in_flight_gets_client_gone_once() -> None:
    client, ws = session()
    a, b = client.open("a", b"{}"), client.open("b", b"{}")
    client.deliver(chunk("a"), 10)
    client.mark_closed("shutting down", by_platform=True)
    client.mark_closed("again")
    assert a.get_nowait() == chunk("a")
    gone = [a.get_nowait(), b.get_nowait()]
    assert all(isinstance(g, ClientGone) and g.reason == "shutting down" and g.by_platform for g in gone)
    assert a.empty() and b.empty() and client.active == 0 and client.request_ids() == []
    assert client.closed and client.close_reason == "shutting down"
    client.send_nowait(frames.Cancel(id="a"))  # nothing is sent after the close
    await settle()
    assert len(ws.sent) == 2
