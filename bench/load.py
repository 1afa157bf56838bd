"""The load generator: N chat completions at concurrency C over aiohttp, with per-request timing.

Every answer is checked: HTTP 200, a well-formed body (or SSE stream ending in ``[DONE]``), and
the exact text the local upstream was scripted to send. Anything else is a failed request, counted
by kind; nothing is retried or dropped.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import msgspec

REQUEST_TIMEOUT_SECONDS = 30.0

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Target:
    name: str  # "direct" or "through"
    base_url: str  # up to and without /v1
    api_key: str | None = None

    @property
    def url(self) -> str:
        return self.base_url + "/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def request_body(model: str, words: int, stream: bool) -> bytes:
    return _encode({"model": model, "stream": stream,
                    "messages": [{"role": "user", "content": f"[[words={words}]]"}]})


def expected_text(words: int) -> str:
    """What the local upstream answers to ``[[words=N]]``."""
    return " ".join(f"w{i}" for i in range(words))


class BadAnswer(Exception):
    """The request completed at the HTTP level, but the answer is wrong; the message is its kind."""


@dataclass
class PassResult:
    target: str
    mode: str
    concurrency: int
    requested: int
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttfts_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # CPU seconds that processes other than the bench and its programs used meanwhile (noise).
    foreign_cpu_seconds: float = 0.0
    round_throughputs: list[float] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time."""
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def latency(self, pct: float) -> float | None:
        return percentile(self.latencies_ms, pct)

    def ttft(self, pct: float) -> float | None:
        return percentile(self.ttfts_ms, pct)

    def summary(self) -> dict[str, object]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)
        return {
            "target": self.target, "mode": self.mode, "concurrency": self.concurrency,
            "requests": self.requested, "ok": self.ok, "errors": self.error_count,
            "error_kinds": dict(self.errors), "elapsed_s": r(self.elapsed),
            "throughput_rps": r(self.throughput), "p50_ms": r(self.latency(50)), "p99_ms": r(self.latency(99)),
            "p50_ttft_ms": r(self.ttft(50)),
            "cpu_ms_per_request": {name: r(sec * 1000 / self.requested) for name, sec in self.cpu_seconds.items()},
            "foreign_cpu_share": r(self.foreign_cpu_seconds / self.elapsed / (os.cpu_count() or 1))
            if self.elapsed else None,
            "round_throughputs_rps": [round(x, 1) for x in self.round_throughputs],
        }


def pool(results: list[PassResult]) -> PassResult:
    """Several rounds of the same pass as one: latencies pooled, times and counts added."""
    first = results[0]
    out = PassResult(first.target, first.mode, first.concurrency, sum(r.requested for r in results))
    for r in results:
        out.elapsed += r.elapsed
        out.latencies_ms += r.latencies_ms
        out.ttfts_ms += r.ttfts_ms
        out.errors += r.errors
        out.foreign_cpu_seconds += r.foreign_cpu_seconds
        for name, sec in r.cpu_seconds.items():
            out.cpu_seconds[name] = out.cpu_seconds.get(name, 0.0) + sec
        out.round_throughputs.append(r.throughput)
    return out


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least pct% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


async def _complete(http: aiohttp.ClientSession, target: Target, body: bytes, expect: str,
                    started: float) -> float:
    async with http.post(target.url, data=body, headers=target.headers()) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise BadAnswer(f"http_{resp.status}")
    done = time.perf_counter()
    try:
        data = _decode(raw)
        text = data["choices"][0]["message"]["content"]
    except (msgspec.DecodeError, KeyError, IndexError, TypeError):
        raise BadAnswer("malformed_body") from None
    if text != expect:
        raise BadAnswer("wrong_content")
    return done - started


async def _stream(http: aiohttp.ClientSession, target: Target, body: bytes, expect: str,
                  started: float) -> tuple[float, float]:
    first: float | None = None
    parts: list[str] = []
    buffer = b""
    done = False
    async with http.post(target.url, data=body, headers=target.headers()) as resp:
        if resp.status != 200:
            await resp.read()
            raise BadAnswer(f"http_{resp.status}")
        async for raw in resp.content.iter_any():
            buffer += raw
            # Both servers under test end every event with a blank line; tolerate CRLF too.
            while True:
                end = buffer.find(b"\n\n")
                if end < 0:
                    break
                event, buffer = buffer[:end], buffer[end + 2:]
                for line in event.replace(b"\r", b"").split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        continue
                    try:
                        chunk = _decode(payload)
                    except msgspec.DecodeError:
                        raise BadAnswer("malformed_event") from None
                    if not isinstance(chunk, dict) or "error" in chunk:
                        raise BadAnswer("error_event")
                    for choice in chunk.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            if first is None:
                                first = time.perf_counter()
                            parts.append(content)
    finished = time.perf_counter()
    if not done:
        raise BadAnswer("no_done")
    if "".join(parts) != expect or first is None:
        raise BadAnswer("wrong_content")
    return finished - started, first - started


def open_session(concurrency: int) -> aiohttp.ClientSession:
    """One keep-alive pool per target, shared by its warm-up and measured passes."""
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
                                 auto_decompress=False, skip_auto_headers=("User-Agent",))


async def run_pass(http: aiohttp.ClientSession, target: Target, *, model: str, stream: bool, requests: int,
                   concurrency: int, words: int, deadline_seconds: float = 120.0) -> PassResult:
    """Send ``requests`` requests, ``concurrency`` at a time; stop sending at the deadline."""
    mode = "stream" if stream else "nonstream"
    result = PassResult(target.name, mode, concurrency, requests)
    body = request_body(model, words, stream)
    expect = expected_text(words)
    remaining = requests
    stop_at = time.perf_counter() + deadline_seconds

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            if time.perf_counter() > stop_at:
                result.errors["not_sent_deadline"] += 1
                continue
            started = time.perf_counter()
            try:
                if stream:
                    latency, ttft = await _stream(http, target, body, expect, started)
                    result.ttfts_ms.append(ttft * 1000)
                else:
                    latency = await _complete(http, target, body, expect, started)
                result.latencies_ms.append(latency * 1000)
            except BadAnswer as exc:
                result.errors[str(exc)] += 1
            except TimeoutError:
                result.errors["timeout"] += 1
            except aiohttp.ClientError as exc:
                result.errors[type(exc).__name__] += 1
            except OSError as exc:
                result.errors[f"os_{type(exc).__name__}"] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    result.elapsed = time.perf_counter() - t0
    return result
