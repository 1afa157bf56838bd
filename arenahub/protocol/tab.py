"""The socket between the bridge and a browser tab running the userscript: every message, defined once.

The userscript (``arenahub/bridge/userscript.js``) opens a WebSocket to the bridge's ``/ws`` and
sends ``Hello`` with what it found in the page (``PageFacts``). The bridge sends work (``Run``),
questions (``Diagnose``, ``PageModels``) and commands (``Cancel``, ``Reload``, ``ArmCapture``);
the tab answers each by the same ``id``. Messages are JSON objects with a ``type`` field; the
userscript builds the same shapes by hand, so a field renamed here must be renamed there too
(``tests/protocol/test_tab.py`` holds the two together).

What the tab does with a ``Task`` (the arena.ai paths, body fields, reCAPTCHA actions, uploads)
is the userscript's knowledge, kept in its ``UPSTREAM`` object; the bridge says only what to ask.
Secrets stay in the tab: reCAPTCHA tokens and cookie values are never sent over this socket.
"""

from __future__ import annotations

from typing import Literal

import msgspec

# Version 1 was the 2025 userscript: ``{"request_id", "payload"}`` tasks and ``{"request_id", "data"}`` replies.
TAB_PROTOCOL_VERSION = 2

Mode = Literal["direct", "direct-battle", "side-by-side", "battle"]
Modality = Literal["chat", "image", "search"]
Call = Literal["create", "follow_up", "retry"]
PageKind = Literal["arena", "challenge", "block", "other"]
FailStage = Literal["task", "token", "upload", "fetch", "upstream"]


class _Message(msgspec.Struct, tag_field="type", omit_defaults=True, forbid_unknown_fields=False):
    pass


class Attachment(msgspec.Struct, omit_defaults=True):
    """An image for the tab to upload the way the page does; always a ``data:`` URL (the bridge
    downloads links itself, so that the tab never fetches a stranger's URL with the user's cookies)."""

    name: str
    content_type: str
    data_url: str


class LegacyMessage(msgspec.Struct):
    """One message of the 2025 retry body (``call: "retry"``)."""

    role: Literal["system", "user", "assistant"]
    content: str
    position: Literal["a", "b"] = "a"
    attachments: list[Attachment] = []


class Task(msgspec.Struct):
    """One upstream call (every field sent, defaults included: the userscript reads them as they are).

    - ``create``: a new conversation (``mode``, ``model_a_id``/``model_b_id``, ``content``).
    - ``follow_up``: another user turn in ``evaluation_id``, a conversation this tab created.
    - ``retry``: the 2025 path, re-answering ``message_id`` of ``session_id`` with ``messages``.
    """

    call: Call
    mode: Mode = "direct"
    modality: Modality = "chat"
    model_a_id: str | None = None
    model_b_id: str | None = None
    content: str = ""
    attachments: list[Attachment] = []
    evaluation_id: str | None = None
    session_id: str | None = None
    message_id: str | None = None
    messages: list[LegacyMessage] = []
    model_id: str | None = None


class PageFacts(msgspec.Struct, omit_defaults=True):
    """What the userscript found in its page: names and counts, never secrets."""

    origin: str = ""
    page: PageKind = "other"
    title: str = ""
    # Names of the auth cookies present (arena-auth-prod-v1, .0, .1): signed in, as far as the page can tell.
    auth_cookies: list[str] = []
    # What the session cookie says of the account, read in the page: "user", "guest" (anonymous), or "" (unknown).
    account: str = ""
    sitekey_found: bool = False
    sitekey_hint: str = ""  # the first characters of the reCAPTCHA site key (it is public, but the whole is not needed)
    grecaptcha: bool = False  # grecaptcha.enterprise.execute is there to call
    upload_actions: bool | None = None  # None: not looked for yet
    upload_problem: str = ""


# --- bridge -> tab -------------------------------------------------------------------------------

class Run(_Message, tag="run"):
    id: str
    task: Task


class Cancel(_Message, tag="cancel"):
    id: str


class Diagnose(_Message, tag="diagnose"):
    """Look at the page again (site key, grecaptcha, auth cookies, upload actions) and answer ``Diagnosis``."""

    id: str
    find_uploads: bool = True


class PageModels(_Message, tag="page_models"):
    """Send the page's Next.js flight data (where ``initialModels`` is): answered by ``Flight``."""

    id: str


class Reload(_Message, tag="reload"):
    """Reload the page (only for a Cloudflare interstitial, which the browser clears by itself)."""

    reason: str = ""


class ArmCapture(_Message, tag="arm_capture"):
    """Legacy ID capture: report the ids of the page's own next Retry call (``IdsCaptured``)."""


# --- tab -> bridge -------------------------------------------------------------------------------

class Hello(_Message, tag="hello"):
    # Defaults: the 2025 userscript's hello had neither field (it sent ``version``): it reads as protocol 1.
    script_version: str = ""
    protocol: int = 1
    facts: PageFacts = msgspec.field(default_factory=PageFacts)


class Diagnosis(_Message, tag="diagnosis"):
    id: str
    facts: PageFacts


class Flight(_Message, tag="flight"):
    """The page's flight data (``self.__next_f`` strings joined), or its HTML when it has none."""

    id: str
    text: str
    source: Literal["flight", "html"] = "flight"


class Started(_Message, tag="started"):
    """The upstream answered 2xx: its body follows as ``Chunk``s."""

    id: str
    status: int
    content_type: str = ""
    # The conversation the call created or continued (create, follow_up): where a follow-up goes next.
    evaluation_id: str | None = None


class Chunk(_Message, tag="chunk"):
    id: str
    data: str


class Done(_Message, tag="done"):
    id: str


class Failed(_Message, tag="failed"):
    """The call did not happen or the upstream refused it; ``body`` is the start of its answer."""

    id: str
    stage: FailStage
    message: str
    status: int | None = None
    content_type: str | None = None
    retry_after: str | None = None
    body: str | None = None


class IdsCaptured(_Message, tag="ids_captured"):
    session_id: str
    message_id: str


class PageCall(_Message, tag="page_call"):
    """The page's own chat call finished (a person used the tab): ``ok`` when it got an answer."""

    ok: bool
    status: int = 0


FromBridge = Run | Cancel | Diagnose | PageModels | Reload | ArmCapture
FromTab = Hello | Diagnosis | Flight | Started | Chunk | Done | Failed | IdsCaptured | PageCall

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(FromTab)


def encode(message: FromBridge) -> str:
    return _encoder.encode(message).decode()


class TabMessageError(ValueError):
    """A message from a tab that is not JSON or not one of the messages above."""


def decode(data: str | bytes) -> FromTab:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise TabMessageError(str(exc)) from None
