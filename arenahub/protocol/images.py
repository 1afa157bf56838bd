"""The OpenAI image generation wire format (``POST /v1/images/generations``), and how an answer's
images travel in the tunnel's ``Chunk`` frames. Pure: no I/O; the platform and the client share it.

In the tunnel, each event of a ``Chunk`` answering an image request is a list of image parts:
``{"index": i, "url": "https://..."}``, or ``{"index": i, "b64_json": "<piece>"}`` where the pieces of
one index join, in order, into the image's base64 (an image is larger than a frame may be), and
optionally ``"revised_prompt"``. ``image_events`` makes them from an OpenAI images response.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from arenahub.protocol.errors import InvalidRequest
from arenahub.protocol.openai import decode_request

MAX_N = 10  # OpenAI's own bound on ``n``
MAX_PROMPT_CHARS = 32_000
# Bounds both sides keep on an answer: one image (its base64, or its URL) and all of them together.
MAX_IMAGE_CHARS = 16 * 1024 * 1024
MAX_ANSWER_CHARS = 32 * 1024 * 1024
MAX_URL_CHARS = 8 * 1024
MAX_REVISED_PROMPT_CHARS = 4_000
# A base64 image travels in pieces of this many characters, each in a frame of its own (under
# frames.MAX_FRAME_BYTES, and spending the answer's flow-control window as it goes).
PIECE_CHARS = 256 * 1024
FORMATS = ("url", "b64_json")
_SIZE = re.compile(r"auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4}")
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class ImageGenerationRequest(msgspec.Struct):
    # Defaults, so that a missing field is refused below with its name (``param``).
    model: str = ""
    prompt: str = ""
    n: Annotated[int, Meta(ge=1, le=MAX_N)] = 1
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    quality: Annotated[str, Meta(max_length=32)] | None = None
    style: Annotated[str, Meta(max_length=32)] | None = None
    user: str | None = None
    stream: bool = False

    @property
    def format(self) -> str:
        return self.response_format or "url"


_decoder = msgspec.json.Decoder(ImageGenerationRequest)
_encoder = msgspec.json.Encoder()


def parse_image_request(body: bytes) -> ImageGenerationRequest:
    """Validate an image generation body, raising InvalidRequest that names the bad field."""
    req = decode_request(body, _decoder, "send a JSON object with `model` and `prompt`.")
    if not req.model:
        raise InvalidRequest("`model` is required: the image model to use (GET /v1/models lists them).",
                             param="model")
    if not req.prompt.strip():
        raise InvalidRequest("`prompt` must be a non-empty string: a description of the image.", param="prompt")
    if len(req.prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"`prompt` is longer than {MAX_PROMPT_CHARS} characters.", param="prompt")
    if req.size is not None and not _SIZE.fullmatch(req.size):
        raise InvalidRequest("`size` must be WIDTHxHEIGHT in pixels (like 1024x1024) or auto.", param="size")
    if req.stream:
        raise InvalidRequest("Streamed image generation is not supported: leave `stream` unset or false.",
                             param="stream")
    return req


def image_events(data: Any, fmt: str, piece_chars: int = PIECE_CHARS) -> list[list[dict[str, Any]]]:
    """The ``Chunk`` events carrying the ``data`` of an OpenAI images response, in the requested format
    (entries without it are left out, and so are a URL longer than the platform takes and anything that
    is not a string): one event per URL or base64 piece, the first of each image with its ``revised_prompt``."""
    events: list[list[dict[str, Any]]] = []
    if not isinstance(data, list):
        return events
    index = 0
    for item in data:
        value = item.get(fmt) if isinstance(item, dict) else None
        if not isinstance(value, str) or not value or (fmt == "url" and len(value) > MAX_URL_CHARS):
            continue
        first: dict[str, Any] = {"index": index}
        revised = item.get("revised_prompt")
        if isinstance(revised, str) and revised:
            first["revised_prompt"] = revised[:MAX_REVISED_PROMPT_CHARS]
        if fmt == "url":
            events.append([{**first, "url": value}])
        else:
            for at in range(0, len(value), piece_chars):
                part = first if at == 0 else {"index": index}
                events.append([{**part, "b64_json": value[at:at + piece_chars]}])
        index += 1
    return events


def images_body(created: int, data: list[dict[str, Any]]) -> bytes:
    """An OpenAI images response."""
    return _encoder.encode({"created": created, "data": data})
