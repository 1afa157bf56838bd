"""The requests other instances route to a client whose tunnel this instance holds: placed and judged here
as this instance's own requests are, so that each client's breaker, rate limit (RPM) and capacity have one
owner for the whole cluster, the instance holding its tunnel. The others learn its state from its card
(cluster/presence.py: a client its breaker keeps out is ``kept_out``) and from a ``NotHere``."""

from __future__ import annotations

import time
from typing import NamedTuple

from arenahub.platform.accounting.limits import Admitted
from arenahub.platform.attempt import Placement, retry_after
from arenahub.platform.dispatch import DEFAULT_UPSTREAM_WAIT, Dispatcher
from arenahub.platform.tunnel_session import ClientGone, ClientSession
from arenahub.protocol import frames


class NotPlaced(NamedTuple):
    reason: str
    retry_after: float | None = None  # seconds, when known


_WHY = {"maintenance": "the client is in maintenance", "cooling": "the client's circuit breaker is open",
        "probing": "the client's circuit breaker is probing it", "upstream_limited":
        "the client is rate limited by its upstream", "busy_elsewhere": "the client is busy"}


def place(dispatcher: Dispatcher, session: ClientSession, request_id: str, body: bytes,
          kind: str) -> Placement | NotPlaced:
    """The request opened on the client, or why this instance would not place it now."""
    if session.closed:
        return NotPlaced("the client is not connected here")
    if not session.available or session.draining:
        return NotPlaced("the client takes no requests now")
    blocked = dispatcher.blocked(session)
    if blocked is not None:
        kind_of, wait = blocked
        return NotPlaced(_WHY.get(kind_of, "the client takes no requests now"), wait or None)
    if session.active >= session.max_concurrent:
        return NotPlaced("the client is busy")
    now = dispatcher.clock()
    admitted = dispatcher.client_limits.admit(session.limit_subject, session.limits, now=now)
    if not isinstance(admitted, Admitted):
        return NotPlaced("the client is at its rate limit", admitted.retry_after)
    probe = dispatcher.health_of(session.client_id).placed(now)
    return Placement(session, admitted.ticket, session.open(request_id, body, kind), time.monotonic(), None, probe)


def ended(dispatcher: Dispatcher, p: Placement, last: frames.End | frames.Error | ClientGone | None,
          first_byte_at: float | None) -> None:
    """How the relayed request ended, in the client's health and RPM window: ``last`` is its End or Error,
    ClientGone, or None (the requester cancelled it, or went away)."""
    now = time.monotonic()
    if isinstance(last, frames.End):
        ttft = (first_byte_at or now) - p.placed_at
        dispatcher.attempt_succeeded(p, ttft=ttft, tokens=0, duration=now - p.placed_at)
    elif isinstance(last, frames.Error) and last.status == 429:  # its upstream limits it: routed around here
        p.session.upstream_rate_limited(retry_after(last) or DEFAULT_UPSTREAM_WAIT)
        dispatcher.attempt_ended(p)
    elif isinstance(last, frames.Error) and 400 <= last.status < 500:
        dispatcher.attempt_ended(p)  # a refusal: the requester judges it by what the other clients do
    elif isinstance(last, frames.Error) or (isinstance(last, ClientGone) and not last.by_platform):
        dispatcher.attempt_failed(p)
    else:
        dispatcher.attempt_ended(p)
