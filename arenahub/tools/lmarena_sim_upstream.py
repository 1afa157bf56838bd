"""The simulated upstream call (see ``lmarena_sim``): what the site refuses, and how it answers.

``check_body`` refuses a body the way the site does, naming the field; the scripted outcomes
(``Text``, ``Image``, ``Error``, ``Challenge``, ``Status``, ``Raw``) become the site's stream lines
(``lines_for``, paced by ``stream``) or its error responses (``error_response``).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
from starlette.responses import HTMLResponse, JSONResponse, Response

CONTENT_TYPE = "text/plain;charset=UTF-8"
STREAM_PATH = "/nextjs-api/stream/retry-evaluation-session-message/{session}/messages/{message}"
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
MESSAGE_FIELDS = ("role", "content", "id", "evaluationId", "evaluationSessionId", "parentMessageIds",
                  "experimental_attachments", "failureReason", "metadata", "participantPosition",
                  "createdAt", "updatedAt", "status")
ROLES = ("user", "assistant", "system")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PIECE = re.compile(r"\S+\s*|\s+")
_encode = msgspec.json.Encoder().encode


# --- Scripted outcomes ----------------------------------------------------------------------

class _Outcome(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="kind"):
    pass


class _Timed(_Outcome):
    first_ms: int = 0
    delay_ms: int = 0


class Text(_Timed, tag="text"):
    text: str | None = None
    words: int | None = None
    finish: str | None = "stop"


class Image(_Timed, tag="image"):
    urls: list[str] | None = None
    count: int = 1
    text: str | None = None
    finish: str | None = "stop"


class Error(_Timed, tag="error"):
    message: str = "An internal error occurred"
    after_words: int = 0
    text: str | None = None
    line: Literal["object", "a3"] = "object"  # a bare {"error": ...} line, or the data stream's a3:"..."


class Challenge(_Outcome, tag="challenge"):
    status: Literal[403, 503] = 403


class Status(_Outcome, tag="status"):
    status: int
    body: str | dict[str, Any] | None = None


class Raw(_Timed, tag="raw", kw_only=True):
    lines: list[str]


Outcome = Text | Image | Error | Challenge | Status | Raw
decode_outcomes = msgspec.json.Decoder(list[Outcome]).decode


@dataclass(frozen=True)
class Session:
    id: str
    mode: Literal["direct_chat", "battle"] = "direct_chat"


class Rejected(Exception):
    """The site refuses the call: an HTTP status and an ``{"error": ...}`` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- Checking a call the way the site does -------------------------------------------------------

def is_uuid(value: object) -> bool:
    return isinstance(value, str) and bool(_UUID.match(value))


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _attachment_bytes(where: str, attachment: object) -> int:
    if not isinstance(attachment, dict) or set(attachment) != {"name", "contentType", "url"} \
            or not all(isinstance(attachment[k], str) for k in attachment):
        raise Rejected(400, f"{where} must be an object with string fields name, contentType and url")
    url = attachment["url"]
    if url.startswith("data:"):
        header, sep, data = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise Rejected(400, f"{where}.url must be a base64 data URI")
        return len(data) * 3 // 4
    if not url.startswith(("https://", "http://")):
        raise Rejected(400, f"{where}.url must be a data URI or an http(s) URL")
    return 0


def check_body(body: object, session: Session, models: list[dict[str, Any]], max_attachment_bytes: int) -> list[dict]:
    """The messages of a valid call; raises Rejected naming the first field the site would refuse.

    Top-level keys other than ``messages`` and ``modelId`` (e.g. the 2026 ``recaptchaV3Token``) are ignored."""
    if not isinstance(body, dict):
        raise Rejected(400, "body must be a JSON object with messages and modelId")
    if "modelId" not in body:
        raise Rejected(400, "modelId is required (a model uuid, or null)")
    model_id = body["modelId"]
    if model_id is not None and not is_uuid(model_id):
        raise Rejected(400, f"modelId must be a uuid or null, got {model_id!r}")
    if model_id is not None and model_id not in {m.get("id") for m in models}:
        raise Rejected(400, f"modelId {model_id} is not a known model")
    if session.mode == "battle" and model_id is not None:
        raise Rejected(400, "modelId must be null in a battle session")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Rejected(400, "messages must be a non-empty list")
    seen: set[str] = set()
    attached = 0
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            raise Rejected(400, f"{at} must be an object")
        for name in MESSAGE_FIELDS:
            if name not in message:
                raise Rejected(400, f"{at}.{name} is required")
        extra = sorted(set(message) - set(MESSAGE_FIELDS))
        if extra:
            raise Rejected(400, f"{at}.{extra[0]} is not a message field")
        if message["role"] not in ROLES:
            raise Rejected(400, f"{at}.role must be one of {', '.join(ROLES)}")
        if not isinstance(message["content"], str):
            raise Rejected(400, f"{at}.content must be a string")
        if not is_uuid(message["id"]) or message["id"] in seen:
            raise Rejected(400, f"{at}.id must be a fresh uuid")
        seen.add(message["id"])
        for name in ("evaluationId", "failureReason"):
            if message[name] is not None:
                raise Rejected(400, f"{at}.{name} must be null")
        # The 2026 site sends metadata as {} where the 2025 one sent null: both are accepted.
        if message["metadata"] is not None and not isinstance(message["metadata"], dict):
            raise Rejected(400, f"{at}.metadata must be null or an object")
        if message["evaluationSessionId"] != session.id:
            raise Rejected(400, f"{at}.evaluationSessionId must be the session in the path ({session.id})")
        parents = [] if i == 0 else [messages[i - 1].get("id")]
        if message["parentMessageIds"] != parents:
            raise Rejected(400, f"{at}.parentMessageIds must be {parents} (a linear chain)")
        if not isinstance(message["experimental_attachments"], list):
            raise Rejected(400, f"{at}.experimental_attachments must be a list")
        for j, attachment in enumerate(message["experimental_attachments"]):
            attached += _attachment_bytes(f"{at}.experimental_attachments[{j}]", attachment)
        if message["participantPosition"] not in ("a", "b"):
            raise Rejected(400, f"{at}.participantPosition must be 'a' or 'b'")
        for name in ("createdAt", "updatedAt"):
            if not _is_timestamp(message[name]):
                raise Rejected(400, f"{at}.{name} must be an ISO 8601 timestamp")
        want = "pending" if i == len(messages) - 1 else "success"
        if message["status"] != want:
            raise Rejected(400, f"{at}.status must be {want!r}")
    if session.mode == "battle" and len({m["participantPosition"] for m in messages}) > 1:
        raise Rejected(400, "messages[].participantPosition must all be the battle target in a battle session")
    if attached > max_attachment_bytes:
        raise Rejected(413, f"Request Entity Too Large: attachments of {attached} bytes exceed the limit")
    return messages

# --- Answering ---------------------------------------------------------------------------------

def _pieces(text: str) -> list[str]:
    return _PIECE.findall(text)


def _text_line(position: str, piece: str) -> str:
    return f"{position}0:{_encode(piece).decode()}\n"


def _finish_line(position: str, reason: str) -> str:
    return f"{position}d:{_encode({'finishReason': reason}).decode()}\n"


def _image_line(position: str, urls: list[str]) -> str:
    return f"{position}2:{_encode([{'type': 'image', 'image': u, 'mimeType': 'image/png'} for u in urls]).decode()}\n"


def lines_for(outcome: Text | Image | Error | Raw, position: str, echo: str, base_url: str) -> list[str]:
    if isinstance(outcome, Raw):
        return [line if line.endswith("\n") else line + "\n" for line in outcome.lines]
    if isinstance(outcome, Text) and outcome.words is not None:
        text = " ".join(f"w{i}" for i in range(outcome.words))
    else:
        text = outcome.text if outcome.text is not None else (echo if isinstance(outcome, Text | Error) else "")
    pieces = _pieces(text)
    if isinstance(outcome, Error):
        error = (f"{position}3:{_encode(outcome.message).decode()}\n" if outcome.line == "a3"
                 else _encode({"error": outcome.message}).decode() + "\n")
        return [_text_line(position, p) for p in pieces[:outcome.after_words]] + [error]
    lines = [_text_line(position, p) for p in pieces]
    if isinstance(outcome, Image):
        urls = outcome.urls or [f"{base_url}__sim/images/{uuid.uuid4()}.png" for _ in range(outcome.count)]
        lines.append(_image_line(position, urls))
    if outcome.finish is not None:
        lines.append(_finish_line(position, outcome.finish))
    return lines


async def stream(lines: list[str], first_ms: int, delay_ms: int, record: dict[str, Any]) -> AsyncIterator[bytes]:
    """The lines, paced; ``record["stream"]`` ends "complete", or "aborted" when the caller went away."""
    record.update(stream="streaming", lines_sent=0)
    try:
        if first_ms:
            await asyncio.sleep(first_ms / 1000)
        for i, line in enumerate(lines):
            if i and delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            yield line.encode()
            record["lines_sent"] += 1
        record["stream"] = "complete"
    finally:
        if record["stream"] != "complete":
            record["stream"] = "aborted"


CHALLENGE_PAGE = """<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8"><meta name="robots" content="noindex,nofollow">
</head><body><div class="main-wrapper" role="main"><div class="main-content">
<h1>lmarena.ai</h1><h2>Verifying you are human. This may take a few seconds.</h2>
<noscript>Enable JavaScript and cookies to continue</noscript></div></div></body></html>"""

STATUS_BODIES = {
    413: "Request Entity Too Large: the request body is too large",
    422: "Request rejected: Content violates our terms of use",
    429: "Too many requests: you have been rate limited, try again later",
}


def error_response(outcome: Status | Challenge, user_id: str, session_id: str) -> Response:
    if isinstance(outcome, Challenge):
        return HTMLResponse(CHALLENGE_PAGE, status_code=outcome.status,
                            headers={"cf-mitigated": "challenge", "server": "cloudflare"})
    headers = {"retry-after": "30"} if outcome.status == 429 else None
    if isinstance(outcome.body, str):
        return Response(outcome.body, status_code=outcome.status, headers=headers, media_type="text/plain")
    body = outcome.body
    if body is None:
        message = (f"User {user_id} does not have access to evaluation session {session_id}"
                   if outcome.status == 401 else STATUS_BODIES.get(outcome.status, f"HTTP {outcome.status}"))
        body = {"error": message}
    return JSONResponse(body, status_code=outcome.status, headers=headers)


def last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return str(message["content"])
    return ""
