"""A client's answer to an image request as the platform relays it: its images, counted by the
platform itself and bounded (pure: no I/O).

Clients are run by strangers. Only image parts in the requested format pass (``protocol/images.py``):
an index below the request's ``n``, a URL over http(s), base64 of the right alphabet; anything else
is dropped, and extra images are neither relayed nor billed. What the platform holds of one answer is
bounded (``MAX_IMAGE_CHARS`` an image, ``MAX_ANSWER_CHARS`` in all): a client that sends more has
the answer cut with ``image_answer_too_large``. The bill counts the images in the response the
consumer gets, never what a client claims.
"""

from __future__ import annotations

from typing import Any

from arenahub.protocol.errors import UpstreamError
from arenahub.protocol.images import (
    BASE64,
    MAX_ANSWER_CHARS,
    MAX_IMAGE_CHARS,
    MAX_REVISED_PROMPT_CHARS,
    MAX_URL_CHARS,
)


class ImageAnswerTooLarge(UpstreamError):
    code = "image_answer_too_large"


class _Image:
    __slots__ = ("broken", "chars", "pieces", "revised")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.chars = 0
        self.revised: str | None = None
        self.broken = False  # a piece that is not base64 (or a second URL): the image is left out


class ImageCollector:
    """The images of one answer, in ``fmt`` ("url" or "b64_json"), at most ``n``."""

    def __init__(self, n: int, fmt: str, *, max_image_chars: int = MAX_IMAGE_CHARS,
                 max_answer_chars: int = MAX_ANSWER_CHARS) -> None:
        self.n = n
        self.fmt = fmt
        self.max_image_chars = max_image_chars
        self.max_answer_chars = max_answer_chars
        self.chars = 0  # what this answer holds, in all
        self._images: dict[int, _Image] = {}

    def take(self, events: list[list[dict[str, Any]]]) -> None:
        """Add a Chunk's events; raises ImageAnswerTooLarge past a bound (the answer is then cut)."""
        for event in events:
            if not isinstance(event, list):
                continue
            for part in event:
                if isinstance(part, dict):
                    self._part(part)

    def _part(self, part: dict[str, Any]) -> None:
        index = part.get("index")
        value = part.get(self.fmt)
        if (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < self.n
                or not isinstance(value, str)):
            return
        image = self._images.get(index)
        if image is None:
            image = self._images[index] = _Image()
        revised = part.get("revised_prompt")
        if image.revised is None and isinstance(revised, str):
            image.revised = revised[:MAX_REVISED_PROMPT_CHARS]
        if self.fmt == "url":
            if image.pieces or len(value) > MAX_URL_CHARS or not value[:8].lower().startswith(("https://", "http://")):
                image.broken = True
                return
        elif not BASE64.fullmatch(value) or (image.pieces and image.pieces[-1].endswith("=")):
            image.broken = True  # padding ends base64: nothing may follow it
            return
        image.chars += len(value)
        self.chars += len(value)
        if image.chars > self.max_image_chars:
            raise ImageAnswerTooLarge(f"the client sent an image larger than {self.max_image_chars // 2**20} MiB")
        if self.chars > self.max_answer_chars:
            raise ImageAnswerTooLarge(f"the client sent more than {self.max_answer_chars // 2**20} MiB of images")
        image.pieces.append(value)

    def data(self) -> list[dict[str, Any]]:
        """The ``data`` of the response: every whole image, in index order."""
        out = []
        for index in sorted(self._images):
            image = self._images[index]
            value = "".join(image.pieces)
            if image.broken or not value or (self.fmt == "b64_json" and len(value) % 4):
                continue
            item: dict[str, Any] = {self.fmt: value}
            if image.revised:
                item["revised_prompt"] = image.revised
            out.append(item)
        return out
