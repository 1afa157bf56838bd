"""``POST /v1/images/generations``: OpenAI's image generation, served by the connected clients that
declare the ``images`` capability and serve the model.

Admitted, routed, billed and recorded as a chat completion is (admission.py, dispatch.py): the credit
held is the prompt and every image asked for (``n``) at the model's prices; the settle charges the
prompt and the images in the answer the consumer got, counted by the platform itself
(image_answer.py), never a client's claim. The answer comes whole, so a client lost before it ends
is replaced by another, as for a chat completion that is not streamed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Send

from arenahub.asgi import read_body
from arenahub.ids import new_id
from arenahub.platform.admission import admit, authenticate, check_model, check_open
from arenahub.platform.consumer_api import ExchangeResponse
from arenahub.platform.exchange import Exchange
from arenahub.platform.image_answer import ImageAnswerTooLarge, ImageCollector
from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError, UpstreamError
from arenahub.protocol.images import ImageGenerationRequest, images_body, parse_image_request

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform


async def image_generations(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    check_open(platform)
    key = await authenticate(platform, request)
    started = time.perf_counter()
    req: ImageGenerationRequest | None = None
    try:
        body = await read_body(request, platform.settings.max_body_bytes)
        req = parse_image_request(body)
        check_model(platform, key, req.model)
        ex = Exchange.for_images(new_id(), key, req, body)
        await admit(platform, request, ex, ex.prompt_tokens)  # TPM counts the prompt
        return ImageResponse(platform, ex)
    except ApiError as err:
        # Every request that passed authentication leaves a record, whatever refused it.
        platform.settlement.refused(key, err, started, model=req.model if req else "", stream=False)
        raise


class ImageResponse(ExchangeResponse):
    """One image generation, answered whole: the images the client sent, in the requested format."""

    async def respond(self, send: Send) -> None:
        ex = self.ex
        wanted = ex.image_request
        assert wanted is not None
        failed: set[str] = set()
        while True:
            try:
                attempt = await self.platform.dispatcher.start(ex, failed)
            except ApiError as err:
                await self._send_error(send, err)
                return
            attempt.when_stalled(self._too_slow)
            ex.first_byte_at = time.perf_counter()
            images = ImageCollector(wanted.n, wanted.format)
            try:
                async for batch in attempt.batches():
                    for frame in batch:
                        if isinstance(frame, frames.Chunk):
                            images.take(frame.events)
                break
            except ImageAnswerTooLarge as err:
                attempt.abandon("the answer's images were too large")
                await self._send_error(send, err)
                return
            except ApiError as err:
                # Nothing reached the consumer yet, so a client lost mid-answer can be retried.
                if err.code != "client_disconnected" or ex.attempts >= self.platform.settings.max_attempts:
                    await self._send_error(send, err)
                    return
                failed.add(attempt.session.client_id)
            finally:
                attempt.abandon(self._ending())
        data = images.data()
        if not data:
            await self._send_error(send, UpstreamError(
                f"The client answered without an image (response_format {wanted.format}).", code="no_image"))
            return
        ex.images_made = len(data)
        ex.image_notes = [item["url"] if wanted.format == "url" else f"[b64_json image, {len(item['b64_json'])} "
                          "characters]" for item in data]
        body = images_body(ex.created, data)
        ex.completed = True
        await self._book()
        await self._send_whole(send, 200, body)


routes = [Route("/v1/images/generations", image_generations, methods=["POST"])]
