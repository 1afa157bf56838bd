"""One consumer request on its way through the platform, and the record it leaves behind."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from arenahub.platform.accounting.limits import Ticket
from arenahub.platform.answer import AnswerMeter
from arenahub.platform.billing.ledger import Reservation
from arenahub.platform.records import RequestRecord
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.protocol import frames
from arenahub.protocol.images import ImageGenerationRequest
from arenahub.protocol.openai import ChatCompletionRequest, Message, prompt_images, prompt_text, usage_dict
from arenahub.tokens import count_tokens

# Status recorded when the consumer went away before the answer was complete (nginx's convention).
CLIENT_CLOSED = 499
# How each routing attempt ended, in a record's detail.
OUTCOMES = ("ok", "error", "refused", "timeout", "disconnected", "cancelled")
# Error messages kept in a record's detail are cut to this length: they say what happened, briefly.
MESSAGE_CHARS = 300


def short(message: str) -> str:
    return message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS - 1] + "…"


@dataclass
class Exchange:
    id: str
    key: ConsumerKey
    request: ChatCompletionRequest
    body: bytes
    started: float = field(default_factory=time.perf_counter)
    created: int = field(default_factory=lambda: int(time.time()))
    client_id: str | None = None
    attempts: int = 0
    first_byte_at: float | None = None
    status: int = 200
    error_code: str | None = None
    claimed_usage: dict[str, Any] | None = None  # what the client said it used: kept for audit, never billed
    completion_parts: list[str] = field(default_factory=list)
    _prompt_tokens: int | None = None
    _usage: dict[str, int] | None = None
    ticket: Ticket | None = None  # the key's rate-limit admission, closed when the exchange ends
    rate_headers: dict[str, str] = field(default_factory=dict)
    reservation: Reservation | None = None  # the credit held for this request, settled when it ends
    cost: int | None = None  # micro-USD charged, once settled
    completed: bool = False  # the whole answer is ready for the consumer (booked before its last bytes)
    booked: bool = False  # settled and recorded (settlement.py), once
    pinned_client: str | None = None  # an admin pinned the request to this client (debugging)
    affinity_key: str | None = None  # the conversation, for sticky routing
    # Each routing attempt as it ended: (client id, outcome, error code, message, ms); see OUTCOMES.
    trail: list[tuple[str, str, str | None, str | None, float]] = field(default_factory=list)
    error_message: str | None = None  # why the request failed, as the consumer was told
    meter: AnswerMeter = field(default_factory=lambda: AnswerMeter(None))  # the relayed answer, counted
    kind: str = frames.CHAT  # the consumer's endpoint: frames.CHAT or frames.IMAGES
    image_request: ImageGenerationRequest | None = None  # an image request as the consumer sent it
    images_made: int = 0  # an image request: the images in the answer the consumer got (billed)
    image_notes: list[str] = field(default_factory=list)  # ... and what they were, for a stored answer

    @classmethod
    def for_images(cls, id: str, key: ConsumerKey, req: ImageGenerationRequest, body: bytes) -> Exchange:
        """An image request. Its prompt is ``request``'s one user message, so that it is counted,
        stored and routed as a chat's is; nothing is completed in tokens."""
        chat = ChatCompletionRequest(model=req.model, messages=[Message(role="user", content=req.prompt)])
        return cls(id=id, key=key, request=chat, body=body, kind=frames.IMAGES, image_request=req)

    @property
    def completion_id(self) -> str:
        return "chatcmpl-" + self.id

    @property
    def model(self) -> str:
        return self.request.model

    def prompt_tokens(self) -> int:
        if self._prompt_tokens is None:
            self._prompt_tokens = count_tokens(prompt_text(self.request))
        return self._prompt_tokens

    def conversation_key(self, header: str | None) -> str:
        """Who is talking about what: the consumer's own conversation id, else the key, the model and
        the conversation's opening (its system and first user messages), which every follow-up repeats."""
        if header:
            return hashlib.sha256(f"{self.key.id}\0{header}".encode()).hexdigest()[:32]
        opening: list[str] = []
        for message in self.request.messages:  # up to and including the first user message
            content = message.content
            # Parts as the repr of their JSON (b'[...]'), which is what str() of the bytes always gave.
            text = content if isinstance(content, str) else repr(msgspec.json.encode(content))
            opening.append(f"{message.role}:{text}")
            if message.role == "user":
                break
        digest = hashlib.sha256("\0".join([self.key.id, self.model, *opening]).encode())
        return digest.hexdigest()[:32]

    def images(self) -> int:
        """The images billed: those in a chat request's prompt, or those an image request made."""
        return self.images_made if self.kind == frames.IMAGES else prompt_images(self.request)

    def delivered(self) -> bool:
        """Whether the consumer got anything: a whole answer, or part of a stream."""
        return self.completed or bool(self.completion_parts)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def usage(self) -> dict[str, int]:
        """The platform's own count of the prompt and of what it relayed; computed once, at the end.

        A client's claim (``claimed_usage``) is never used: clients earn from what they serve.
        """
        if self._usage is None:
            completion = self.meter.billable(count_tokens("".join(self.completion_parts)))
            self._usage = usage_dict(self.prompt_tokens(), completion)
        return self._usage

    def claim_gap(self) -> dict[str, int] | None:
        """The client's claim when it differs much from the platform's count (more than a quarter and more
        than 50 tokens, either way), for the record and the client's page; else None."""
        claim, usage = self.claimed_usage, self.usage()
        if not isinstance(claim, dict):
            return None
        said = {k: claim.get(k) for k in ("prompt_tokens", "completion_tokens")}
        for key, value in said.items():
            if not isinstance(value, int) or isinstance(value, bool):
                return {"prompt_tokens": -1, "completion_tokens": -1}  # a claim that is not a count at all
            counted = usage[key]
            if abs(value - counted) > max(50, counted // 4):
                return {k: max(-1, min(int(v), 10**12)) for k, v in said.items()}  # type: ignore[arg-type]
        return None

    def fail(self, status: int, code: str, message: str | None = None) -> None:
        self.status = status
        self.error_code = code
        self.error_message = message

    def attempt_ended(self, client_id: str, outcome: str, seconds: float, code: str | None = None,
                      message: str | None = None) -> None:
        """Note how one routing attempt ended (a list append: this runs on the request path)."""
        self.trail.append((client_id, outcome, code, message, seconds))

    def detail(self) -> dict[str, Any] | None:
        """The record's detail: every attempt and the error; None for a success at the first attempt,
        which is most requests (their rows stay small). Never the prompt, the answer or a secret."""
        gap = self.claim_gap()
        if self.status == 200 and len(self.trail) <= 1 and gap is None:
            return None
        detail: dict[str, Any] = {
            "attempts": [{"client_id": client_id, "outcome": outcome, "code": code,
                          "error": None if message is None else short(message), "ms": round(seconds * 1000, 3)}
                         for client_id, outcome, code, message, seconds in self.trail],
            "error": None if self.error_message is None else short(self.error_message)}
        if gap is not None:
            detail["claimed_usage"] = gap  # kept for audit: the bill is the platform's own count
        return detail

    def prompt(self) -> str:
        """The conversation as text, one "role: text" block per message (a part that is not text shows
        as its type, e.g. [image_url]); stored only when the operator turns store_prompts on."""
        blocks = []
        for message in self.request.messages:
            content = message.content
            if isinstance(content, list):
                content = "\n".join(p["text"] if isinstance(p.get("text"), str) else f"[{p.get('type', 'part')}]"
                                    for p in content)
            blocks.append(f"{message.role}: {content or ''}")
        return "\n\n".join(blocks)

    def answer(self) -> str:
        """The answer's text as far as the consumer got it (an image request's: its images' links)."""
        if self.kind == frames.IMAGES:
            return "\n".join(self.image_notes)
        return "".join(self.completion_parts)

    def record(self, usage: dict[str, int] | None = None) -> RequestRecord:
        now = time.perf_counter()
        usage = usage or self.usage()
        return RequestRecord(
            id=self.id,
            created_at=dt.datetime.fromtimestamp(self.created, dt.UTC),
            key_id=self.key.id, client_id=self.client_id, model=self.model,
            stream=self.request.stream, status=self.status, error_code=self.error_code,
            latency_ms=round((now - self.started) * 1000, 3),
            ttft_ms=round((self.first_byte_at - self.started) * 1000, 3) if self.first_byte_at else None,
            prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
            attempts=self.attempts, cost=self.cost, detail=self.detail(), images=self.images())
