"""Turning upstream events into OpenAI responses: chat (streamed or whole) and image generations."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from starlette.types import Send

from arenahub.asgi import WatchedResponse
from arenahub.bridge import lmarena
from arenahub.bridge.runtime import image_markdown
from arenahub.protocol.errors import ApiError
from arenahub.protocol.openai import (
    SSE_DONE,
    ChatCompletionRequest,
    chunk_event,
    completion_body,
    error_body,
    error_event,
    prompt_text,
    usage_dict,
)
from arenahub.tokens import count_tokens


class ChatAnswer(WatchedResponse):
    """One chat completion answered from a tab; errors before the first event get their HTTP status."""

    def __init__(self, events: AsyncIterator[lmarena.Event], request: ChatCompletionRequest) -> None:
        super().__init__()
        self.events = events
        self.request = request
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.text: list[str] = []  # everything generated, for counting tokens
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.annotations: list[dict[str, Any]] = []
        self.chars = 0
        self.finish: str | None = None
        self.upstream_usage: dict[str, int] | None = None

    def _delta(self, event: lmarena.Event) -> dict[str, Any] | None:
        """The OpenAI delta an event adds to the answer, if any (reasoning as ``reasoning_content``, search
        sources as ``annotations`` of type ``url_citation``)."""
        if isinstance(event, lmarena.TextDelta):
            self.chars += len(event.text)
            return {"content": event.text}
        if isinstance(event, lmarena.Reasoning):
            return {"reasoning_content": event.text}
        if isinstance(event, lmarena.Images):
            markdown = image_markdown(event.urls)
            self.chars += len(markdown)
            return {"content": markdown}
        if isinstance(event, lmarena.Citations):
            at = self.chars  # where in the answer they came: OpenAI's indexes of the cited span
            return {"annotations": [{"type": "url_citation", "url_citation": {
                "url": s["url"], "title": s["title"], "start_index": at, "end_index": at}} for s in event.sources]}
        if isinstance(event, lmarena.Finish):
            self.finish = event.openai_reason
            self.upstream_usage = event.usage
        return None

    def _usage(self) -> dict[str, int]:
        """arena.ai's own count when it gave one, else counted here on what was asked and answered."""
        if self.upstream_usage is not None:
            return dict(self.upstream_usage)
        return usage_dict(count_tokens(prompt_text(self.request)), count_tokens("".join(self.text)))

    async def _first(self) -> lmarena.Event | None:
        async for event in self.events:
            return event
        return None

    async def answer(self, send: Send) -> None:
        try:
            try:
                first = await self._first()
            except ApiError as err:
                await _send_error(send, err)
                return
            if self.request.stream:
                await self._stream(send, first)
            else:
                await self._whole(send, first)
        finally:
            # However this ends (disconnect included), the tab is told to stop a request left open.
            await self.events.aclose()  # type: ignore[attr-defined]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return chunk_event(self.id, self.created, self.request.model,
                           [{"index": 0, "delta": delta, "finish_reason": finish}])

    async def _stream(self, send: Send, first: lmarena.Event | None) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": _headers("text/event-stream", {"cache-control": "no-cache"})})
        await send({"type": "http.response.body", "more_body": True,
                    "body": self._chunk({"role": "assistant", "content": ""})})
        try:
            event = first
            while event is not None:
                delta = self._delta(event)
                if delta:
                    self.text.extend(v for k, v in delta.items() if k != "annotations")
                    await send({"type": "http.response.body", "more_body": True, "body": self._chunk(delta)})
                event = await anext(self.events, None)
        except ApiError as err:
            await send({"type": "http.response.body", "body": error_event(err), "more_body": False})
            return
        tail = self._chunk({}, self.finish or "stop")
        if self.request.include_usage:
            tail += chunk_event(self.id, self.created, self.request.model, [], self._usage())
        await send({"type": "http.response.body", "body": tail + SSE_DONE, "more_body": False})

    async def _whole(self, send: Send, first: lmarena.Event | None) -> None:
        try:
            event = first
            while event is not None:
                delta = self._delta(event)
                if delta:
                    self.content.append(delta.get("content", ""))
                    self.reasoning.append(delta.get("reasoning_content", ""))
                    self.annotations.extend(delta.get("annotations", []))
                    self.text.extend(v for k, v in delta.items() if k != "annotations")
                event = await anext(self.events, None)
        except ApiError as err:
            await _send_error(send, err)
            return
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if any(self.reasoning):
            message["reasoning_content"] = "".join(self.reasoning)
        if self.annotations:
            message["annotations"] = self.annotations
        body = completion_body(self.id, self.created, self.request.model, [{
            "index": 0, "message": message, "finish_reason": self.finish or "stop", "logprobs": None}], self._usage())
        await send({"type": "http.response.start", "status": 200, "headers": _headers("application/json")})
        await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, err: ApiError) -> None:
    await send({"type": "http.response.start", "status": err.status,
                "headers": _headers("application/json", err.headers)})
    await send({"type": "http.response.body", "body": error_body(err)})


def _headers(content_type: str, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type.encode())]
    for name, value in (extra or {}).items():
        headers.append((name.lower().encode(), value.encode()))
    return headers


class ImageAnswer(WatchedResponse):
    """``/v1/images/generations``: the image URLs the upstream produced, of ``n`` conversations run at once;
    with ``base64_of`` (response_format ``b64_json``), the images themselves."""

    def __init__(self, runs: list[AsyncIterator[lmarena.Event]],
                 base64_of: Callable[[str], Awaitable[str]] | None = None) -> None:
        super().__init__()
        self.runs = runs
        self.base64_of = base64_of

    @staticmethod
    async def _images(events: AsyncIterator[lmarena.Event]) -> list[str]:
        urls: list[str] = []
        try:
            async for event in events:
                if isinstance(event, lmarena.Images):
                    urls.extend(event.urls)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return urls

    async def answer(self, send: Send) -> None:
        tasks = [asyncio.ensure_future(self._images(run)) for run in self.runs]
        try:
            results = await asyncio.gather(*tasks)
        except ApiError as err:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await _send_error(send, err)
            return
        urls = [url for found in results for url in found]
        if not urls:
            await _send_error(send, ApiError("arena.ai finished without producing an image.",
                                             code="no_image", status=502))
            return
        if self.base64_of is not None:
            try:
                data = [{"b64_json": b64} for b64 in await asyncio.gather(*(self.base64_of(u) for u in urls))]
            except ApiError as err:
                await _send_error(send, ApiError(f"Could not download the image arena.ai made: {err.message}",
                                                 code="image_download_failed", status=502))
                return
        else:
            data = [{"url": u} for u in urls]
        body = msgspec.json.encode({"created": int(time.time()), "data": data})
        await send({"type": "http.response.start", "status": 200, "headers": _headers("application/json")})
        await send({"type": "http.response.body", "body": body})
