"""The tunnel between platform and client: every frame, defined once.

A client opens a WebSocket to ``{platform_url}/ws`` and sends ``Hello`` first. The platform
answers ``Welcome`` (or ``Refused`` and closes). After that the client sends heartbeats and
answers ``Request`` frames with ``Chunk`` ... ``End`` (or ``Error``); the platform may send
``Cancel`` when the consumer goes away, and grants each answer room with ``Window`` frames as its
consumer reads it (flow control: see ``Request.window``). An instance of a cluster that shuts down
sends ``Move``: the client connects to another instance while this connection finishes its answers.
Frames are JSON objects with a ``type`` field, sent as WebSocket text or binary messages (both sides
accept either). A side that declares the ``batches`` capability (the client in ``Hello``, the platform in
``Welcome``) also reads a JSON array of frames in one message: then the other side may put the frames
it has ready at once (answers of several requests, a last chunk and its end) in one message, which
saves a write, a read and a wakeup on each side for every frame after the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

PROTOCOL_VERSION = 1
# Close codes the platform uses when it ends a tunnel (4000-4999 are application codes).
CLOSE_PROTOCOL_ERROR = 4400
CLOSE_INVALID_CREDENTIALS = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNSUPPORTED_VERSION = 4426
CLOSE_REPLACED = 4409
CLOSE_HEARTBEAT_TIMEOUT = 4408
CLOSE_SHUTDOWN = 4503


class _Frame(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


# Bounds on what a peer may send (a client is a stranger): a frame outside them does not decode
# (FrameError names the field), so the platform never holds more than these.
MAX_FRAME_BYTES = 1024 * 1024  # a larger message from a client closes its tunnel (WebSocket 1009)
MAX_MODELS = 1_000
MAX_MODEL_NAME = 200
Id = Annotated[str, Meta(max_length=128)]
Short = Annotated[str, Meta(max_length=64)]
Name = Annotated[str, Meta(max_length=MAX_MODEL_NAME)]
Text = Annotated[str, Meta(max_length=4_000)]
Models = Annotated[list[Name], Meta(max_length=MAX_MODELS)]
Capabilities = Annotated[list[Short], Meta(max_length=32)]


class SessionCheck(msgspec.Struct, omit_defaults=True):
    """One check of the bridge's browser tab (``arenahub bridge doctor`` runs the same ones)."""

    name: Short
    ok: bool | None = None  # None: a warning
    detail: Text = ""
    advice: Text = ""


# ``SessionStatus.state``: what a person reads on the dashboard; ``action`` says what to do.
SESSION_STATES = ("ready", "unknown", "bridge_unreachable", "no_tab", "userscript_outdated", "blocked",
                  "cloudflare_challenge", "verification_required", "signed_out", "clock_skew", "site_changed",
                  "session_invalid", "rate_limited")


class SessionStatus(msgspec.Struct, omit_defaults=True):
    """The bridge's view of its upstream session (arena.ai: sign-in, verification, rate limits).

    The flags are what routing reads (``session_valid`` False or ``needs_verification``: route
    elsewhere). ``state``, ``action`` and ``checks`` came later (version 1 still: optional, and
    ignored by peers that predate them): one of ``SESSION_STATES``, what a person should do, and
    the tab's checks.
    """

    bridge_reachable: bool = True
    browser_connected: bool | None = None
    session_valid: bool | None = None
    needs_verification: bool = False
    rate_limited_until: float | None = None
    last_error: Text | None = None
    state: Short | None = None
    action: Text | None = None
    checks: Annotated[list[SessionCheck], Meta(max_length=50)] = []


class ClientStats(msgspec.Struct, omit_defaults=True):
    requests_processed: int = 0
    requests_failed: int = 0
    success_rate: float = 100.0
    average_response_ms: float = 0.0
    active_requests: int = 0
    uptime_seconds: float = 0.0
    cpu_percent: float | None = None
    memory_mb: float | None = None


class Hello(_Frame, tag="hello"):
    version: int
    client_id: Id
    api_key: Annotated[str, Meta(max_length=512)]
    client_version: Short = ""
    capabilities: Capabilities = []
    models: Models = []
    max_concurrent_requests: Annotated[int, Meta(ge=1, le=100_000)] = 4
    heartbeat_interval_seconds: Annotated[float, Meta(ge=0.05, le=3600)] = 30.0
    session: SessionStatus | None = None
    # platform_features.preferred_routing_strategy, a wish the platform may heed. Optional, so version 1
    # stays as it was: left out when unset, and a peer that predates it skips it (unknown fields are ignored).
    preferred_routing_strategy: Short | None = None
    # True from a client that another instance with its client id replaced: the platform then refuses it
    # (``client_id_in_use``, retry later) while that instance is connected, instead of closing that one.
    # Optional: older peers leave it out or skip it.
    standby: bool = False
    # Which copy this is, as the client says it (host name and process id): two copies of one client on one
    # machine are told apart in what the platform and the dashboard say of them. Optional.
    instance: Short = ""


class Welcome(_Frame, tag="welcome"):
    version: int
    connection_id: Id
    client_name: Name
    max_concurrent_requests: int
    # What the platform reads besides single frames: ``batches``. Optional: older clients skip it.
    capabilities: Capabilities = []


class Refused(_Frame, tag="refused"):
    """The platform will not accept this client; ``retry`` says whether trying again can help."""

    code: str
    message: str
    retry: bool = False


class Heartbeat(_Frame, tag="heartbeat"):
    stats: ClientStats
    session: SessionStatus | None = None
    models: Models | None = None
    # The arenahub version the client runs (as in hello), so the platform sees an update without a
    # reconnect. Optional: older clients leave it out, and older platforms ignore it.
    client_version: Short | None = None
    # What the client can do now (as in hello): ``images`` comes and goes with its bridge's image
    # models. Optional like client_version; None: unchanged since hello.
    capabilities: Capabilities | None = None


# ``Request.kind``: the consumer's endpoint. An image request goes only to a client that declares the
# ``images`` capability (clients that predate it do not decode the kind).
CHAT: Final = "chat.completions"
IMAGES: Final = "images.generations"
IMAGES_CAPABILITY: Final = "images"


class Request(_Frame, tag="request"):
    id: str
    # The consumer's OpenAI request body, passed through unparsed: a chat completion request, or
    # with ``kind`` "images.generations" an image generation request (protocol/images.py).
    body: msgspec.Raw
    kind: Literal["chat.completions", "images.generations"] = "chat.completions"
    # Flow control: the client may send this many bytes of Chunk frames (as encoded) for this request,
    # and then only after a Window frame grants more; each Chunk is sent while some of the grant is
    # left and spends its whole size. None: no flow control (a platform that predates it).
    window: int | None = None


class Window(_Frame, tag="window"):
    """Platform -> client: the consumer took ``bytes`` more of request ``id``'s answer; send that much more."""

    id: Id
    bytes: Annotated[int, Meta(ge=1)]


class Chunk(_Frame, tag="chunk"):
    id: Id
    # The OpenAI ``choices`` of one or more upstream chunks, in order, as the upstream sent them.
    # Chunks that arrived together travel in one frame (one write on each side instead of many).
    # For an image request, each event is a list of image parts instead (protocol/images.py).
    events: list[list[dict[str, Any]]] = []
    usage: dict[str, Any] | None = None


class End(_Frame, tag="end"):
    id: Id
    usage: dict[str, Any] | None = None


class Error(_Frame, tag="error"):
    id: Id
    code: Annotated[str, Meta(max_length=128)]
    message: Text
    status: Annotated[int, Meta(ge=100, le=599)] = 502
    # True when another client might succeed (the bridge was unreachable, a 5xx, ...).
    retryable: bool = False
    # With status 429: seconds until this client's upstream takes requests again (its Retry-After).
    retry_after: Annotated[float, Meta(ge=0, le=86_400)] | None = None


class Cancel(_Frame, tag="cancel"):
    id: Id
    reason: Text = "consumer disconnected"


class Notice(_Frame, tag="notice"):
    """The platform telling a client it sent something wrong (a broken frame, an unknown id)."""

    code: Short
    message: Text


class Drain(_Frame, tag="drain"):
    """Client -> platform: finish the work in flight and take no new work (``draining`` false: take work again)."""

    draining: bool = True
    reason: Annotated[str, Meta(max_length=500)] = ""


class Move(_Frame, tag="move"):
    """Platform -> client: this platform instance is shutting down (a rolling restart): connect to another
    instance now and take new work there; the requests in flight on this connection finish on it (within
    ``grace_seconds``), then the client closes it. No new request comes on it."""

    reason: Text = "the platform instance is shutting down"
    grace_seconds: float = 0.0


class Routing(_Frame, tag="routing"):
    """Platform -> client: how the platform routes to this client now, sent on every change.

    ``draining``: no new work (by the client's own drain or an admin's); ``maintenance``: why the
    platform took the client out of rotation until an admin clears it (None: not in
    maintenance); ``breaker``: "closed" (normal), "open" (cooling down after repeated failures)
    or "half_open" (the next request is a probe).
    """

    draining: bool = False
    drain_reason: str = ""
    maintenance: str | None = None
    breaker: Literal["closed", "open", "half_open"] = "closed"


Frame = (Hello | Welcome | Refused | Heartbeat | Request | Chunk | End | Error | Cancel | Notice | Drain | Routing
         | Window | Move)

# A capability of both sides (Hello.capabilities, Welcome.capabilities): it reads batches of frames.
BATCHES: Final = "batches"
MAX_BATCH_FRAMES = 1_000  # frames in one message, at most (a longer batch is refused whole)
BATCH_BYTES = 64 * 1024  # a writer closes a batch once it holds this much (a frame alone may be larger)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Frame)
_batch_decoder = msgspec.json.Decoder(Annotated[list[msgspec.Raw], Meta(max_length=MAX_BATCH_FRAMES)])


def encode(frame: Frame) -> bytes:
    return _encoder.encode(frame)


class FrameError(ValueError):
    """A frame that is not valid JSON or not one of the frames above."""


def decode(data: bytes | str) -> Frame:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise FrameError(str(exc)) from None
    except RecursionError:  # JSON nested deeper than the decoder goes
        raise FrameError("the frame is nested too deeply") from None


def batch(encoded: Sequence[bytes]) -> bytes:
    """One message of frames already encoded: the frame itself when there is one, else a batch."""
    return encoded[0] if len(encoded) == 1 else b"[" + b",".join(encoded) + b"]"


def decode_message(data: bytes | str) -> list[tuple[Frame | FrameError, int]]:
    """The frames of one message, each with its size on the wire: a single frame, or each frame of a
    batch in order, a frame that does not decode given as its FrameError (the others still count).
    Raises FrameError when the message is neither a frame nor a batch of at most MAX_BATCH_FRAMES."""
    raw = data.encode() if isinstance(data, str) else data
    if not raw.lstrip()[:1] == b"[":
        return [(decode(raw), len(raw))]
    try:
        parts = _batch_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise FrameError(f"a batch of frames that does not decode: {exc}") from None
    except RecursionError:
        raise FrameError("the frame is nested too deeply") from None
    out: list[tuple[Frame | FrameError, int]] = []
    for part in parts:
        try:
            out.append((decode(part), len(part)))
        except FrameError as exc:
            out.append((exc, len(part)))
    return out
