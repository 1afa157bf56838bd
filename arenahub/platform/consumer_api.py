"""The consumer API: OpenAI-compatible ``/v1`` endpoints."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Send

from arenahub.asgi import WatchedResponse, read_body
from arenahub.ids import new_id
from arenahub.platform.admission import admit, authenticate, check_model, check_open
from arenahub.platform.answer import AnswerMeter, tokens_covered
from arenahub.platform.exchange import CLIENT_CLOSED, Exchange
from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError
from arenahub.protocol.openai import (
    SSE_DONE,
    ChatCompletionRequest,
    ChoiceAccumulator,
    chunk_event,
    completion_body,
    error_body,
    error_event,
    models_body,
    parse_chat_request,
)

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

JSON = "application/json"
CONVERSATION_HEADER = "x-arenahub-conversation"
# Recorded when the platform cut a consumer that read its answer too slowly (flow.Inbox).
CONSUMER_TOO_SLOW = 408


async def chat_completions(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    check_open(platform)
    key = await authenticate(platform, request)
    started = time.perf_counter()
    req: ChatCompletionRequest | None = None
    try:
        body = await read_body(request, platform.settings.max_body_bytes)
        req = chat = parse_chat_request(body)
        check_model(platform, key, chat.model)
        ex = Exchange(id=new_id(), key=key, request=req, body=body)
        if platform.settings.sticky_routing:
            ex.affinity_key = ex.conversation_key(request.headers.get(CONVERSATION_HEADER))
        # TPM counts the prompt and what max_tokens allows.
        await admit(platform, request, ex,
                    lambda: ex.prompt_tokens() + (chat.max_completion_tokens or chat.max_tokens or 0))
        ex.meter = AnswerMeter(completion_limit(platform, ex))
        return ChatResponse(platform, ex)
    except ApiError as err:
        # Every request that passed authentication leaves a record, whatever refused it.
        platform.settlement.refused(key, err, started, model=req.model if req else "", stream=bool(req and req.stream))
        raise


def completion_limit(platform: Platform, ex: Exchange) -> int:
    """Where the platform stops the answer: the request's max_tokens, the platform's max_answer_tokens,
    and for a key with credit what its reservation pays for (so that nothing is ever served uncharged)."""
    req = ex.request
    limits = [n for n in (req.max_completion_tokens or req.max_tokens, platform.settings.max_answer_tokens)
              if n is not None]
    if ex.reservation is not None and not ex.key.unlimited:
        covered = tokens_covered(platform.accounting.prices.price(ex.model), ex.reservation.amount,
                                 ex.prompt_tokens(), ex.images())
        if covered is not None:
            limits.append(covered)
    return min(limits)


async def list_models(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    key = await authenticate(platform, request)
    return Response(models_body(sorted(m for m in platform.models_offered() if key.allows(m))), media_type=JSON)


class ExchangeResponse(WatchedResponse):
    """Runs one exchange for the ASGI connection it answers, from dispatch to record (``respond``).

    Errors before the first byte become a proper HTTP error. A consumer disconnect cancels the work
    at once and tells the client to stop. The exchange is settled and recorded once, whatever happens.
    """

    def __init__(self, platform: Platform, exchange: Exchange) -> None:
        super().__init__()
        self.platform = platform
        self.ex = exchange
        platform.exchange_started(exchange)

    async def respond(self, send: Send) -> None:
        raise NotImplementedError

    async def answer(self, send: Send) -> None:
        try:
            await self.respond(send)
        except Exception:
            # A bug: the record says so (its status would otherwise read 200), then the ASGI server answers 500.
            if not self.ex.completed and self.ex.status == 200:
                self.ex.fail(500, "internal_error", "the platform failed while answering")
            raise

    def left(self) -> None:
        self.ex.fail(CLIENT_CLOSED, "client_closed", "the consumer disconnected before the answer was complete")

    def _too_slow(self) -> None:
        """The consumer read so slowly that its client was held back too long: cut it (flow.Inbox)."""
        seconds = self.platform.settings.slow_consumer_seconds
        self.ex.fail(CONSUMER_TOO_SLOW, "consumer_too_slow",
                     f"the consumer read the answer too slowly: its client was held back {seconds:g} s in all")
        self.cut()

    def _ending(self) -> str:
        """Why the client is told to stop, when it did not finish by itself."""
        if self.ex.error_code == "consumer_too_slow":
            return "the consumer read the answer too slowly"
        return "the answer reached its token limit" if self.ex.meter.cut else "consumer disconnected"

    def done(self) -> None:
        if not self.ex.booked:  # once: not again when _book() did it
            self.platform.finish_later(self.ex)

    async def _book(self) -> None:
        """Settle and record the exchange, and wait until its books would survive a kill -9 (the journal,
        records.py): run before the last bytes, so an answer the consumer saw end is always in the books."""
        await self.platform.exchange_finished(self.ex)
        await self.platform.writer.durable()

    def _start_headers(self, content_type: str, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", content_type.encode()), (b"x-request-id", self.ex.id.encode())]
        if self.ex.client_id:
            headers.append((b"x-arenahub-client", self.ex.client_id.encode()))
        for name, value in {**self.ex.rate_headers, **(extra or {})}.items():
            headers.append((name.lower().encode(), value.encode()))
        return headers

    async def _send_error(self, send: Send, err: ApiError) -> None:
        self.ex.fail(err.status, err.code, err.message)
        await self._send_whole(send, err.status, error_body(err), err.headers)

    async def _send_whole(self, send: Send, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        """A whole JSON answer, with its length: it goes out as one plain body, not in chunked encoding."""
        await send({"type": "http.response.start", "status": status,
                    "headers": self._start_headers(JSON, {**(extra or {}), "content-length": str(len(body))})})
        await send({"type": "http.response.body", "body": body})


class ChatResponse(ExchangeResponse):
    """One chat completion: streamed (after the first byte an error is an SSE error event) or whole."""

    async def respond(self, send: Send) -> None:
        if self.ex.request.stream:
            await self._stream(send)
        else:
            await self._complete(send)

    async def _stream(self, send: Send) -> None:
        ex = self.ex
        try:
            attempt = await self.platform.dispatcher.start(ex)
        except ApiError as err:
            await self._send_error(send, err)
            return
        attempt.when_stalled(self._too_slow)
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self._start_headers("text/event-stream") + [(b"cache-control", b"no-cache")]})
            ex.first_byte_at = time.perf_counter()
            try:
                async for batch in attempt.batches():
                    # Everything that arrived together goes out in one write. Text counts as delivered
                    # (and billed) once its write returns; the last write's before, for its usage chunk.
                    out, texts = [], []
                    for frame in batch:
                        if frame.usage:
                            ex.claimed_usage = frame.usage
                        if isinstance(frame, frames.Chunk):
                            for raw in frame.events:
                                choices, said = ex.meter.take(raw)
                                if choices:
                                    texts += said
                                    out.append(chunk_event(ex.completion_id, ex.created, ex.model, choices))
                    if isinstance(batch[-1], frames.End) or ex.meter.cut:
                        ex.completion_parts += texts
                        if ex.request.include_usage:
                            out.append(chunk_event(ex.completion_id, ex.created, ex.model, [], ex.usage()))
                        out.append(SSE_DONE)
                        ex.completed = True
                        attempt.abandon(self._ending())  # its outcome goes in the record
                        await self._book()
                        await send({"type": "http.response.body", "body": b"".join(out), "more_body": False})
                        break  # at the limit, the client is told to stop below
                    if out:
                        await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                        ex.completion_parts += texts
            except ApiError as err:
                ex.fail(err.status, err.code, err.message)
                attempt.abandon(self._ending())
                await self._book()  # what was delivered is charged
                await send({"type": "http.response.body", "body": error_event(err), "more_body": False})
        finally:
            attempt.abandon(self._ending())

    async def _complete(self, send: Send) -> None:
        ex = self.ex
        failed: set[str] = set()
        while True:
            try:
                attempt = await self.platform.dispatcher.start(ex, failed)
            except ApiError as err:
                await self._send_error(send, err)
                return
            attempt.when_stalled(self._too_slow)
            ex.first_byte_at = time.perf_counter()
            acc = ChoiceAccumulator()
            parts: list[str] = []
            try:
                async for batch in attempt.batches():
                    for frame in batch:
                        if frame.usage:
                            ex.claimed_usage = frame.usage
                        if isinstance(frame, frames.Chunk):
                            for raw in frame.events:
                                choices, said = ex.meter.take(raw)
                                acc.add(choices)
                                parts += said
                    if ex.meter.cut:
                        break
                break
            except ApiError as err:
                # Nothing reached the consumer yet, so a client lost mid-answer can be retried.
                if err.code != "client_disconnected" or ex.attempts >= self.platform.settings.max_attempts:
                    await self._send_error(send, err)
                    return
                failed.add(attempt.session.client_id)
                ex.meter = AnswerMeter(ex.meter.limit)
            finally:
                attempt.abandon(self._ending())
        ex.completion_parts = parts
        body = completion_body(ex.completion_id, ex.created, ex.model, acc.choices(), ex.usage())
        ex.completed = True
        await self._book()
        await self._send_whole(send, 200, body)


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
]
