"""Scripted outcomes: what the site does with the next stream call that passes every check.

Tests queue them with ``POST /__sim/script``; they are msgspec structs tagged by ``kind`` with unknown
fields refused, so a typo in a test's script is an error rather than a silently different answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

Finish = Literal["stop", "length", "content-filter", "error"]
Millis = Annotated[int, Meta(ge=0, le=600_000)]


class _Outcome(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="kind"):
    @property
    def kind(self) -> str:
        return str(self.__struct_config__.tag)


class _Timed(_Outcome, kw_only=True):
    first_ms: Millis = 0  # wait before the first content line (after the ``Pf`` line)
    delay_ms: Millis = 0  # wait between content lines


class Citation(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    title: str


class Text(_Timed, tag="text", kw_only=True):
    text: str | None = None  # default: the echo of the user message
    words: Annotated[int, Meta(ge=0)] | None = None  # or "w0 w1 ... w{N-1}"
    reasoning: str | None = None
    finish: Finish = "stop"
    usage: bool = True
    routed_model: str | None = None
    citations: list[Citation] | None = None  # default: two for the search modality, none otherwise
    side_b_text: str | None = None  # default: "B: " + side a's text

    def __post_init__(self) -> None:
        if self.text is not None and self.words is not None:
            raise ValueError("give text or words, not both")


class Image(_Timed, tag="image", kw_only=True):
    urls: list[str] | None = None
    count: Annotated[int, Meta(ge=1, le=8)] = 1
    text: str | None = None
    finish: Finish = "stop"


class Error(_Timed, tag="error", kw_only=True):
    message: str = "An internal error occurred"
    after_words: Annotated[int, Meta(ge=0)] = 0
    text: str | None = None  # where the words before the error come from (default: the echo)


class Challenge(_Outcome, tag="challenge", kw_only=True):
    pass


class Block(_Outcome, tag="block", kw_only=True):
    pass


class Status(_Outcome, tag="status", kw_only=True):
    status: Annotated[int, Meta(ge=400, le=599)]
    body: str | dict[str, Any] | None = None
    retry_after: Annotated[int, Meta(ge=0)] | None | UnsetType = UNSET  # 429: 30 unless given; null: no header


class Schema(_Outcome, tag="schema", kw_only=True):
    path: list[str | int]
    message: str = "Invalid input"


class Html(_Outcome, tag="html", kw_only=True):
    body: str | None = None


class Raw(_Timed, tag="raw", kw_only=True):
    lines: list[str]
    no_newline: bool = False
    content_type: str = "text/plain; charset=utf-8"


class Hang(_Outcome, tag="hang", kw_only=True):
    pass


Outcome = Text | Image | Error | Challenge | Block | Status | Schema | Html | Raw | Hang
_decode_one = msgspec.json.Decoder(Outcome).decode
_encode = msgspec.json.Encoder().encode

STATUS_BODIES: dict[int, dict[str, str]] = {
    401: {"error": "User not found"},
    403: {"error": "recaptcha validation failed"},
    413: {"error": "Request Entity Too Large"},
    422: {"error": "Request rejected: Content violates our terms of use"},
    429: {"error": "Too many requests"},
    500: {"error": "Internal Server Error"},
    502: {"error": "Bad Gateway"},
    503: {"error": "Service Unavailable"},
}


def decode_script(raw: bytes) -> list[Outcome]:
    """Outcomes from a script body (a list, or ``{"outcomes": [...]}``); ValueError/TypeError say what is wrong."""
    try:
        items = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"script is not JSON: {exc}") from None
    if isinstance(items, dict) and set(items) == {"outcomes"}:
        items = items["outcomes"]
    if not isinstance(items, list):
        raise TypeError('a script is a list of outcomes, or {"outcomes": [...]}')
    outcomes = []
    for i, item in enumerate(items):
        try:
            outcomes.append(_decode_one(_encode(item)))
        except msgspec.ValidationError as exc:
            raise ValueError(f"outcome {i}: {exc}") from None
    return outcomes


def status_body(outcome: Status) -> str | dict[str, Any]:
    if outcome.body is not None:
        return outcome.body
    return STATUS_BODIES.get(outcome.status, {"error": f"HTTP {outcome.status}"})


def retry_after(outcome: Status) -> int | None:
    if isinstance(outcome.retry_after, UnsetType):
        return 30 if outcome.status == 429 else None
    return outcome.retry_after
