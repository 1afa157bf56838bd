"""A fast local OpenAI-compatible upstream with scripted behaviour, for the demo, tests and bench.

It answers every chat completion by echoing the last user message word by word. Directives in
that message script it, for tests:

    [[words=N]]       answer with N words instead of the echo
    [[word_bytes=N]]  with words=N: each word N characters long (a large answer from few events)
    [[first_ms=N]]    wait N ms before the first chunk
    [[delay_ms=N]]    wait N ms between chunks
    [[status=N]]      answer with HTTP status N and an OpenAI error body
    [[error_after=N]] send N chunks, then an error event
    [[usage=1]]       report usage in the stream (LMArena reports none, so by default neither do we)

``GET /__stats`` tells tests what happened to the streamed answers it started: ``started``,
``active`` (still being sent), ``completed`` (sent to the end) and ``cancelled`` (the caller hung
up before the end, which is how a cancellation reaches an upstream); and ``sent_bytes``, what the
caller has taken of them (a write waits while the caller does not read: flow control shows here).
A model named ``NAME:image`` in ``--models`` is an image model ``NAME`` (as ``"<uuid>:image"`` in the
bridge's models.json): ``/v1/models`` gives each model its ``type`` as the bridge does, and
``POST /v1/images/generations`` answers for image models with ``n`` images, as URLs or as base64 of a
small PNG (``[[image_bytes=N]]`` in the prompt: N bytes each; ``[[status=N]]``: HTTP N).
``PUT /__fail`` with ``{"status": N}`` makes every chat completion answer HTTP N from then on, while
``/v1/models`` still lists the models (a bridge that is up but whose upstream fails); ``{"status": 0}``
ends it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

# A 1x1 PNG: what an image model makes here.
_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
                        "RU5ErkJggg==")
_DIRECTIVE = re.compile(r"\[\[(\w+)=(\d+)\]\]")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def script(text: str) -> tuple[list[str], dict[str, int]]:
    directives = {k: int(v) for k, v in _DIRECTIVE.findall(text)}
    clean = _DIRECTIVE.sub("", text).strip()
    if "words" in directives:
        pad = "x" * max(0, directives.get("word_bytes", 0) - 8)
        words = [f"w{i:07d}{pad}" if pad else f"w{i}" for i in range(directives["words"])]
    else:
        words = ("Echo: " + clean).split() if clean else ["Echo:"]
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    return pieces, directives


@dataclass
class StreamStats:
    started: int = 0
    active: int = 0
    completed: int = 0
    cancelled: int = 0
    sent_bytes: int = 0


def create_app(models: list[str], name: str = "local-upstream", announce: str | None = None) -> Starlette:
    """``announce``: a line printed once the server is up (the command's start line)."""
    stats = StreamStats()
    kinds = {m.removesuffix(":image"): "image" if m.endswith(":image") else "chat" for m in models}
    models = list(kinds)

    async def list_models(request: Request) -> Response:
        return Response(_encode({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": name, "type": kinds[m]} for m in models]}),
            media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(_encode({"status": "ok", "name": name}), media_type="application/json")

    async def stream_stats(request: Request) -> Response:
        return Response(_encode(asdict(stats)), media_type="application/json")

    failing = {"status": 0}

    async def set_failing(request: Request) -> Response:
        try:
            status = int(_decode(await request.body())["status"])
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            return _error(400, 'expected {"status": N}: an HTTP status from 400 to 599, or 0 to stop failing')
        if status != 0 and not 400 <= status <= 599:
            return _error(400, f"status {status} is not an HTTP error status (400 to 599), nor 0")
        failing["status"] = status
        return Response(_encode(failing), media_type="application/json")

    async def chat(request: Request) -> Response:
        if failing["status"]:
            return _error(failing["status"], f"failing on purpose with status {failing['status']} (PUT /__fail)")
        try:
            body = _decode(await request.body())
        except msgspec.DecodeError:
            return _error(400, "invalid JSON")
        if not isinstance(body, dict) or body.get("model") not in models:
            return _error(404, f"unknown model {body.get('model') if isinstance(body, dict) else None!r}")
        pieces, d = script(_last_user_text(body))
        if "status" in d:
            return _error(d["status"], f"scripted failure with status {d['status']}")
        created = int(time.time())
        cid = "up-" + str(time.perf_counter_ns())
        model = body["model"]
        if not body.get("stream"):
            if d.get("first_ms"):
                await asyncio.sleep(d["first_ms"] / 1000)
            text = "".join(pieces)
            return Response(_encode({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": len(pieces), "total_tokens": len(pieces) + 1}}),
                media_type="application/json")
        include_usage = bool(d.get("usage")) and bool((body.get("stream_options") or {}).get("include_usage"))
        return _CountedStream(stats, _stream(cid, created, model, pieces, d, include_usage))

    async def images(request: Request) -> Response:
        try:
            body = _decode(await request.body())
        except msgspec.DecodeError:
            return _error(400, "invalid JSON")
        if not isinstance(body, dict) or kinds.get(str(body.get("model"))) != "image":
            return _error(400, f"{body.get('model') if isinstance(body, dict) else None!r} is not an image model")
        _, d = script(str(body.get("prompt", "")))
        if "status" in d:
            return _error(d["status"], f"scripted failure with status {d['status']}")
        n = body.get("n", 1)
        if body.get("response_format") == "b64_json":
            image = base64.b64encode(_PNG + b"\0" * max(0, d.get("image_bytes", 0) - len(_PNG))).decode()
            data = [{"b64_json": image} for _ in range(n)]
        else:
            data = [{"url": f"https://images.example/{body['model']}/{i}.png"} for i in range(n)]
        return Response(_encode({"created": int(time.time()), "data": data}), media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if announce:
            print(announce, flush=True)
        yield

    return Starlette(lifespan=lifespan, routes=[Route("/v1/models", list_models), Route("/health", health),
                             Route("/v1/images/generations", images, methods=["POST"]),
                             Route("/__stats", stream_stats), Route("/__fail", set_failing, methods=["PUT"]),
                             Route("/v1/chat/completions", chat, methods=["POST"])])


class _CountedStream(StreamingResponse):
    """A streamed answer counted in ``stats``. One that did not reach its end was cancelled by the
    caller: Starlette stops the response when the connection drops."""

    def __init__(self, stats: StreamStats, events: AsyncIterator[bytes]) -> None:
        self._stats = stats
        self._finished = False
        super().__init__(self._to_the_end(events), media_type="text/event-stream")

    async def _to_the_end(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for event in events:
            yield event
            self._stats.sent_bytes += len(event)  # the write before this returned: the caller took it
            # A write to a caller that left returns at once without suspending: let Starlette's watch for
            # the disconnect run, so that the answer stops (else it runs to its end in one go).
            await asyncio.sleep(0)
        self._finished = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = self._stats
        stats.started += 1
        stats.active += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            stats.active -= 1
            if self._finished:
                stats.completed += 1
            else:
                stats.cancelled += 1


async def _stream(cid: str, created: int, model: str, pieces: list[str], d: dict[str, int],
                  include_usage: bool) -> AsyncIterator[bytes]:
    def event(choices: list[dict], usage: dict | None = None) -> bytes:
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
        if usage:
            chunk["usage"] = usage
        return b"data: " + _encode(chunk) + b"\n\n"

    if d.get("first_ms"):
        await asyncio.sleep(d["first_ms"] / 1000)
    delay = d.get("delay_ms", 0) / 1000
    for i, piece in enumerate(pieces):
        if "error_after" in d and i == d["error_after"]:
            yield b"data: " + _encode({"error": {"message": "scripted mid-stream failure",
                                                 "type": "upstream_error", "code": "scripted"}}) + b"\n\n"
            return
        if i and delay:
            await asyncio.sleep(delay)
        delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
        yield event([{"index": 0, "delta": delta, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if include_usage:
        yield event([], {"prompt_tokens": 7, "completion_tokens": len(pieces), "total_tokens": len(pieces) + 7})
    yield b"data: [DONE]\n\n"


def _error(status: int, message: str) -> Response:
    return Response(_encode({"error": {"message": message, "type": "upstream_error", "code": f"http_{status}"}}),
                    status_code=status, media_type="application/json")
