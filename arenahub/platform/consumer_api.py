"""The consumer API: OpenAI-compatible ``/v1`` endpoints."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Send

from arenahub.asgi import WatchedResponse, read_body
from arenahub.platform.billing import InsufficientQuota
from arenahub.platform.exchange import CLIENT_CLOSED, Exchange
from arenahub.platform.limits import Refused
from arenahub.protocol import frames
from arenahub.protocol.errors import (
    ApiError,
    ModelNotAllowed,
    ModelNotFound,
    PinNotAllowed,
    ShuttingDown,
)
from arenahub.protocol.openai import (
    SSE_DONE,
    ChoiceAccumulator,
    chunk_event,
    completion_body,
    delta_text,
    error_body,
    error_event,
    models_body,
    parse_chat_request,
)

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

JSON = "application/json"
PIN_HEADER = "x-arenahub-pin-client"
ADMIN_TOKEN_HEADER = "x-arenahub-admin-token"
CONVERSATION_HEADER = "x-arenahub-conversation"


async def chat_completions(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    if platform.shutting_down:
        raise ShuttingDown("The platform is shutting down; retry in a moment.", headers={"Retry-After": "5"})
    key = await platform.keys.authenticate(request.headers.get("authorization"))
    body = await read_body(request, platform.settings.max_body_bytes)
    req = parse_chat_request(body)
    if not key.allows(req.model):
        raise ModelNotAllowed(f"This API key may not use the model '{req.model}'.", param="model")
    if not platform.model_known(req.model):
        raise ModelNotFound(f"The model '{req.model}' does not exist: no registered client serves it. "
                            "GET /v1/models lists the models available now.", param="model")
    ex = Exchange(id=uuid.uuid4().hex, key=key, request=req, body=body)
    pin = request.headers.get(PIN_HEADER)
    if pin is not None:
        # Debugging aid for admins only: the admin token must come along.
        try:
            await platform.admin.check("Bearer " + request.headers.get(ADMIN_TOKEN_HEADER, ""))
        except ApiError:
            raise PinNotAllowed(f"The {PIN_HEADER} header needs a valid {ADMIN_TOKEN_HEADER} header.") from None
        ex.pinned_client = pin.strip()
    if platform.settings.sticky_routing:
        ex.affinity_key = ex.conversation_key(request.headers.get(CONVERSATION_HEADER))
    limits = key.limits
    if not limits.unlimited:
        # TPM counts the prompt and what max_tokens allows; the window is corrected to real use at the end.
        estimate = ex.prompt_tokens() + (req.max_completion_tokens or req.max_tokens or 0) if limits.tpm else 0
        admission = platform.key_limits.admit(key.id, limits, now=time.monotonic(), est_tokens=estimate)
        if isinstance(admission, Refused):
            raise admission.error()
        ex.ticket = admission.ticket
        ex.rate_headers = admission.status.headers()
    try:
        try:
            platform.accounting.reserve(ex)
        except InsufficientQuota:
            if not await platform.accounting.recheck(key.id):
                raise
            platform.accounting.reserve(ex)
    except ApiError as err:  # out of credit (402)
        if ex.ticket is not None:
            platform.key_limits.release(ex.ticket)
        err.headers = {**ex.rate_headers, **err.headers}
        raise
    return ChatResponse(platform, ex)


async def list_models(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    key = await platform.keys.authenticate(request.headers.get("authorization"))
    return Response(models_body(sorted(m for m in platform.registry.models() if key.allows(m))), media_type=JSON)


class ChatResponse(WatchedResponse):
    """Runs one chat completion for the ASGI connection it answers.

    It owns the exchange from dispatch to record: errors before the first byte become a proper
    HTTP error; after it, an SSE error event. A consumer disconnect cancels the work at once and
    tells the client to stop.
    """

    def __init__(self, platform: Platform, exchange: Exchange) -> None:
        super().__init__()
        self.platform = platform
        self.ex = exchange
        platform.exchange_started(exchange)

    async def answer(self, send: Send) -> None:
        if self.ex.request.stream:
            await self._stream(send)
        else:
            await self._complete(send)

    def left(self) -> None:
        self.ex.fail(CLIENT_CLOSED, "client_closed", "the consumer disconnected before the answer was complete")

    def done(self) -> None:
        self.platform.exchange_finished(self.ex)

    def _start_headers(self, content_type: str, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", content_type.encode()), (b"x-request-id", self.ex.id.encode())]
        if self.ex.client_id:
            headers.append((b"x-arenahub-client", self.ex.client_id.encode()))
        for name, value in {**self.ex.rate_headers, **(extra or {})}.items():
            headers.append((name.lower().encode(), value.encode()))
        return headers

    async def _send_error(self, send: Send, err: ApiError) -> None:
        self.ex.fail(err.status, err.code, err.message)
        await send({"type": "http.response.start", "status": err.status,
                    "headers": self._start_headers(JSON, err.headers)})
        await send({"type": "http.response.body", "body": error_body(err)})

    async def _stream(self, send: Send) -> None:
        ex = self.ex
        try:
            attempt = await self.platform.dispatcher.start(ex)
        except ApiError as err:
            await self._send_error(send, err)
            return
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
                            ex.upstream_usage = frame.usage
                        if isinstance(frame, frames.Chunk):
                            for choices in frame.events:
                                if choices:
                                    texts.append(delta_text(choices))
                                    out.append(chunk_event(ex.completion_id, ex.created, ex.model, choices))
                    if isinstance(batch[-1], frames.End):
                        ex.completion_parts += texts
                        if ex.request.include_usage:
                            out.append(chunk_event(ex.completion_id, ex.created, ex.model, [], ex.usage()))
                        out.append(SSE_DONE)
                        await send({"type": "http.response.body", "body": b"".join(out), "more_body": False})
                        ex.completed = True
                    elif out:
                        await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                        ex.completion_parts += texts
            except ApiError as err:
                ex.fail(err.status, err.code, err.message)
                await send({"type": "http.response.body", "body": error_event(err), "more_body": False})
        finally:
            attempt.abandon("consumer disconnected")

    async def _complete(self, send: Send) -> None:
        ex = self.ex
        failed: set[str] = set()
        while True:
            try:
                attempt = await self.platform.dispatcher.start(ex, failed)
            except ApiError as err:
                await self._send_error(send, err)
                return
            ex.first_byte_at = time.perf_counter()
            acc = ChoiceAccumulator()
            try:
                async for batch in attempt.batches():
                    for frame in batch:
                        if frame.usage:
                            ex.upstream_usage = frame.usage
                        if isinstance(frame, frames.Chunk):
                            for choices in frame.events:
                                acc.add(choices)
                break
            except ApiError as err:
                # Nothing reached the consumer yet, so a client lost mid-answer can be retried.
                if err.code != "client_disconnected" or ex.attempts >= self.platform.settings.max_attempts:
                    await self._send_error(send, err)
                    return
                failed.add(attempt.session.client_id)
            finally:
                attempt.abandon("consumer disconnected")
        ex.completion_parts = [acc.text()]
        body = completion_body(ex.completion_id, ex.created, ex.model, acc.choices(), ex.usage())
        await send({"type": "http.response.start", "status": 200, "headers": self._start_headers(JSON)})
        await send({"type": "http.response.body", "body": body})
        ex.completed = True


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
]
