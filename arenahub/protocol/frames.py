"""The tunnel between platform and client: every frame, defined once.

A client opens a WebSocket to ``{platform_url}/ws`` and sends ``Hello`` first. The platform
answers ``Welcome`` (or ``Refused`` and closes). After that the client sends heartbeats and
answers ``Request`` frames with ``Chunk`` ... ``End`` (or ``Error``); the platform may send
``Cancel`` when the consumer goes away. Frames are JSON objects with a ``type`` field, sent as
WebSocket text or binary messages (both sides accept either).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

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


class SessionCheck(msgspec.Struct, omit_defaults=True):
    """One check of the bridge's browser tab (``arenahub bridge doctor`` runs the same ones)."""

    name: str
    ok: bool | None = None  # None: a warning
    detail: str = ""
    advice: str = ""


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
    last_error: str | None = None
    state: str | None = None
    action: str | None = None
    checks: list[SessionCheck] = []


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
    client_id: str
    api_key: str
    client_version: str = ""
    capabilities: list[str] = []
    models: list[str] = []
    max_concurrent_requests: int = 4
    heartbeat_interval_seconds: float = 30.0
    session: SessionStatus | None = None
    # platform_features.preferred_routing_strategy, a wish the platform may heed. Optional, so version 1
    # stays as it was: left out when unset, and a peer that predates it skips it (unknown fields are ignored).
    preferred_routing_strategy: str | None = None


class Welcome(_Frame, tag="welcome"):
    version: int
    connection_id: str
    client_name: str
    max_concurrent_requests: int


class Refused(_Frame, tag="refused"):
    """The platform will not accept this client; ``retry`` says whether trying again can help."""

    code: str
    message: str
    retry: bool = False


class Heartbeat(_Frame, tag="heartbeat"):
    stats: ClientStats
    session: SessionStatus | None = None
    models: list[str] | None = None
    # The arenahub version the client runs (as in hello), so the platform sees an update without a
    # reconnect. Optional: older clients leave it out, and older platforms ignore it.
    client_version: str | None = None


class Request(_Frame, tag="request"):
    id: str
    # The consumer's OpenAI request body, passed through unparsed.
    body: msgspec.Raw
    kind: Literal["chat.completions"] = "chat.completions"


class Chunk(_Frame, tag="chunk"):
    id: str
    # The OpenAI ``choices`` of one or more upstream chunks, in order, as the upstream sent them.
    # Chunks that arrived together travel in one frame (one write on each side instead of many).
    events: list[list[dict[str, Any]]] = []
    usage: dict[str, Any] | None = None


class End(_Frame, tag="end"):
    id: str
    usage: dict[str, Any] | None = None


class Error(_Frame, tag="error"):
    id: str
    code: str
    message: str
    status: int = 502
    # True when another client might succeed (the bridge was unreachable, a 5xx, ...).
    retryable: bool = False
    # With status 429: seconds until this client's upstream takes requests again (its Retry-After).
    retry_after: float | None = None


class Cancel(_Frame, tag="cancel"):
    id: str
    reason: str = "consumer disconnected"


class Notice(_Frame, tag="notice"):
    """The platform telling a client it sent something wrong (a broken frame, an unknown id)."""

    code: str
    message: str


class Drain(_Frame, tag="drain"):
    """Client -> platform: finish the work in flight and take no new work (``draining`` false: take work again)."""

    draining: bool = True
    reason: str = ""


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


Frame = Hello | Welcome | Refused | Heartbeat | Request | Chunk | End | Error | Cancel | Notice | Drain | Routing

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Frame)


def encode(frame: Frame) -> bytes:
    return _encoder.encode(frame)


class FrameError(ValueError):
    """A frame that is not valid JSON or not one of the frames above."""


def decode(data: bytes | str) -> Frame:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise FrameError(str(exc)) from None
