"""Outcomes become the site's answer: stream lines in the Vercel AI data-stream format, or an error page.

``plan`` turns an outcome into the lines of each answering side (``a``; ``a`` and ``b`` in the battle
modes, interleaved) without any I/O; ``LineStream`` sends them with the outcome's pacing, heartbeats
during long waits, and notes in the request record whether the caller stayed to the end.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest

import anyio
import msgspec
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from arenahub.tools.arena_sim import cloudflare
from arenahub.tools.arena_sim.catalog import Model
from arenahub.tools.arena_sim.log import RequestRecord
from arenahub.tools.arena_sim.outcomes import (
    Block,
    Challenge,
    Citation,
    Error,
    Hang,
    Html,
    Image,
    Outcome,
    Raw,
    Schema,
    Status,
    Text,
    retry_after,
    status_body,
)

STREAM_CONTENT_TYPE = "text/plain; charset=utf-8"
DEFAULT_CITATIONS = (Citation("https://example.org/arena-sim/first", "First simulated source"),
                     Citation("https://example.com/arena-sim/second", "Second simulated source"))
_PIECE = re.compile(r"\S+\s*|\s+")
_encode = msgspec.json.Encoder().encode


def _j(value: object) -> str:
    return _encode(value).decode()


def pieces(text: str) -> list[str]:
    """Words with their trailing space (leading space is a piece of its own)."""
    return _PIECE.findall(text)


@dataclass(frozen=True)
class Side:
    position: str  # a | b
    message_id: str
    model: Model | None


@dataclass(frozen=True)
class Question:
    sides: tuple[Side, ...]
    modality: str
    prompt: str  # the user message: what the default answer echoes
    origin: str  # scheme://host, for image URLs
    models: tuple[Model, ...] = ()


@dataclass
class Plan:
    """The lines of a streamed answer: ``head`` at once, then ``body`` after ``first_ms``, ``delay_ms`` apart."""

    head: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    first_ms: int = 0
    delay_ms: int = 0
    heartbeats: list[str] = field(default_factory=list)
    content_type: str = STREAM_CONTENT_TYPE
    hang: bool = False
    texts: dict[str, str] = field(default_factory=dict)  # position -> what that side said


def default_outcome(modality: str) -> Outcome:
    return Image() if modality == "image" else Text()


def _finish(p: str, finish: str, usage: bool, prompt: str, text: str) -> list[str]:
    if finish == "error":
        return [f"{p}d:" + _j({"finishReason": "error"})]
    done: dict[str, object] = {"finishReason": finish}
    if usage:
        done["usage"] = {"promptTokens": len(prompt.split()), "completionTokens": len(text.split())}
    return [f"{p}e:" + _j({"finishReason": finish, "isContinued": False}), f"{p}d:" + _j(done)]


def _citations(p: str, citations: Sequence[Citation]) -> list[str]:
    """One tool call whose JSON arguments arrive in two pieces, as the site streams them."""
    args = _j({"source": [{"url": c.url, "title": c.title} for c in citations]})
    call_id = "call_" + secrets.token_hex(8)
    half = len(args) // 2
    return [f"{p}c:" + _j({"toolCallId": call_id, "argsTextDelta": part}) for part in (args[:half], args[half:])]


def _side_text(base: str, side_b_text: str | None, position: str) -> str:
    if position == "a":
        return base
    return side_b_text if side_b_text is not None else "B: " + base


def _text_lines(o: Text, q: Question, side: Side) -> tuple[list[str], str]:
    p = side.position
    base = " ".join(f"w{i}" for i in range(o.words)) if o.words is not None else o.text if o.text is not None \
        else q.prompt
    text = _side_text(base, o.side_b_text, p)
    lines = [f"{p}g:" + _j(piece) for piece in pieces(o.reasoning or "")]
    lines += [f"{p}0:" + _j(piece) for piece in pieces(text)]
    citations = o.citations if o.citations is not None else DEFAULT_CITATIONS if q.modality == "search" else ()
    if citations:
        lines += _citations(p, citations)
    if o.routed_model is not None:
        org = next((m.organization for m in q.models if o.routed_model in (m.publicName, m.name)), "unknown")
        lines.append(f"{p}2:" + _j([{"type": "routed_model", "publicName": o.routed_model, "organization": org}]))
    return lines + _finish(p, o.finish, o.usage, q.prompt, text), text


def _image_lines(o: Image, q: Question, side: Side) -> tuple[list[str], str]:
    p, text = side.position, o.text or ""
    urls = o.urls or [f"{q.origin}/__sim/images/{uuid.uuid4().hex}.png" for _ in range(o.count)]
    lines = [f"{p}0:" + _j(piece) for piece in pieces(text)]
    lines.append(f"{p}2:" + _j([{"type": "image", "image": url, "mimeType": "image/png"} for url in urls]))
    return lines + _finish(p, o.finish, True, q.prompt, text), text


def _error_lines(o: Error, q: Question, side: Side) -> tuple[list[str], str]:
    p = side.position
    words = pieces(_side_text(o.text if o.text is not None else q.prompt, None, p))[:o.after_words]
    return [f"{p}0:" + _j(piece) for piece in words] + [f"{p}3:" + _j(o.message)], "".join(words)


def plan(outcome: Text | Image | Error | Raw | Hang, q: Question) -> Plan:
    if isinstance(outcome, Hang):
        return Plan(hang=True)
    if isinstance(outcome, Raw):
        return Plan(body=[line if outcome.no_newline else line + "\n" for line in outcome.lines],
                    first_ms=outcome.first_ms, delay_ms=outcome.delay_ms, content_type=outcome.content_type)
    per_side = []
    texts = {}
    for side in q.sides:
        if isinstance(outcome, Text):
            lines, text = _text_lines(outcome, q, side)
        elif isinstance(outcome, Image):
            lines, text = _image_lines(outcome, q, side)
        else:
            lines, text = _error_lines(outcome, q, side)
        per_side.append(lines)
        texts[side.position] = text
    body = [line for group in zip_longest(*per_side) for line in group if line is not None]
    return Plan(head=[f"{s.position}f:" + _j({"messageId": s.message_id}) + "\n" for s in q.sides],
                body=[line + "\n" for line in body], first_ms=outcome.first_ms, delay_ms=outcome.delay_ms,
                heartbeats=[f"{s.position}2:" + _j([{"type": "heartbeat"}]) + "\n" for s in q.sides], texts=texts)


def immediate(outcome: Challenge | Block | Status | Schema | Html) -> Response:
    """The outcomes that answer at once, without a stream."""
    if isinstance(outcome, Challenge):
        return cloudflare.challenge_response()
    if isinstance(outcome, Block):
        return cloudflare.block_response()
    if isinstance(outcome, Schema):
        issue = {"code": "custom", "path": outcome.path, "message": outcome.message}
        return JSONResponse({"error": "Invalid request body", "issues": [issue]}, status_code=400)
    if isinstance(outcome, Html):
        return HTMLResponse(outcome.body or UNKNOWN_PAGE)
    headers = {}
    wait = retry_after(outcome)
    if wait is not None:
        headers["retry-after"] = str(wait)
    body = status_body(outcome)
    if isinstance(body, str):
        return PlainTextResponse(body, status_code=outcome.status, headers=headers)
    return JSONResponse(body, status_code=outcome.status, headers=headers)


UNKNOWN_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Arena AI</title></head>
<body><main><h1>Something went sideways</h1><p>We are updating Arena. Please come back in a few minutes.</p>
</main></body></html>"""


class LineStream(Response):
    """Sends a plan's lines, watching for the caller going away (on every ASGI spec version)."""

    def __init__(self, plan: Plan, record: RequestRecord, on_complete: Callable[[], None] | None = None) -> None:
        # No body and no super().__init__: like StreamingResponse, so no content-length is set.
        self.status_code, self.background = 200, None
        self.init_headers({"content-type": plan.content_type, "x-vercel-ai-data-stream": "v1",
                           "cache-control": "no-cache"})
        self.plan, self.record, self.on_complete = plan, record, on_complete

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = self.record
        record.stream, record.lines_sent = "streaming", 0
        completed = False

        async def emit(line: str) -> None:
            await send({"type": "http.response.body", "body": line.encode(), "more_body": True})
            record.lines_sent += 1

        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            try:
                await play(self.plan, emit)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                completed = True
            except OSError:  # the server noticed the caller went away
                pass
            finally:
                record.stream = "complete" if completed else "aborted"
                group.cancel_scope.cancel()
        if completed and self.on_complete is not None:
            self.on_complete()


async def play(plan: Plan, emit: Callable[[str], Awaitable[None]]) -> None:
    if plan.hang:
        await anyio.sleep_forever()
    for line in plan.head:
        await emit(line)
    await _wait(plan.first_ms, plan.heartbeats, emit)
    for i, line in enumerate(plan.body):
        if i:
            await _wait(plan.delay_ms, plan.heartbeats, emit)
        await emit(line)


async def _wait(ms: int, heartbeats: list[str], emit: Callable[[str], Awaitable[None]]) -> None:
    """Sleep ``ms``; a wait longer than a second sends the heartbeat lines after each whole second."""
    remaining = ms
    while remaining > 0:
        step = min(remaining, 1000)
        await anyio.sleep(step / 1000)
        remaining -= step
        if remaining > 0:
            for line in heartbeats:
                await emit(line)
