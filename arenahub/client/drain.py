"""Drain, as the client sees it: its own wish to take no new work, and how the platform routes to it.

The client keeps its drain wish itself, because the platform forgets it with the connection: the
link sends it again after every welcome, so a reconnect never undrains the client by accident.
What the platform reports (``Routing`` frames) is kept as it came, reset to normal on each new
connection since the platform only speaks up when the state is not the normal one.
"""

from __future__ import annotations

from typing import Any

import msgspec

from arenahub.protocol import frames

MAX_REASON_CHARS = 200


class DrainBodyError(ValueError):
    """The body of ``POST /platform/drain`` is not ``{"reason": "..."}`` (or empty)."""


class _DrainBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = ""


_decode_body = msgspec.json.Decoder(_DrainBody).decode


def parse_drain_body(body: bytes) -> str:
    """The reason in a drain request's body; an empty body means no reason."""
    if not body.strip():
        return ""
    try:
        reason = _decode_body(body).reason
    except msgspec.ValidationError as exc:
        raise DrainBodyError(f'the body must be {{"reason": "..."}}: {exc}') from None
    except msgspec.DecodeError as exc:
        raise DrainBodyError(f"the body is not valid JSON: {exc}") from None
    if len(reason) > MAX_REASON_CHARS:
        raise DrainBodyError(f"reason is {len(reason)} characters long; at most {MAX_REASON_CHARS} are allowed")
    return reason


class RoutingView:
    """The client's drain wish and the last ``Routing`` frame of the current connection."""

    def __init__(self) -> None:
        self.drain_requested = False
        self.drain_reason = ""
        self.routing = frames.Routing()

    def request(self, draining: bool, reason: str = "") -> frames.Drain:
        """Remember the wish; the frame that tells the platform."""
        self.drain_requested = draining
        self.drain_reason = reason if draining else ""
        return self.drain_frame()

    def drain_frame(self) -> frames.Drain:
        return frames.Drain(draining=self.drain_requested, reason=self.drain_reason)

    def connected(self) -> None:
        self.routing = frames.Routing()

    def update(self, routing: frames.Routing) -> str | None:
        """Keep ``routing``; a warning to log when it takes the client out of rotation for its health."""
        self.routing = routing
        problems = []
        if routing.maintenance is not None:
            problems.append(f"in maintenance: {routing.maintenance[:MAX_REASON_CHARS]}")
        if routing.breaker == "open":
            problems.append("circuit breaker open after repeated failures (no work until its cooldown ends)")
        return "the platform routes no work to this client: " + "; ".join(problems) if problems else None

    @property
    def drained_by(self) -> str | None:
        # The Routing frame does not say whose drain it is; the platform shows the client's own
        # reason when both drain, so a client that asked is named first.
        if not self.routing.draining:
            return None
        return "client" if self.drain_requested else "admin"

    def public(self) -> dict[str, Any]:
        r = self.routing
        return {"draining": r.draining, "drained_by": self.drained_by, "drain_reason": r.drain_reason or None,
                "maintenance": r.maintenance, "breaker": r.breaker}

    def public_request(self) -> dict[str, Any]:
        return {"requested": self.drain_requested, "reason": self.drain_reason or None}
