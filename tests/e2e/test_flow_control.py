"""Flow control end to end (issue 11, item 3): an answer is never buffered without limit.

A consumer that reads slowly holds its client back (the platform grants each answer a window as the
consumer takes it); a client that ignores its window is not read until the consumer catches up; a
consumer that holds its client back too long is cut with ``consumer_too_slow`` and recorded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import psutil

from arenahub.protocol import frames

from .harness import Platform, Stack, read_records, wait_until
from .hostile import HostileClient

MODEL = "e2e-alpha"
SLOW = {"ARENAHUB_SLOW_CONSUMER_SECONDS": "2", "ARENAHUB_RECORD_FLUSH_SECONDS": "0.1",
        "ARENAHUB_MAX_ANSWER_TOKENS": "10000000"}
MiB = 1024 * 1024


class SlowConsumer:
    """A streaming chat request over a raw socket with a small receive buffer, read ``rate`` bytes a second."""

    def __init__(self, platform: Platform, key: str, text: str = "hi") -> None:
        self.platform, self.key, self.text = platform, key, text
        self.received = 0
        self.ended = asyncio.Event()

    async def run(self, rate: int = 16 * 1024) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.connect(("127.0.0.1", self.platform.port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
        body = json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": self.text}]})
        writer.write((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
        try:
            while True:
                data = await reader.read(rate // 10)
                if not data:
                    break
                self.received += len(data)
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        finally:
            self.ended.set()
            writer.close()


def peak_rss(pid: int, until: asyncio.Event, samples: list[int]) -> asyncio.Task[None]:
    process = psutil.Process(pid)

    async def sample() -> None:
        while not until.is_set():
            samples.append(process.memory_info().rss)
            await asyncio.sleep(0.05)
    return asyncio.ensure_future(sample())


async def the_record(platform: Platform) -> dict:
    return await asyncio.to_thread(wait_until, lambda: next(iter(read_records(platform.database_url)), None), 15,
                                   "the request's record", 0.1)


def protocol_events(platform: Platform, event: str) -> float:
    text = httpx.get(platform.url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("arenahub_client_protocol_events_total") and f'event="{event}"' in line)


async def test_a_client_that_ignores_its_window_is_held_back_and_the_slow_consumer_is_cut(
        stack: Stack, platform_db: str) -> None:
    platform = stack.platform(platform_db, SLOW)
    key = (await asyncio.to_thread(stack.create_key, platform))["key"]
    hostile = await HostileClient.register(stack, platform)
    await hostile.connect([MODEL], heartbeat_interval_seconds=10)  # held back, its heartbeats wait too
    consumer = SlowConsumer(platform, key)
    reading = asyncio.ensure_future(consumer.run())
    request = await hostile.next_request()
    assert request.window is not None and request.window > 0  # flow control on offer
    baseline = psutil.Process(platform.pid).memory_info().rss
    samples: list[int] = []
    sampler = peak_rss(platform.pid, consumer.ended, samples)
    piece = frames.encode(frames.Chunk(id=request.id, events=[[{"index": 0, "delta": {"content": "z" * 65_000}}]]))
    held_at: int | None = None  # bytes sent when a send first had to wait: the platform stopped reading
    started = time.monotonic()
    try:
        while not consumer.ended.is_set() and time.monotonic() - started < 30:
            before, sent = time.monotonic(), hostile.sent_bytes
            await asyncio.wait_for(hostile.send(piece), 15)
            if held_at is None and time.monotonic() - before > 0.5:
                held_at = sent
    finally:
        await asyncio.wait_for(consumer.ended.wait(), 30)
        await reading
        sampler.cancel()
    record = await the_record(platform)
    assert (record["status"], record["error_code"]) == (408, "consumer_too_slow"), record
    # While the consumer read 16 KB/s, the platform stopped reading the client: what got through is
    # the window, what the sockets' kernel buffers hold, and what the consumer read.
    assert held_at is not None and held_at < 40 * MiB, held_at
    assert max(samples) - baseline < 48 * MiB, (max(samples) - baseline) / MiB
    assert protocol_events(platform, "held_back") >= 1
    await hostile.close()


async def test_a_real_client_keeps_to_its_window_and_stops_reading_its_bridge(stack: Stack, platform_db: str,
                                                                           upstream) -> None:
    platform = stack.platform(platform_db, SLOW)
    stack.client(platform, upstream)
    key = (await asyncio.to_thread(stack.create_key, platform))["key"]
    consumer = SlowConsumer(platform, key, "[[words=200000]] [[word_bytes=1000]]")  # about 230 MB of events
    await asyncio.wait_for(consumer.run(), 60)
    record = await the_record(platform)
    assert (record["status"], record["error_code"]) == (408, "consumer_too_slow"), record
    stats = await asyncio.to_thread(wait_until, lambda: (s := upstream.stream_stats())["active"] == 0 and s, 10,
                                    "the upstream's stream to end", 0.1)
    assert stats["cancelled"] == 1, stats  # the client was told to stop, and stopped reading the upstream
    assert stats["sent_bytes"] < 40 * MiB, stats["sent_bytes"] / MiB
    assert protocol_events(platform, "held_back") == 0  # it never sent past its window
