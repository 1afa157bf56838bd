"""Everything the simulated site knows, in one object built by ``create_app`` (``app.state.sim``).

State changes go through ``SimState``'s methods, so a reset, a rotation or a sign-in reads in one
place. ``settings`` is what ``create_app`` was given; ``reset`` goes back to it while keeping what
open pages depend on (the account and its session, the site key, the build).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from starlette.requests import Request

from arenahub.tools.arena_sim.auth import AuthSession
from arenahub.tools.arena_sim.build import Build
from arenahub.tools.arena_sim.catalog import Model
from arenahub.tools.arena_sim.log import RequestRecord
from arenahub.tools.arena_sim.outcomes import Outcome
from arenahub.tools.arena_sim.recaptcha import TokenLedger, new_site_key
from arenahub.tools.arena_sim.storage import Storage

CloudflareMode = Literal["off", "challenge", "block"]
SignIn = Literal["user", "guest", "none"]
PAGE_QUESTION = "Hello! Which model are you?"
PAGE_ANSWER = "I am a model on a simulated arena. Ask me anything, or click Retry to ask again."


def new_uuid7(now: float) -> str:
    """A fresh UUIDv7 for ``now`` (seconds since the epoch)."""
    raw = bytearray(int(now * 1000).to_bytes(6, "big") + uuid.uuid4().bytes[6:])
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


@dataclass
class Message:
    id: str
    role: str  # user | assistant
    content: str
    position: str | None = None  # a | b, for assistant messages
    has_feedback: bool = False


@dataclass
class Evaluation:
    """A conversation. ``requested_*`` are the models the client named; ``model_*`` the ones answering."""

    id: str
    mode: str
    modality: str
    requested_a: str | None
    requested_b: str | None
    model_a: str | None
    model_b: str | None
    messages: dict[str, Message] = field(default_factory=dict)

    def add(self, *messages: Message) -> None:
        for message in messages:
            self.messages[message.id] = message

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "mode": self.mode, "modality": self.modality, "model_a_id": self.model_a,
                "model_b_id": self.model_b,
                "messages": [{"id": m.id, "role": m.role, "position": m.position, "has_feedback": m.has_feedback,
                              "content": m.content} for m in self.messages.values()]}


@dataclass(frozen=True)
class Settings:
    models: tuple[Model, ...]
    token_ttl_seconds: float
    max_attachment_bytes: int
    auto_sign_in: SignIn
    page_session_id: str
    page_user_message_id: str
    page_message_id: str


@dataclass
class SimState:
    settings: Settings
    user_id: str
    site_key: str
    build: Build
    storage: Storage
    models: list[Model] = field(default_factory=list)
    auto_sign_in: SignIn = "user"
    token_ttl_seconds: float = 120.0
    session: AuthSession | None = None
    tokens: TokenLedger = field(default_factory=TokenLedger)
    fail_next: int = 0
    cloudflare: CloudflareMode = "off"
    challenge_clears_after_ms: int = 300
    clearances: set[str] = field(default_factory=set)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    script: deque[Outcome] = field(default_factory=deque)
    log: list[RequestRecord] = field(default_factory=list)
    clock: Callable[[], float] = time.time  # tests may replace it to move time

    @classmethod
    def create(cls, settings: Settings, site_key: str | None) -> SimState:
        state = cls(settings=settings, user_id=str(uuid.uuid4()), site_key=site_key or new_site_key(),
                    build=Build.new(), storage=Storage(settings.max_attachment_bytes))
        state.reset()
        return state

    def now(self) -> float:
        return self.clock()

    def reset(self) -> None:
        """Back to the start, except the account, its session, the site key and the build id."""
        s = self.settings
        self.models = list(s.models)
        self.auto_sign_in = s.auto_sign_in
        self.token_ttl_seconds = s.token_ttl_seconds
        self.fail_next = 0
        self.set_cloudflare("off")
        self.build = self.build.with_actions(True)
        self.storage.clear()
        self.script.clear()
        self.log.clear()
        model_a = next((m.id for m in self.models if m.userSelectable and m.supports("chat")), None)
        page = Evaluation(s.page_session_id, "direct", "chat", model_a, None, model_a, None)
        page.add(Message(s.page_user_message_id, "user", PAGE_QUESTION),
                 Message(s.page_message_id, "assistant", PAGE_ANSWER, "a"))
        self.evaluations = {page.id: page}

    # --- account ---------------------------------------------------------------------------------

    def sign_in(self, anonymous: bool) -> AuthSession:
        """A new current session; any earlier one stops being valid."""
        self.session = AuthSession.new(self.user_id, anonymous, self.now())
        return self.session

    def session_for_page(self) -> AuthSession | None:
        """What a page visit without a valid session signs in with: the current session when it is of the
        kind ``auto_sign_in`` asks for (so a second visitor does not log the first one out), else a new one."""
        if self.auto_sign_in == "none":
            return None
        if self.session is not None and self.session.kind == self.auto_sign_in:
            return self.session
        return self.sign_in(anonymous=self.auto_sign_in == "guest")

    def revoke(self) -> None:
        self.session = None

    @property
    def auth_state(self) -> str:
        return self.session.kind if self.session else "none"

    # --- Cloudflare, reCAPTCHA, build ------------------------------------------------------------

    def set_cloudflare(self, mode: CloudflareMode, clears_after_ms: int = 300) -> None:
        """Setting a mode (any) forgets every clearance: a new challenge must be passed again."""
        self.cloudflare = mode
        self.challenge_clears_after_ms = clears_after_ms
        self.clearances.clear()

    def rotate_site_key(self) -> None:
        self.site_key = new_site_key()

    def take_fail_next(self) -> bool:
        if self.fail_next <= 0:
            return False
        self.fail_next -= 1
        return True

    # --- conversations and answers ------------------------------------------------------------------

    @property
    def page(self) -> Evaluation:
        return self.evaluations[self.settings.page_session_id]

    def message_id_used(self, message_id: str) -> bool:
        return any(message_id in e.messages for e in self.evaluations.values())

    def next_outcome(self, default: Outcome) -> Outcome:
        return self.script.popleft() if self.script else default

    def record(self, record: RequestRecord) -> RequestRecord:
        self.log.append(record)
        return record

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "user_id": self.user_id,
            "auth": {"state": self.auth_state, "auto_sign_in": self.auto_sign_in,
                     "cookies": self.session.cookies() if self.session else None},
            "site_key": self.site_key,
            "build": {"id": self.build.build_id, "actions": "present" if self.build.actions_present else "missing",
                      "action_ids": self.build.action_ids, "chunks": self.build.chunk_urls()},
            "models": msgspec.to_builtins(self.models),
            "evaluations": [e.describe() for e in self.evaluations.values()],
            "page": {"session_id": s.page_session_id, "message_id": s.page_message_id,
                     "user_message_id": s.page_user_message_id},
            "script_pending": len(self.script),
            "cloudflare": self.cloudflare,
            "token_ttl_seconds": self.token_ttl_seconds,
            "fail_next": self.fail_next,
            "requests": len(self.log),
        }


def sim_of(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state
